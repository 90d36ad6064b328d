"""Evaluation of a trained model: predictions, metrics, the JSON + PNG report, and entry points on a lake.

* :func:`predict_frame` / :func:`evaluate`: predictions and metrics
  (:mod:`~cellsift.pipeline.classify.metrics`) of a trained model on held-out cells;
* :func:`write_report`: ``report.json`` plus figures
  (:mod:`~cellsift.pipeline.classify.figures`: learning curves, ROC, PR, calibration,
  confusion matrix, a montage of the most confident and most uncertain clips);
* :func:`evaluate_on_lake`, :func:`cross_validate_on_lake` (folds grouped by animal) and
  :func:`classified_montage` (a lake's classified cells, no labels needed).

The capstone protocol lives in :mod:`~cellsift.pipeline.classify.capstone`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card import ModelCard, check_card_for_cells
from cellsift.pipeline.classify.card_build import training_cell_keys
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.data import ID_COLUMNS, CellData
from cellsift.pipeline.classify.ensemble import EnsembleClassifier
from cellsift.pipeline.classify.figures import (
    LEARNING_CURVES_FILE,
    calibration_figure,
    capstone_figure,
    capstone_learning_curve_figure,
    confusion_figure,
    learning_curves_figure,
    montage,
    pyplot,
    roc_pr_figure,
)
from cellsift.pipeline.classify.kinds import make_model
from cellsift.pipeline.classify.labels import LabelSpec
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.pipeline.classify.metrics import binary_metrics, reason_metrics
from cellsift.pipeline.classify.store import load_model
from cellsift.pipeline.classify.training import cross_validate
from cellsift.schemas import CellsiftError, InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "classified_montage",
    "cross_validate_on_lake",
    "evaluate",
    "evaluate_on_lake",
    "per_animal",
    "predict_frame",
    "training_cells_mask",
    "write_report",
]


def predict_frame(model: CellClassifier, data: CellData, *, threshold: float | None = None) -> pd.DataFrame:
    """Predictions of ``model`` on ``data``: ids, ``y``, ``p_good``, ``label``, ``reason``, truth.

    For an ensemble, the base models' ``p_features`` and ``p_clips`` are added.
    """
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
    out["ood_score"], out["ood_flag"] = model.ood_scores(data)
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
    metrics: dict[str, Any] = {
        "model_id": model.model_id,
        "kind": model.kind,
        "n_cells": int(len(pred)),
        "predict_seconds": round(seconds, 2),
        "cells_per_second": round(len(pred) / max(seconds, 1e-9), 1),
    }
    for col, thr in (("p_good", model.decision_threshold), ("p_features", 0.5), ("p_clips", 0.5)):
        if col in pred:
            metrics[col] = binary_metrics(y, pred[col].to_numpy(), threshold=thr)
    bad = (pred["y"] == 0) & (pred["label"] == "bad")
    metrics["reasons"] = reason_metrics(
        pred.loc[bad, "true_reason"].to_numpy(), pred.loc[bad, "reason"].to_numpy()
    )
    metrics["per_animal"] = per_animal(pred, threshold=model.decision_threshold)
    flags = pred["ood_flag"].to_numpy(dtype=bool)
    metrics["ood"] = {
        "frac_flagged": round(float(flags.mean()), 4) if len(flags) else None,
        "median_score": round(float(np.nanmedian(pred["ood_score"])), 4)
        if np.isfinite(pred["ood_score"]).any()
        else None,
    }
    return pred, metrics


def per_animal(pred: pd.DataFrame, *, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Balanced accuracy and ROC-AUC of ``p_good`` per animal (``cohort/animal``)."""
    out: dict[str, dict[str, Any]] = {}
    for (cohort, animal), g in pred.groupby(["cohort", "animal"], sort=True):
        m = binary_metrics(g["y"].to_numpy(), g["p_good"].to_numpy(), threshold=threshold)
        out[f"{cohort}/{animal}"] = {k: m.get(k) for k in ("n", "balanced_accuracy", "roc_auc", "accuracy")}
    return out


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
        From :func:`~cellsift.pipeline.classify.capstone.capstone_protocol`: stored, drawn
        as a bar chart and as a learning curve (accuracy against training-set size).
    n_montage
        Cells per montage row.

    Returns
    -------
    pathlib.Path
        Path of ``report.json``.
    """
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    histories = _histories(model) if model is not None else {}
    if histories:
        figures.append(learning_curves_figure(plt, out, histories))
    if predictions is not None and len(predictions) and (predictions["y"] >= 0).any():
        figures += _prediction_figures(plt, out, predictions, metrics)
        if data is not None and data.clips is not None and len(data) == len(predictions):
            thr = model.decision_threshold if model is not None else 0.5
            mid = model.model_id if model is not None else None
            figures.append(montage(plt, predictions, data, out, n_montage, thr, model_id=mid))
    if capstone is not None and len(capstone):
        figures.append(capstone_figure(plt, out, capstone))
        if LEARNING_CURVES_FILE not in figures:
            figures.append(capstone_learning_curve_figure(plt, out, capstone))
    report: dict[str, Any] = {"metrics": metrics, "figures": figures}
    if model is not None and model.card is not None:
        report["model_card"] = model.card.to_dict()
    if capstone is not None:
        report["capstone"] = capstone
    path = out / "report.json"
    path.write_text(json.dumps(_json_safe(report), indent=2, sort_keys=True))
    logger.info("report written to %s (%d figures)", out, len(figures))
    return path


def _prediction_figures(
    plt: Any, out: Path, predictions: pd.DataFrame, metrics: Mapping[str, Any]
) -> list[str]:
    """ROC/PR and calibration (both classes labelled) and the confusion matrix of ``p_good``."""
    names = []
    pred = predictions[predictions["y"] >= 0]
    y = pred["y"].to_numpy().astype(int)
    cols = [c for c in ("p_good", "p_features", "p_clips") if c in pred]
    if len(np.unique(y)) == 2:
        names.append(roc_pr_figure(plt, out, y, pred, cols, metrics))
        names.append(calibration_figure(plt, out, y, pred, cols))
    m = metrics.get("p_good") if isinstance(metrics.get("p_good"), Mapping) else None
    if m and "confusion" in m:
        names.append(confusion_figure(plt, out, m["confusion"]["matrix"]))
    return names


def _histories(model: CellClassifier) -> dict[str, list[dict[str, float]]]:
    if isinstance(model, ClipClassifier) and model.history:
        return {"clips": model.history}
    if isinstance(model, EnsembleClassifier) and model.clips.history:
        return {"clips": model.clips.history}
    return {}


# ---------------------------------------------------------------------------
# one-call entry points (for the CLI)


def evaluate_on_lake(
    lake: str | PathLike[str],
    model: str | PathLike[str] = "default",
    *,
    labels: LabelSpec | None = None,
    report_dir: str | PathLike[str] | None = None,
    cohorts: Sequence[str] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Evaluate a model (``default``, a registered id or a folder) on a lake's labelled cells.

    Overlap-flagged cells are left out, as in training, and so are the model's own
    training cells (:func:`training_cells_mask`; a warning gives the count, and the
    metrics ``excluded_training_cells``). The model card is checked against the cells
    first (``strict``: refuse on a mismatch). Writes ``report.json``
    and figures into ``report_dir`` if given.

    Returns
    -------
    dict
        The metrics of :func:`evaluate`.

    Raises
    ------
    InputFormatError
        Every labelled cell is one the model was trained on.
    """
    mdl = load_model(model, lake=lake)
    card = mdl.require_card()
    data = load_cell_data(
        lake,
        labels=labels or LabelSpec(),
        clips=mdl.uses_clips,
        model_crop=card.clip_model_crop or 24,
        pool=card.clip_pool or 2,
        cohorts=cohorts,
        target_fps=card.fps if mdl.uses_clips and card.fps else None,
    )
    check_card_for_cells(card, data, where=str(lake), strict=strict)
    seen, how = training_cells_mask(card, data)
    if seen.all():
        raise InputFormatError(
            f"all {len(data)} labelled cells are the model's own training cells (matched {how}): "
            "nothing held out to evaluate on",
            path=lake,
            field="--model",
            fix="evaluate on cells the model was not trained on (another lake, or --labels with new "
            "cells), or use --protocol cv",
        )
    if seen.any():
        logger.warning(
            "excluded %d of %d labelled cells: model %s was trained on them (matched %s)",
            int(seen.sum()),
            len(data),
            mdl.model_id,
            how,
        )
        data = data.take(np.flatnonzero(~seen))
    pred, metrics = evaluate(mdl, data)
    metrics["excluded_training_cells"] = int(seen.sum())
    metrics["excluded_by"] = how
    if report_dir is not None:
        write_report(report_dir, metrics=metrics, predictions=pred, model=mdl, data=data)
    return metrics


