"""Agreement between reviewers and with the model; progress per session."""

from __future__ import annotations

import pandas as pd

from cellsift.pipeline.review import cohen_kappa, model_agreement, reviewer_agreement, session_progress


def _labels(rows):
    return pd.DataFrame(
        [
            {
                "cohort": "c",
                "animal": "a",
                "session": "s",
                "unit_id": u,
                "label": lab,
                "reviewer": r,
                "labelled_at": t,
            }
            for t, (r, u, lab) in enumerate(rows)
        ]
    )


def test_cohen_kappa():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == 0.0
    assert cohen_kappa([], []) is None


def test_reviewers_are_compared_on_the_cells_they_share():
    labels = _labels(
        [
            ("ana", 1, "good"),
            ("ana", 2, "bad"),
            ("ana", 3, "good"),
            ("ben", 1, "good"),
            ("ben", 2, "good"),
            ("cy", 9, "bad"),
        ]
    )
    out = reviewer_agreement(labels)
    assert out == [{"reviewers": ["ana", "ben"], "n": 2, "agree": 0.5, "kappa": 0.0}]


def test_model_agreement_uses_each_cell_s_latest_label():
    cells = pd.DataFrame(
        {
            "cohort": "c",
            "animal": "a",
            "session": "s",
            "unit_id": [1, 2, 3, 4],
            "label": ["good", "bad", "good", None],
        }
    )
    labels = _labels(
        [("ana", 1, "bad"), ("ana", 1, "good"), ("ana", 2, "bad"), ("ana", 3, "bad"), ("ana", 4, "good")]
    )
    out = model_agreement(cells, labels)
    assert out["n"] == 3 and out["agree"] == round(2 / 3, 4)
    assert out["balanced_accuracy"] == 0.75  # good recall 1/1, bad recall 1/2


def test_session_progress_counts_everyone_and_me():
    cells = pd.DataFrame({"cohort": "c", "animal": "a", "session": ["s", "s", "t"], "unit_id": [1, 2, 1]})
    labels = _labels([("ana", 1, "good"), ("ben", 1, "bad"), ("ben", 2, "bad")])
    out = session_progress(cells, labels, reviewer="ana")
    assert out == [
        {"cohort": "c", "animal": "a", "session": "s", "total": 2, "labelled": 2, "mine": 1},
        {"cohort": "c", "animal": "a", "session": "t", "total": 1, "labelled": 0, "mine": 0},
    ]
