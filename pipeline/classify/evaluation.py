"""Metrics, the capstone protocol and the JSON + PNG evaluation report.

* :func:`binary_metrics`: balanced accuracy, per-class precision/recall/F1, ROC-AUC,
  PR-AUC (average precision, for each class), confusion matrix, Brier score, expected
  calibration error and a 10-bin calibration curve.
* :func:`evaluate` / :func:`evaluate_cv`: predictions and metrics of a trained model on
  held-out cells, or of grouped-by-animal cross-validation.
* :func:`capstone_protocol`: the capstone's Table 2 replayed — train on 50, 150, 300 and
  377 balanced labelled cells, test on 56 held-out cells (28 good / 28 bad) from animals
  never trained on, side by side with the capstone's numbers.
* :func:`write_report`: ``report.json`` plus figures (learning curves, ROC, PR,
  calibration, confusion matrix, a montage of the most confident and most uncertain
  clips), drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas.errors import CellsiftError, InputFormatError

from cellsift.pipeline.classify.base import ID_COLUMNS, REASONS, CellClassifier, CellData

logger = logging.getLogger(__name__)

__all__ = [
    "CAPSTONE_TABLE2",
    "binary_metrics",
    "reason_metrics",
    "balanced_threshold",
    "predict_frame",
    "evaluate",
    "per_animal",
    "capstone_protocol",
    "format_capstone_table",
    "write_report",
    "evaluate_on_lake",
    "capstone_on_lake",
    "cross_validate_on_lake",
]


@dataclass(frozen=True)
class CapstoneTrial:
    """One row of the capstone's Table 2 (accuracies in %)."""

    trial: int
    n_train: int
    n_bad: int
    n_good: int
    train_accuracy: float
    test_accuracy: float
    test_bad_accuracy: float
    test_good_accuracy: float


#: The capstone's Table 2: 56 test cells (28 bad / 28 good) in every trial.
CAPSTONE_TABLE2: Final = (
    CapstoneTrial(1, 377, 187, 190, 73.68, 64.3, 64.3, 64.3),
    CapstoneTrial(2, 300, 150, 150, 66.67, 69.7, 46.4, 92.9),
    CapstoneTrial(3, 150, 75, 75, 80.00, 59.0, 64.3, 53.6),
    CapstoneTrial(4, 50, 25, 25, 100.00, 71.5, 78.6, 64.3),
)