def training_cells_mask(card: ModelCard, data: CellData) -> tuple[np.ndarray, str]:
    """Which of ``data``'s cells the model of ``card`` was trained on.

    Matched by cell (``cohort/animal/session/unit_id``) when the card records its
    training cells, else (older cards) by animal (``cohort/animal``).

    Returns
    -------
    mask, how
        ``(n,)`` bool, and ``"by cell"`` or ``"by animal"``.
    """
    training = dict(card.training or {})
    keys = training_cell_keys(training)
    table = data.table
    if keys is not None:
        cell = table[list(ID_COLUMNS)].astype(str).agg("/".join, axis=1).to_numpy() if len(table) else []
        return np.isin(np.asarray(cell, dtype=object), list(keys)), "by cell"
    animals = {str(a) for a in training.get("animals", []) or []}
    return np.isin(data.groups, list(animals)), "by animal"


def cross_validate_on_lake(
    lake: str | PathLike[str],
    *,
    kind: str = "features",
    labels: LabelSpec | None = None,
    n_folds: int = 5,
    seed: int = 0,
    report_dir: str | PathLike[str] | None = None,
) -> dict[str, Any]:
    """Cross-validate a model kind on a lake's labelled cells, folds grouped by animal.

    No fold is scored on an animal it trained on. Returns the metrics of the pooled
    out-of-fold predictions (plus per animal and per fold) and writes a report if
    ``report_dir`` is given.
    """
    data = load_cell_data(lake, labels=labels or LabelSpec())  # the feature model uses clip summaries too
    oof = cross_validate(data, lambda: make_model(kind, seed=seed), n_folds=n_folds, seed=seed)
    y = oof["y"].to_numpy()
    metrics: dict[str, Any] = {
        "kind": kind,
        "n_folds": int(oof["fold"].nunique()),
        "n_cells": int(len(oof)),
        "p_good": binary_metrics(y, oof["p_good"].to_numpy()),
    }
    metrics["per_fold"] = {
        str(k): {
            "animals": sorted(set((g["cohort"] + "/" + g["animal"]).tolist())),
            **{
                m: binary_metrics(g["y"].to_numpy(), g["p_good"].to_numpy()).get(m)
                for m in ("n", "balanced_accuracy", "roc_auc")
            },
        }
        for k, g in oof.groupby("fold")
    }
    metrics["per_animal"] = per_animal(oof)
    bad = (oof["y"] == 0) & (oof["p_good"] < 0.5)
    metrics["reasons"] = reason_metrics(
        oof.loc[bad, "true_reason"].to_numpy(), oof.loc[bad, "reason_pred"].to_numpy()
    )
    if report_dir is not None:
        write_report(
            report_dir,
            metrics=metrics,
            predictions=oof.assign(label=np.where(oof["p_good"] >= 0.5, "good", "bad")),
        )
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
    from cellsift.catalog import Lake

    plt = pyplot(force=False)
    lk = Lake(lake)
    cells = lk.cells
    if "p_good" not in cells or cells["p_good"].notna().sum() == 0:
        raise InputFormatError(
            "no classified cells in the lake",
            path=lk.root,
            field="p_good",
            fix="run 'cellsift run' (it classifies every cell)",
        )
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

    data = load_cell_data(
        lk, labels=None, require_labels=False, include_flagged=True, model_crop=crop, pool=pool, where=keep
    )
    if len(data) == 0:
        raise InputFormatError(
            "no classified cells with clips to show",
            path=lk.root,
            field="session",
            fix="pick a session that has a movie",
        )
    pred = (
        data.table[["animal", "session", "unit_id", "p_good", "reason"]].assign(y=-1).reset_index(drop=True)
    )
    path = Path(out)
    folder = path.parent if path.suffix.lower() == ".png" else path
    folder.mkdir(parents=True, exist_ok=True)
    name = montage(plt, pred, data, folder, n, threshold, model_id=model_id)
    if path.suffix.lower() == ".png" and path.name != name:
        (folder / name).replace(path)
        return path
    return folder / name
