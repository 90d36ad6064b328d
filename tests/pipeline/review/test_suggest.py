"""The labelling queue: uncertain cells first, spread over animals, sessions and feature space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.review import (
    QUEUE_COLUMNS,
    SuggestParams,
    human_labelled,
    rank_cells,
    suggest,
    suggest_on_lake,
)
from cellsift.schemas import ParameterError


def _cells(n_per_session: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for animal in ("a1", "a2", "a3"):
        for session in ("d1", "d2"):
            for u in range(n_per_session):
                rows.append(
                    {
                        "cohort": "c",
                        "animal": animal,
                        "session": session,
                        "unit_id": u,
                        "area_px": rng.normal(80, 20),
                        "peak_to_noise": rng.gamma(3, 2),
                        "compactness": rng.uniform(0.5, 1),
                        "p_good": rng.uniform(0, 1),
                        "ood_flag": False,
                        "overlap_flag": False,
                    }
                )
    return pd.DataFrame(rows)


def test_first_picks_cover_every_animal_and_session():
    cells = _cells()
    # animal a1 is much less certain than the others: pure uncertainty would pick a1 only
    cells.loc[cells["animal"] == "a1", "p_good"] = 0.5
    cells.loc[cells["animal"] != "a1", "p_good"] = 0.9
    order, why = rank_cells(cells, np.zeros(len(cells), bool))
    first = cells.iloc[order[:6]]
    assert set(first["animal"]) == {"a1", "a2", "a3"}
    assert len(set(zip(first["animal"], first["session"], strict=True))) == 6
    assert "first of its animal" in why[0]
    assert len(order) == len(cells) and len(set(order.tolist())) == len(cells)


def test_uncertain_cells_come_first_within_a_group():
    cells = _cells()
    cells["p_good"] = 0.99
    cells.loc[5, "p_good"] = 0.5
    order, why = rank_cells(cells, np.zeros(len(cells), bool), SuggestParams(diversity_weight=0.0))
    assert order[0] == 5 and why[0].startswith("uncertain (p_good 0.50)")


def test_labelled_and_overlap_flagged_cells_are_left_out_unless_asked():
    cells = _cells(5)
    cells.loc[0, "overlap_flag"] = True
    labels = pd.DataFrame(
        {
            "cohort": ["c", "c"],
            "animal": ["a1", "a1"],
            "session": ["d1", "d1"],
            "unit_id": [1, 2],
            "source": ["review", "simulator"],
        }
    )
    labelled = human_labelled(cells, labels)
    assert labelled.tolist()[:3] == [False, True, False]  # simulator truth is not a person's label
    queue = suggest(cells, labels, n=100)
    assert list(queue.columns) == list(QUEUE_COLUMNS)
    picked = set(zip(queue["animal"], queue["session"], queue["unit_id"], strict=True))
    assert ("a1", "d1", 1) not in picked and ("a1", "d1", 0) not in picked and ("a1", "d1", 2) in picked
    assert len(queue) == len(cells) - 2
    with_overlap = suggest(cells, labels, n=100, params=SuggestParams(include_overlap=True))
    assert len(with_overlap) == len(cells) - 1


def test_unscored_cells_are_most_uncertain_and_n_is_checked():
    cells = _cells(4).drop(columns=["p_good", "ood_flag"])
    queue = suggest(cells, cells.iloc[0:0].assign(source=[]), n=5)
    assert len(queue) == 5 and queue["p_good"].isna().all()
    assert queue["why"].str.startswith("not scored").all()
    with pytest.raises(ParameterError):
        suggest(cells, cells.iloc[0:0].assign(source=[]), n=0)


def test_suggest_on_a_processed_lake(review_lake):
    queue = suggest_on_lake(review_lake, n=6)
    assert len(queue) == 6
    assert set(queue["animal"]) == {"m01", "m02"} or len(set(queue["animal"])) == 2
    assert queue[["cohort", "animal", "session", "unit_id"]].duplicated().sum() == 0