# ---------------------------------------------------------------------------
# metrics


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def binary_metrics(y: np.ndarray, p: np.ndarray, *, threshold: float = 0.5, n_bins: int = 10) -> dict[str, Any]:
    """Metrics of ``p_good`` against labels ``y`` (1 good, 0 bad).

    Parameters
    ----------
    y
        ``(n,)`` labels (entries < 0 are ignored).
    p
        ``(n,)`` predicted ``p_good`` (NaN entries are ignored).
    threshold
        A cell is called good when ``p >= threshold``.
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
    pred = (p >= threshold).astype(int)
    n = len(y)
    out: dict[str, Any] = {"n": int(n), "n_good": int((y == 1).sum()), "n_bad": int((y == 0).sum()),
                           "threshold": round(float(threshold), 4)}
    if n == 0:
        return out
    out["accuracy"] = _f(np.mean(pred == y))
    recalls = []
    for name, c in (("good", 1), ("bad", 0)):
        tp = int(np.sum((pred == c) & (y == c)))
        fp = int(np.sum((pred == c) & (y != c)))
        fn = int(np.sum((pred != c) & (y == c)))
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if np.isfinite(prec) and np.isfinite(rec) and prec + rec else float("nan")
        out[name] = {"precision": _f(prec), "recall": _f(rec), "f1": _f(f1), "support": tp + fn}
        if tp + fn:
            recalls.append(rec)
    out["balanced_accuracy"] = _f(np.mean(recalls))
    both = len(np.unique(y)) == 2
    out["roc_auc"] = _f(roc_auc_score(y, p)) if both else None
    out["pr_auc_good"] = _f(average_precision_score(y, p)) if both else None
    out["pr_auc_bad"] = _f(average_precision_score(1 - y, 1 - p)) if both else None
    cm = [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]
    out["confusion"] = {"labels": ["bad", "good"], "rows": "true", "columns": "predicted", "matrix": cm}
    out["brier"] = _f(np.mean((p - y) ** 2))
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    mean_p, frac, count = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        count.append(int(m.sum()))
        mean_p.append(_f(p[m].mean()) if m.any() else None)
        frac.append(_f(y[m].mean()) if m.any() else None)
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    out["ece"] = _f(ece)
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
        "named": _f(named.mean()),
        "accuracy": _f(np.mean(t[named] == q[named])) if named.any() else None,
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


# ---------------------------------------------------------------------------
# predictions


def predict_frame(model: CellClassifier, data: CellData, *, threshold: float | None = None) -> pd.DataFrame:
    """Predictions of ``model`` on ``data``: ids, ``y``, ``p_good``, ``label``, ``reason``, truth.

    For an ensemble, the base models' ``p_features`` and ``p_clips`` are added.
    """
    from cellsift.pipeline.classify.ensemble import EnsembleClassifier

    out = data.table[[c for c in ID_COLUMNS if c in data.table]].copy()
    if isinstance(model, EnsembleClassifier):
        parts, reason_p = model.predict_detailed(data)
        for col in parts:
            out[col] = parts[col].to_numpy()
    else:
        out["p_good"], reason_p = model.predict(data)
    thr = model.decision_threshold if threshold is None else threshold
    out["label"] = np.where(out["p_good"] >= thr, "good", "bad")
    reason = model.predict_reason(data, proba=reason_p)
    out["reason"] = np.where(out["label"] == "bad", reason, None)
    out["y"] = data.y if data.y is not None else -1
    out["true_reason"] = data.reasons if data.reasons is not None else None
    return out


def evaluate(model: CellClassifier, data: CellData) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score ``model`` on labelled held-out cells.

    Returns
    -------
    predictions, metrics
        ``metrics`` has one entry per probability column (``p_good`` and, for an
        ensemble, ``p_features``/``p_clips``), ``reasons`` and ``per_animal``.
    """
    t0 = time.perf_counter()
    pred = predict_frame(model, data)
    seconds = time.perf_counter() - t0
    y = pred["y"].to_numpy()
    metrics: dict[str, Any] = {"model_id": model.model_id, "kind": model.kind, "n_cells": int(len(pred)),
                               "predict_seconds": round(seconds, 2),
                               "cells_per_second": round(len(pred) / max(seconds, 1e-9), 1)}
    for col, thr in (("p_good", model.decision_threshold), ("p_features", 0.5), ("p_clips", 0.5)):
        if col in pred:
            metrics[col] = binary_metrics(y, pred[col].to_numpy(), threshold=thr)
    bad = (pred["y"] == 0) & (pred["label"] == "bad")
    metrics["reasons"] = reason_metrics(pred.loc[bad, "true_reason"].to_numpy(), pred.loc[bad, "reason"].to_numpy())
    metrics["per_animal"] = per_animal(pred, threshold=model.decision_threshold)
    return pred, metrics


