"""The capstone protocol on small trials."""

from __future__ import annotations

import pytest

from cellsift.pipeline.classify.capstone import (
    CAPSTONE_TABLE2,
    CapstoneTrial,
    capstone_protocol,
    format_capstone_table,
)
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import synthetic_cells


def test_capstone_protocol_on_small_trials():
    pool = synthetic_cells(200, seed=7, clips=False, n_animals=4)
    test_pool = synthetic_cells(80, seed=8, clips=False, n_animals=2, cohort="other")
    trials = (
        CapstoneTrial(1, 60, 30, 30, 73.68, 64.3, 64.3, 64.3),
        CapstoneTrial(4, 20, 10, 10, 100, 71.5, 78.6, 64.3),
    )
    table = capstone_protocol(
        pool,
        test_pool,
        {"features": lambda: FeatureClassifier(FeatureModelConfig(max_iter=30))},
        n_test_per_class=10,
        trials=trials,
    )
    assert table["n_train"].tolist() == [60, 20] and (table["test_accuracy"] >= 75).all()
    text = format_capstone_table(table)
    assert "64.3%" in text and "71.5%" in text
    with pytest.raises(InputFormatError, match="share animals"):
        capstone_protocol(pool, pool, {"features": FeatureClassifier}, trials=trials)
    assert [t.n_train for t in CAPSTONE_TABLE2] == [377, 300, 150, 50]


def test_capstone_sizes_scale_down_to_a_small_pool():
    from cellsift.pipeline.classify.capstone import capstone_trials, parse_sizes
    from cellsift.schemas import ParameterError

    assert capstone_trials(200, 200) == (CAPSTONE_TABLE2, None)
    trials, note = capstone_trials(71, 188)  # the demo lake's pool
    assert [t.n_train for t in trials] == [142, 112, 56, 18]
    assert [t.capstone_n_train for t in trials] == [377, 300, 150, 50]
    assert all(t.n_bad <= 71 and t.n_good <= 188 for t in trials)
    assert note is not None and "71 bad / 188 good" in note and "--sizes" in note
    trials, note = capstone_trials(71, 188, sizes=(100, 40))
    assert [(t.n_train, t.n_bad, t.n_good) for t in trials] == [(100, 50, 50), (40, 20, 20)] and note is None
    with pytest.raises(ParameterError, match="--sizes") as err:
        capstone_trials(71, 188, sizes=(377, 50))
    assert "at most 142" in err.value.one_line()
    assert parse_sizes("50, 377,150,300") == (377, 300, 150, 50)
    for bad in ("", "a,b", "1,2", "5,6,7,8,9"):
        with pytest.raises(ParameterError, match="--sizes"):
            parse_sizes(bad)


def test_capstone_on_a_small_lake_and_its_test_cohort(processed_lake, tmp_path, caplog):
    from cellsift.pipeline.classify.capstone import capstone_on_lake

    with caplog.at_level("WARNING"):
        table = capstone_on_lake(processed_lake, models=("features",), report_dir=tmp_path / "cap")
    assert len(table) >= 1 and (table["n_train"] < table["capstone_n_train"]).all()
    assert sum("--sizes" in r.message for r in caplog.records) == 1
    assert "note: training/test sizes differ" in format_capstone_table(table)
    assert (tmp_path / "cap" / "learning_curves.png").stat().st_size > 5000
    with pytest.raises(InputFormatError, match="labelled cohorts: tiny"):
        capstone_on_lake(processed_lake, models=("features",), test_cohort="heldout")
    with pytest.raises(InputFormatError, match="only labelled cohort"):
        capstone_on_lake(processed_lake, models=("features",), test_cohort="tiny")
