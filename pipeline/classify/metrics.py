"""Metrics of ``p_good`` against labels, of named artifact reasons, and the balanced threshold.

* :func:`binary_metrics`: balanced accuracy, per-class precision/recall/F1, ROC-AUC,
  PR-AUC (average precision, for each class), confusion matrix, Brier score, expected
  calibration error and a 10-bin calibration curve.
* :func:`reason_metrics`: how often the named artifact reason is right.
* :func:`balanced_threshold`: the decision threshold that balances the errors on both
  classes (chosen on out-of-fold predictions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cellsift.pipeline.classify.data import REASONS

__all__ = ["balanced_threshold", "binary_metrics", "reason_metrics", "rounded"]


def rounded(x: float | np.floating[Any] | None) -> float | None:
    """``x`` rounded to 4 decimals; ``None`` if it is ``None`` or not finite (for JSON)."""
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def binary_metrics(
    y: np.ndarray, p: np.ndarray, *, threshold: float | np.ndarray = 0.5, n_bins: int = 10
) -> dict[str, Any]:
    """Metrics of ``p_good`` against labels ``y`` (1 good, 0 bad).

    Parameters
    ----------
    y
        ``(n,)`` labels (entries < 0 are ignored).
    p
        ``(n,)`` predicted ``p_good`` (NaN entries are ignored).
    threshold
        A cell is called good when ``p >= threshold``; an ``(n,)`` array gives each cell
        its own threshold (cross-fitted out-of-fold thresholds), reported as its median.
    n_bins
        Bins of the calibration curve.

    Returns
    -------
    dict
        ``n, n_good, n_bad, threshold, accuracy, balanced_accuracy, good: {precision,
        recall, f1}, bad: {...}, roc_auc, pr_auc_good, pr_auc_bad, confusion
        {labels, matrix (rows true bad/good, columns predicted bad/good)}, brier, ece,
        calibration {bin_mean_p, bin_frac_good, bin_count}``. AUCs are ``None`` when a
        class is missing.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    keep = (y >= 0) & np.isfinite(p)
    y, p = y[keep].astype(int), p[keep]
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim:
        thr = thr[keep]
    pred = (p >= thr).astype(int)
    n = len(y)
    out: dict[str, Any] = {
        "n": int(n),
        "n_good": int((y == 1).sum()),
        "n_bad": int((y == 0).sum()),
        "threshold": round(float(np.median(thr)) if thr.size else float("nan"), 4),
    }
    if n == 0:
        return out
    out["accuracy"] = rounded(np.mean(pred == y))
    recalls = []
    for name, c in (("good", 1), ("bad", 0)):
        tp = int(np.sum((pred == c) & (y == c)))
        fp = int(np.sum((pred == c) & (y != c)))
        fn = int(np.sum((pred != c) & (y == c)))
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = (
            2 * prec * rec / (prec + rec)
            if np.isfinite(prec) and np.isfinite(rec) and prec + rec
            else float("nan")
        )
        out[name] = {
            "precision": rounded(prec),
            "recall": rounded(rec),
            "f1": rounded(f1),
            "support": tp + fn,
        }
        if tp + fn:
            recalls.append(rec)
    out["balanced_accuracy"] = rounded(np.mean(recalls))
    both = len(np.unique(y)) == 2
    out["roc_auc"] = rounded(roc_auc_score(y, p)) if both else None
    out["pr_auc_good"] = rounded(average_precision_score(y, p)) if both else None
    out["pr_auc_bad"] = rounded(average_precision_score(1 - y, 1 - p)) if both else None
    cm = [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]
    out["confusion"] = {"labels": ["bad", "good"], "rows": "true", "columns": "predicted", "matrix": cm}
    out["brier"] = rounded(np.mean((p - y) ** 2))
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    mean_p, frac, count = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        count.append(int(m.sum()))
        mean_p.append(rounded(p[m].mean()) if m.any() else None)
        frac.append(rounded(y[m].mean()) if m.any() else None)
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    out["ece"] = rounded(ece)
    out["calibration"] = {"bin_mean_p": mean_p, "bin_frac_good": frac, "bin_count": count}
    return out


def reason_metrics(true_reason: np.ndarray, pred_reason: np.ndarray) -> dict[str, Any]:
    """Accuracy of the named artifact reason on artifacts whose true reason is known.

    Returns
    -------
    dict
        ``n`` (artifacts with a known reason), ``named`` (fraction the model named a
        reason for), ``accuracy`` (among named), ``confusion`` ``{true: {pred: count}}``.
    """
    t = np.asarray([r if isinstance(r, str) else None for r in true_reason], dtype=object)
    q = np.asarray([r if isinstance(r, str) else None for r in pred_reason], dtype=object)
    known = np.array([r in REASONS for r in t], dtype=bool)
    if not known.any():
        return {"n": 0}
    t, q = t[known], q[known]
    named = np.array([r is not None for r in q])
    conf: dict[str, dict[str, int]] = {}
    for a, b in zip(t, q, strict=True):
        conf.setdefault(str(a), {})
        key = str(b) if b is not None else "unknown"
        conf[str(a)][key] = conf[str(a)].get(key, 0) + 1
    return {
        "n": int(known.sum()),
        "named": rounded(named.mean()),
        "accuracy": rounded(np.mean(t[named] == q[named])) if named.any() else None,
        "confusion": conf,
    }


def balanced_threshold(y: np.ndarray, p: np.ndarray, *, lo: float = 0.15, hi: float = 0.85) -> float:
    """Threshold on ``p`` that maximises balanced accuracy (middle of the best plateau).

    Used on out-of-fold predictions to set a model's decision threshold; restricted to
    ``[lo, hi]`` so a few cells cannot push it to an extreme.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 0.5
    grid = np.linspace(lo, hi, 141)
    pos, neg = y == 1, y == 0
    scores = np.array([0.5 * (np.mean(p[pos] >= t) + np.mean(p[neg] < t)) for t in grid])
    best = scores.max()
    good = grid[scores >= best - 0.002]
    return float(np.median(good))