def per_animal(pred: pd.DataFrame, *, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Balanced accuracy and ROC-AUC of ``p_good`` per animal (``cohort/animal``)."""
    out: dict[str, dict[str, Any]] = {}
    for (cohort, animal), g in pred.groupby(["cohort", "animal"], sort=True):
        m = binary_metrics(g["y"].to_numpy(), g["p_good"].to_numpy(), threshold=threshold)
        out[f"{cohort}/{animal}"] = {k: m.get(k) for k in ("n", "balanced_accuracy", "roc_auc", "accuracy")}
    return out


# ---------------------------------------------------------------------------
# capstone protocol


def _balanced_sample(y: np.ndarray, n_bad: int, n_good: int, rng: np.random.Generator,
                     order: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n_bad`` bad and ``n_good`` good cells (the first ones of ``order``)."""
    bad, good = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if len(bad) < n_bad or len(good) < n_good:
        raise InputFormatError(
            f"need {n_bad} bad and {n_good} good cells, the pool has {len(bad)} and {len(good)}",
            field="label", fix="use a larger training pool or smaller training sizes",
        )
    if order is None:
        return np.concatenate([rng.choice(bad, n_bad, replace=False), rng.choice(good, n_good, replace=False)])
    ob = order[np.isin(order, bad)][:n_bad]
    og = order[np.isin(order, good)][:n_good]
    return np.concatenate([ob, og])


def capstone_protocol(
    train_pool: CellData,
    test_pool: CellData,
    make: Mapping[str, Callable[[], CellClassifier]],
    *,
    n_test_per_class: int = 28,
    trials: Sequence[CapstoneTrial] = CAPSTONE_TABLE2,
    seed: int = 0,
) -> pd.DataFrame:
    """Replay the capstone's Table 2 with cellsift's models.

    Parameters
    ----------
    train_pool
        Labelled cells to draw training sets from (balanced as in the capstone: 377 =
        187 bad + 190 good, 300 = 150 + 150, 150 = 75 + 75, 50 = 25 + 25; smaller sets
        are subsets of larger ones).
    test_pool
        Labelled cells of *other* animals; 28 good and 28 bad are drawn once and used
        for every trial.
    make
        ``{model name: factory of an untrained model}``, e.g. ensemble and clips.
    n_test_per_class
        Test cells per class.
    trials
        Trials to run (default: the capstone's four).
    seed
        Sampling seed.

    Returns
    -------
    pandas.DataFrame
        One row per (trial, model): ``trial, n_train, n_bad, n_good, model,
        train_accuracy, test_accuracy, test_bad_accuracy, test_good_accuracy,
        test_balanced_accuracy, test_roc_auc, fit_seconds`` (accuracies in %), and the
        capstone's numbers in ``capstone_*`` columns.

    Raises
    ------
    InputFormatError
        If the pools share an animal or are too small.
    """
    shared = set(train_pool.groups) & set(test_pool.groups)
    if shared:
        raise InputFormatError(
            f"train and test pools share animals {sorted(shared)[:3]}",
            field="animal", fix="draw the test cells from animals not used for training",
        )
    rng = np.random.default_rng(seed)
    y_tr = train_pool.require_labels(what="the capstone protocol")
    y_te = test_pool.require_labels(what="the capstone protocol")
    test_idx = _balanced_sample(y_te, n_test_per_class, n_test_per_class, rng)
    test = test_pool.take(np.sort(test_idx))
    order = rng.permutation(len(train_pool))
    rows = []
    for trial in trials:
        idx = _balanced_sample(y_tr, trial.n_bad, trial.n_good, rng, order=order)
        train = train_pool.take(np.sort(idx))
        for name, factory in make.items():
            t0 = time.perf_counter()
            model = factory()
            model.fit(train)
            fit_s = time.perf_counter() - t0
            thr = model.decision_threshold
            p_tr = model.predict_proba(train)
            p_te = model.predict_proba(test)
            m_te = binary_metrics(test.y, p_te, threshold=thr)
            m_tr = binary_metrics(train.y, p_tr, threshold=thr)
            rows.append({
                "trial": trial.trial, "n_train": trial.n_train, "n_bad": trial.n_bad, "n_good": trial.n_good,
                "model": name,
                "train_accuracy": 100 * (m_tr["accuracy"] or 0.0),
                "test_accuracy": 100 * (m_te["accuracy"] or 0.0),
                "test_bad_accuracy": 100 * (m_te["bad"]["recall"] or 0.0),
                "test_good_accuracy": 100 * (m_te["good"]["recall"] or 0.0),
                "test_balanced_accuracy": 100 * (m_te["balanced_accuracy"] or 0.0),
                "test_roc_auc": m_te["roc_auc"],
                "fit_seconds": round(fit_s, 1),
                "capstone_train_accuracy": trial.train_accuracy,
                "capstone_test_accuracy": trial.test_accuracy,
                "capstone_test_bad_accuracy": trial.test_bad_accuracy,
                "capstone_test_good_accuracy": trial.test_good_accuracy,
            })
            logger.info("capstone trial %d (%d cells) %s: test accuracy %.1f%% (capstone %.1f%%)",
                        trial.trial, trial.n_train, name, rows[-1]["test_accuracy"], trial.test_accuracy)
    return pd.DataFrame(rows)


def format_capstone_table(table: pd.DataFrame) -> str:
    """Render :func:`capstone_protocol`'s result side by side with the capstone, as text."""
    lines = [
        "Capstone protocol (Table 2): 56 test cells (28 bad / 28 good) from animals never trained on",
        f"{'trial':>5} {'train cells':>17} {'model':>9} | {'capstone test':>13} {'bad':>6} {'good':>6} | "
        f"{'cellsift test':>13} {'bad':>6} {'good':>6} {'AUC':>6} {'fit s':>6}",
    ]
    for r in table.itertuples():
        auc = "  n/a " if r.test_roc_auc is None or not np.isfinite(r.test_roc_auc) else f"{r.test_roc_auc:6.3f}"
        lines.append(
            f"{r.trial:>5} {f'{r.n_train} ({r.n_bad}/{r.n_good})':>17} {r.model:>9} | "
            f"{r.capstone_test_accuracy:12.1f}% {r.capstone_test_bad_accuracy:5.1f}% {r.capstone_test_good_accuracy:5.1f}% | "
            f"{r.test_accuracy:12.1f}% {r.test_bad_accuracy:5.1f}% {r.test_good_accuracy:5.1f}% {auc} {r.fit_seconds:6.1f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# report


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return _json_safe(obj.to_dict(orient="records"))
    return obj


def write_report(
    out_dir: str | PathLike[str],
    *,
    metrics: Mapping[str, Any],
    predictions: pd.DataFrame | None = None,
    model: CellClassifier | None = None,
    data: CellData | None = None,
    capstone: pd.DataFrame | None = None,
    n_montage: int = 8,
) -> Path:
    """Write ``report.json`` and PNG figures into ``out_dir``.

    Parameters
    ----------
    out_dir
        Report folder (created).
    metrics
        From :func:`evaluate` (or any JSON-able mapping).
    predictions
        From :func:`evaluate`: drives ROC, PR, calibration, confusion and montage figures.
    model
        The trained model: its learning curves (clip network's history) are drawn.
    data
        The evaluated cells with clips: needed for the montage.
    capstone
        From :func:`capstone_protocol`: stored and drawn as a bar chart.
    n_montage
        Cells per montage row.

    Returns
    -------
    pathlib.Path
        Path of ``report.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figures.append(name)

    histories = _histories(model) if model is not None else {}
    if histories:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for name, hist in histories.items():
            ep = [h["epoch"] for h in hist]
            axes[0].plot(ep, [h["train_loss"] for h in hist], label=f"{name} train")
            if "valid_loss" in hist[0]:
                axes[0].plot(ep, [h["valid_loss"] for h in hist], "--", label=f"{name} validation")
                axes[1].plot(ep, [h["valid_balanced_accuracy"] for h in hist], label=name)
        axes[0].set(xlabel="epoch", ylabel="loss", title="Learning curves (clip network)")
        axes[1].set(xlabel="epoch", ylabel="balanced accuracy", title="Validation", ylim=(0.4, 1.0))
        axes[0].legend(fontsize=7)
        save(fig, "learning_curves.png")
    if predictions is not None and len(predictions) and (predictions["y"] >= 0).any():
        from sklearn.metrics import precision_recall_curve, roc_curve

        pred = predictions[predictions["y"] >= 0]
        y = pred["y"].to_numpy().astype(int)
        cols = [c for c in ("p_good", "p_features", "p_clips") if c in pred]
        if len(np.unique(y)) == 2:
            fig, axes = plt.subplots(1, 2, figsize=(9, 4))
            for col in cols:
                fpr, tpr, _ = roc_curve(y, pred[col])
                m = metrics.get(col, {}) if isinstance(metrics.get(col), Mapping) else {}
                axes[0].plot(fpr, tpr, label=f"{col} (AUC {m.get('roc_auc', float('nan')) or float('nan'):.3f})")
                prec, rec, _ = precision_recall_curve(y, pred[col])
                axes[1].plot(rec, prec, label=f"{col} (AP {m.get('pr_auc_good', float('nan')) or float('nan'):.3f})")
            axes[0].plot([0, 1], [0, 1], ":", color="grey")
            axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (good = positive)")
            axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall (good)")
            for ax in axes:
                ax.legend(fontsize=8, loc="lower right")
            save(fig, "roc_pr.png")
            fig, ax = plt.subplots(figsize=(4.5, 4))
            for col in cols:
                cal = binary_metrics(y, pred[col].to_numpy())["calibration"]
                xs = [a for a, b in zip(cal["bin_mean_p"], cal["bin_frac_good"], strict=True) if a is not None]
                ys = [b for a, b in zip(cal["bin_mean_p"], cal["bin_frac_good"], strict=True) if a is not None]
                ax.plot(xs, ys, "o-", label=col)
            ax.plot([0, 1], [0, 1], ":", color="grey")
            ax.set(xlabel="predicted p_good", ylabel="fraction good", title="Calibration")
            ax.legend(fontsize=8)
            save(fig, "calibration.png")
        m = metrics.get("p_good") if isinstance(metrics.get("p_good"), Mapping) else None
        if m and "confusion" in m:
            cm = np.asarray(m["confusion"]["matrix"])
            fig, ax = plt.subplots(figsize=(3.6, 3.2))
            ax.imshow(cm, cmap="Blues")
            for i in range(2):
                for j in range(2):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=12)
            ax.set_xticks([0, 1], ["bad", "good"])
            ax.set_yticks([0, 1], ["bad", "good"])
            ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
            save(fig, "confusion.png")
        if data is not None and data.clips is not None and len(data) == len(predictions):
            thr = model.decision_threshold if model is not None else 0.5
            _montage(plt, predictions, data, out, n_montage, thr)
            figures.append("montage.png")
    if capstone is not None and len(capstone):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        models = list(dict.fromkeys(capstone["model"]))
        sizes = list(dict.fromkeys(capstone["n_train"]))
        width = 0.8 / (len(models) + 1)
        x = np.arange(len(sizes))
        cap = capstone.drop_duplicates("n_train").set_index("n_train").loc[sizes, "capstone_test_accuracy"]
        ax.bar(x, cap.to_numpy(), width, label="capstone (GoogLeNet+LSTM)", color="grey")
        for i, name in enumerate(models):
            vals = capstone[capstone["model"] == name].set_index("n_train").loc[sizes, "test_accuracy"]
            ax.bar(x + (i + 1) * width, vals.to_numpy(), width, label=f"cellsift {name}")
        ax.axhline(90, ls=":", color="k")
        ax.set_xticks(x + width * len(models) / 2, [str(s) for s in sizes])
        ax.set(xlabel="labelled training cells", ylabel="test accuracy (%)", ylim=(0, 100),
               title="Capstone protocol: 56 held-out cells")
        ax.legend(fontsize=7, loc="lower right")
        save(fig, "capstone.png")
    report = {"metrics": metrics, "figures": figures}
    if model is not None and model.card is not None:
        report["model_card"] = model.card.to_dict()
    if capstone is not None:
        report["capstone"] = capstone
    path = out / "report.json"
    path.write_text(json.dumps(_json_safe(report), indent=2, sort_keys=True))
    logger.info("report written to %s (%d figures)", out, len(figures))
    return path


def _histories(model: CellClassifier) -> dict[str, list[dict[str, float]]]:
    from cellsift.pipeline.classify.clip_model import ClipClassifier
    from cellsift.pipeline.classify.ensemble import EnsembleClassifier

    if isinstance(model, ClipClassifier) and model.history:
        return {"clips": model.history}
    if isinstance(model, EnsembleClassifier) and model.clips.history:
        return {"clips": model.clips.history}
    return {}


def _montage(plt: Any, pred: pd.DataFrame, data: CellData, out: Path, n: int, threshold: float) -> None:
    """Peak frames of the most confident good/bad cells and the most uncertain cells."""
    if data.clips is None:
        raise InputFormatError("a montage needs the cells' clips", field="clips",
                               fix="load the cells with clips=True")
    p = pred["p_good"].to_numpy()
    order = np.argsort(p)
    rows = {
        "most confident good": order[::-1][:n],
        "most confident bad": order[:n],
        "most uncertain": np.argsort(np.abs(p - threshold))[:n],
    }
    c = data.clips
    nb = c.n_before
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.9 * len(rows)), squeeze=False)
    for r, (title, idx) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[r, j]
            ax.set_axis_off()
            if j >= len(idx):
                continue
            i = int(idx[j])
            k = int(np.argmax(c.valid[i])) if c.valid[i].any() else 0
            frame = c.dynamic[i, k, nb : nb + 3].astype(np.float32).mean(axis=0)
            ax.imshow(frame, cmap="magma", vmin=-2, vmax=max(6.0, float(np.percentile(frame, 99))))
            fp = c.static[i, k, 0].astype(np.float32)
            if fp.max() > 0:
                ax.contour(fp, levels=[0.3], colors="cyan", linewidths=0.6)
            truth = {1: "good", 0: "bad"}.get(int(pred["y"].iloc[i]), None)
            if truth is None:  # unlabelled: show the unit and the predicted reason
                reason = pred["reason"].iloc[i] if "reason" in pred else None
                truth = f"#{pred['unit_id'].iloc[i]}" + (f" {str(reason)[:10]}" if isinstance(reason, str) else "")
            ax.set_title(f"p={p[i]:.2f} ({truth})", fontsize=7)
        axes[r, 0].text(-0.1, 0.5, title, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=8)
    fig.suptitle("Peak frames (dF/sigma) with footprint contour", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "montage.png", dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# one-call entry points (for the CLI)


def evaluate_on_lake(
    lake: str | PathLike[str],
    model: str | PathLike[str] = "default",
    *,
    labels: Any = None,
    report_dir: str | PathLike[str] | None = None,
    cohorts: Sequence[str] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Evaluate a model (``default``, a registered id or a folder) on a lake's labelled cells.

    Overlap-flagged cells are left out, as in training. The model card is checked
    against the cells first (``strict``: refuse on a mismatch). Writes ``report.json``
    and figures into ``report_dir`` if given.

    Returns
    -------
    dict
        The metrics of :func:`evaluate`.
    """
    from cellsift.pipeline.classify.store import load_model
    from cellsift.pipeline.classify.training import LabelSpec, load_cell_data

    mdl = load_model(model, lake=lake)
    card = mdl.require_card()
    data = load_cell_data(lake, labels=labels or LabelSpec(), clips=mdl.uses_clips,
                          model_crop=card.clip_model_crop or 24, pool=card.clip_pool or 2, cohorts=cohorts,
                          target_fps=card.fps if mdl.uses_clips and card.fps else None)
    version = None
    if "pipeline_version" in data.table and data.table["pipeline_version"].notna().any():
        version = str(data.table["pipeline_version"].dropna().iloc[0])
    card.check_compatible(
        pipeline_version=version, columns=list(data.table.columns), fps=data.fps, strict=strict,
        where=str(lake),
        clip_frames=data.clips.n_frames if data.clips is not None else None,
        clip_n_before=data.clips.n_before if data.clips is not None else None,
        clip_crop_px=data.clips.crop_px if data.clips is not None else None,
    )
    pred, metrics = evaluate(mdl, data)
    if report_dir is not None:
        write_report(report_dir, metrics=metrics, predictions=pred, model=mdl, data=data)
    return metrics


def capstone_on_lake(
    lake: str | PathLike[str],
    *,
    test_cohort: str | None = None,
    test_fraction: float = 0.25,
    models: Sequence[str] = ("ensemble", "clips"),
    labels: Any = None,
    seed: int = 0,
    report_dir: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """The capstone protocol (:func:`capstone_protocol`) on a lake's labelled cells.

    Parameters
    ----------
    lake
        The lake.
    test_cohort
        Draw the 56 test cells from this cohort (train on the others); default: hold out
        ``test_fraction`` of the animals (chosen with ``seed``).
    test_fraction
        Share of animals held out when ``test_cohort`` is not given.
    models
        Model kinds to train in each trial (``ensemble``, ``clips``, ``features``).
    labels
        :class:`~cellsift.pipeline.classify.training.LabelSpec` (default: the lake's labels).
    seed
        Sampling and training seed.
    report_dir
        Where ``report.json`` and ``capstone.png`` go.

    Returns
    -------
    pandas.DataFrame
        As :func:`capstone_protocol`; also logged side by side with the capstone.
    """
    from cellsift.pipeline.classify.training import LabelSpec, load_cell_data, make_model

    data = load_cell_data(lake, labels=labels or LabelSpec(), clips=any(m != "features" for m in models))
    groups = data.groups
    if test_cohort is not None:
        test_mask = data.table["cohort"].astype(str).to_numpy() == test_cohort
        if not test_mask.any():
            raise InputFormatError(f"no labelled cells of cohort {test_cohort!r}", path=lake, field="cohort")
    else:
        animals = np.array(sorted(set(groups)))
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(test_fraction * len(animals))))
        test_mask = np.isin(groups, rng.choice(animals, n_test, replace=False))
    train_pool, test_pool = data.take(~test_mask), data.take(test_mask)
    factories = {name: (lambda name=name: make_model(name, seed=seed)) for name in models}
    table = capstone_protocol(train_pool, test_pool, factories, seed=seed)
    logger.info("\n%s", format_capstone_table(table))
    if report_dir is not None:
        write_report(report_dir, metrics={"protocol": "capstone"}, capstone=table)
    return table


def cross_validate_on_lake(
    lake: str | PathLike[str],
    *,
    kind: str = "features",
    labels: Any = None,
    n_folds: int = 5,
    seed: int = 0,
    report_dir: str | PathLike[str] | None = None,
) -> dict[str, Any]:
    """Cross-validate a model kind on a lake's labelled cells, folds grouped by animal.

    No fold is scored on an animal it trained on. Returns the metrics of the pooled
    out-of-fold predictions (plus per animal and per fold) and writes a report if
    ``report_dir`` is given.
    """
    from cellsift.pipeline.classify.training import LabelSpec, cross_validate, load_cell_data, make_model

    data = load_cell_data(lake, labels=labels or LabelSpec())  # the feature model uses clip summaries too
    oof = cross_validate(data, lambda: make_model(kind, seed=seed), n_folds=n_folds, seed=seed)
    y = oof["y"].to_numpy()
    metrics: dict[str, Any] = {"kind": kind, "n_folds": int(oof["fold"].nunique()), "n_cells": int(len(oof)),
                               "p_good": binary_metrics(y, oof["p_good"].to_numpy())}
    metrics["per_fold"] = {
        str(k): {"animals": sorted(set((g["cohort"] + "/" + g["animal"]).tolist())),
                 **{m: binary_metrics(g["y"].to_numpy(), g["p_good"].to_numpy()).get(m)
                    for m in ("n", "balanced_accuracy", "roc_auc")}}
        for k, g in oof.groupby("fold")
    }
    metrics["per_animal"] = per_animal(oof)
    bad = (oof["y"] == 0) & (oof["p_good"] < 0.5)
    metrics["reasons"] = reason_metrics(oof.loc[bad, "true_reason"].to_numpy(), oof.loc[bad, "reason_pred"].to_numpy())
    if report_dir is not None:
        write_report(report_dir, metrics=metrics, predictions=oof.assign(label=np.where(oof["p_good"] >= 0.5, "good", "bad")))
    return metrics


def classified_montage(
    lake: str | PathLike[str],
    out: str | PathLike[str],
    *,
    session: str | None = None,
    n: int = 8,
) -> Path:
    """Montage of classified cells (no labels needed) for a person to judge the calls.

    Rows: the ``n`` most confident good, the ``n`` most confident bad and the ``n`` most
    uncertain cells (``p_good`` nearest the model's decision threshold) of the lake's classified cells (optionally one ``session``), each
    shown as its strongest transient's peak frames (dF/sigma) with the footprint contour,
    ``p_good``, unit id and predicted artifact reason.

    Returns
    -------
    pathlib.Path
        The PNG written (``out`` if it ends in .png, else ``out/montage.png``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cellsift.pipeline.classify.store import load_model
    from cellsift.pipeline.classify.training import load_cell_data

    from cellsift.catalog.lake import Lake

    lk = Lake(lake)
    cells = lk.cells
    if "p_good" not in cells or cells["p_good"].notna().sum() == 0:
        raise InputFormatError("no classified cells in the lake", path=lk.root, field="p_good",
                               fix="run 'cellsift run' (it classifies every cell)")
    model_id = str(cells["model_id"].dropna().iloc[0])
    try:
        try:
            mdl = load_model(model_id, lake=lk.root)
        except CellsiftError:
            mdl = load_model("default")
        crop, pool = mdl.card.clip_model_crop or 24, mdl.card.clip_pool or 2
        threshold = mdl.decision_threshold
    except CellsiftError:
        crop, pool, threshold = 24, 2, 0.5

    def keep(t: pd.DataFrame) -> pd.Series:
        ok = t["p_good"].notna() & t["clips_path"].notna()
        return ok & (t["session"] == session) if session is not None else ok

    data = load_cell_data(lk, labels=None, require_labels=False, include_flagged=True, model_crop=crop,
                          pool=pool, where=keep)
    if len(data) == 0:
        raise InputFormatError("no classified cells with clips to show", path=lk.root, field="session",
                               fix="pick a session that has a movie")
    pred = data.table[["unit_id", "p_good", "reason"]].assign(y=-1).reset_index(drop=True)
    path = Path(out)
    folder = path.parent if path.suffix.lower() == ".png" else path
    folder.mkdir(parents=True, exist_ok=True)
    _montage(plt, pred, data, folder, n, threshold)
    if path.suffix.lower() == ".png" and path.name != "montage.png":
        (folder / "montage.png").replace(path)
        return path
    return folder / "montage.png"
