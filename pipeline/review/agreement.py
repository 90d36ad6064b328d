"""How far reviewers agree with each other and with the model, and how far the review has got."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["cohen_kappa", "model_agreement", "reviewer_agreement", "session_progress"]

_KEYS = ["cohort", "animal", "session", "unit_id"]


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two raters' binary labels (``None`` when undefined)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if len(a) == 0:
        return None
    observed = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else None
    return (observed - expected) / (1 - expected)


def reviewer_agreement(labels: pd.DataFrame) -> list[dict[str, Any]]:
    """Every pair of reviewers with cells in common: ``n``, share agreeing, Cohen's kappa.

    Parameters
    ----------
    labels
        Review labels (``reviewer``, the cell keys, ``label``).
    """
    out: list[dict[str, Any]] = []
    if len(labels) == 0:
        return out
    reviewers = sorted(labels["reviewer"].dropna().astype(str).unique())
    for r1, r2 in combinations(reviewers, 2):
        a = labels[labels["reviewer"] == r1][[*_KEYS, "label"]]
        b = labels[labels["reviewer"] == r2][[*_KEYS, "label"]]
        both = a.merge(b, on=_KEYS, suffixes=("_a", "_b"))
        if both.empty:
            continue
        ga, gb = (both["label_a"] == "good").to_numpy(), (both["label_b"] == "good").to_numpy()
        kappa = cohen_kappa(ga, gb)
        out.append(
            {
                "reviewers": [r1, r2],
                "n": int(len(both)),
                "agree": round(float(np.mean(ga == gb)), 4),
                "kappa": None if kappa is None else round(kappa, 4),
            }
        )
    return out


def model_agreement(cells: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    """The model's calls (``cells.label``) against the review labels (latest per cell).

    Returns
    -------
    dict
        ``n`` (labelled cells the model scored), ``agree`` (share), ``balanced_accuracy``
        (mean recall of good and bad; ``None`` without both classes).
    """
    if len(labels) == 0 or "label" not in cells:
        return {"n": 0, "agree": None, "balanced_accuracy": None}
    latest = labels.sort_values("labelled_at").drop_duplicates(_KEYS, keep="last")
    both = cells[[*_KEYS, "label"]].merge(latest[[*_KEYS, "label"]], on=_KEYS, suffixes=("_model", "_review"))
    both = both[both["label_model"].isin(["good", "bad"])]
    if both.empty:
        return {"n": 0, "agree": None, "balanced_accuracy": None}
    truth, call = both["label_review"] == "good", both["label_model"] == "good"
    recalls = [float((call[truth == t] == t).mean()) for t in (True, False) if (truth == t).any()]
    return {
        "n": int(len(both)),
        "agree": round(float((truth == call).mean()), 4),
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if len(recalls) == 2 else None,
    }


def session_progress(
    cells: pd.DataFrame, labels: pd.DataFrame, *, reviewer: str | None = None
) -> list[dict[str, Any]]:
    """Per session: cells, cells labelled by anyone in review, by ``reviewer``."""
    total = cells.groupby(["cohort", "animal", "session"], sort=True).size()
    done_any = (
        labels.drop_duplicates(_KEYS).groupby(["cohort", "animal", "session"]).size() if len(labels) else None
    )
    mine = (
        labels[labels["reviewer"] == reviewer] if reviewer is not None and len(labels) else labels.iloc[0:0]
    )
    done_mine = mine.groupby(["cohort", "animal", "session"]).size() if len(mine) else None
    out = []
    for key, n in total.items():
        out.append(
            {
                "cohort": key[0],
                "animal": key[1],
                "session": key[2],
                "total": int(n),
                "labelled": int(done_any.get(key, 0)) if done_any is not None else 0,
                "mine": int(done_mine.get(key, 0)) if done_mine is not None else 0,
            }
        )
    return out
