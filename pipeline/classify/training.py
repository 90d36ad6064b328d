"""Training, cross-validation and fine-tuning of cell classifiers, and one-call training on a lake.

* :func:`cross_validate`: out-of-fold predictions, folds grouped by animal (no fold is
  scored on an animal it trained on);
* :func:`train_model`: a model of a kind trained on all labelled cells (with an
  early-stopping split);
* :func:`fine_tune`: a trained model adapted to a lab's own labels (the clip network
  starts from the base model's weights); the card records ``parent_model_id``;
* :func:`train_on_lake` / :func:`fine_tune_on_lake`: the same on a lake's labelled,
  non-flagged cells, stored in the lake (``LAKE/models/<model_id>``).

The shipped default model is rebuilt by
:func:`~cellsift.pipeline.classify.default_recipe.train_default_model`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card import check_card_for_cells
from cellsift.pipeline.classify.card_build import training_summary
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.data import ID_COLUMNS, CellData
from cellsift.pipeline.classify.ensemble import EnsembleClassifier
from cellsift.pipeline.classify.kinds import make_model
from cellsift.pipeline.classify.labels import ALL_LABELS, LabelSpec
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.pipeline.classify.metrics import binary_metrics
from cellsift.pipeline.classify.progress import report_progress
from cellsift.pipeline.classify.splits import early_split, grouped_folds
from cellsift.pipeline.classify.store import check_model_id, load_model, models_dir, register_model
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = [
    "attach_oof_metrics",
    "check_free_model_id",
    "cross_validate",
    "fine_tune",
    "fine_tune_on_lake",
    "train_model",
    "train_on_lake",
]


def cross_validate(
    data: CellData,
    make: Callable[[], CellClassifier],
    *,
    n_folds: int = 5,
    seed: int = 0,
    early_stopping_fraction: float = 0.2,
) -> pd.DataFrame:
    """Out-of-fold ``p_good`` and reasons, folds grouped by animal.

    Parameters
    ----------
    data
        Labelled cells.
    make
        Returns a fresh untrained model.
    n_folds
        Folds (at most the number of animals).
    seed
        Split seed.
    early_stopping_fraction
        Fraction of each training fold held out for early stopping.

    Returns
    -------
    pandas.DataFrame
        ``ID_COLUMNS`` + ``fold``, ``y``, ``p_good``, ``reason_pred``, ``true_reason``.
    """
    y = data.require_labels(what="cross-validation")
    p = np.full(len(data), np.nan)
    reason = np.full(len(data), None, dtype=object)
    fold = np.full(len(data), -1)
    for k, (tr, te) in enumerate(grouped_folds(data.groups, y, n_folds=n_folds, seed=seed)):
        fit_data, val = early_split(data.take(tr), early_stopping_fraction, seed + k)
        model = make().fit(fit_data, valid=val)
        test = data.take(te)
        p[te] = model.predict_proba(test)
        reason[te] = model.predict_reason(test)
        fold[te] = k
        logger.info("fold %d: %d train / %d test cells", k, len(tr), len(te))
    out = data.table[list(ID_COLUMNS)].copy()
    out["fold"], out["y"], out["p_good"], out["reason_pred"] = fold, y, p, reason
    out["true_reason"] = data.reasons if data.reasons is not None else None
    return out


def train_model(
    data: CellData,
    kind: str = "ensemble",
    *,
    seed: int = 0,
    clip_config: ClipModelConfig | None = None,
    early_stopping_fraction: float = 0.2,
    model_id: str | None = None,
    n_folds: int = 3,
) -> CellClassifier:
    """Train a model of ``kind`` on all of ``data`` (with an early-stopping split)."""
    model = make_model(kind, seed=seed, clip_config=clip_config, n_folds=n_folds)
    if kind == "ensemble":
        model.fit(data)  # the ensemble splits for early stopping and calibration itself
    else:
        report_progress("fitting %s model...", kind)
        fit_data, val = early_split(data, early_stopping_fraction, seed)
        model.fit(fit_data, valid=val)
    _record_all_cells(model, data)
    if model_id is not None and model.card is not None:
        _rename(model, model_id)
    return model


def _record_all_cells(model: CellClassifier, data: CellData) -> None:
    """Card's ``training.cells``: every cell the model saw, early-stopping split included."""
    if model.card is not None:
        cells = training_summary(data)["cells"]
        model.card = replace(model.card, training={**dict(model.card.training), "cells": cells})


def _rename(model: CellClassifier, model_id: str) -> None:
    check_model_id(model_id)
    model.card = replace(model.require_card(), model_id=model_id)


def fine_tune(
    base: CellClassifier,
    data: CellData,
    *,
    seed: int = 0,
    model_id: str | None = None,
    base_data: CellData | None = None,
) -> CellClassifier:
    """Adapt a trained model to a lab's own labels.

    The clip network starts from the base model's weights and trains on the new labels
    with a lower learning rate; the feature model and the calibration are re-fitted on
    the new labels (together with ``base_data``, if given). The card records
    ``parent_model_id``.

    Parameters
    ----------
    base
        A trained model (e.g. ``load_model("default")``).
    data
        The lab's labelled cells (with clips if ``base`` uses clips).
    seed
        Random seed.
    model_id
        Id of the new model (default: generated).
    base_data
        Optional training data of the base model to mix in (guards against forgetting).
    """
    train = data if base_data is None else CellData.concat([base_data, data])
    train.require_labels(what="fine-tuning")
    parent = base.model_id
    if isinstance(base, EnsembleClassifier):
        model = base.fine_tune(train, seed=seed)
    elif isinstance(base, ClipClassifier):
        model = ClipClassifier(
            replace(base.config, lr=base.config.lr / 4, seed=seed, epochs=max(10, base.config.epochs // 2))
        )
        fit_data, val = early_split(train, 0.2, seed)
        model.fit_from(base, fit_data, valid=val)
    else:
        model = make_model(base.kind, seed=seed)
        fit_data, val = early_split(train, 0.2, seed)
        model.fit(fit_data, valid=val)
    model.card = replace(model.require_card(), parent_model_id=parent)
    _record_all_cells(model, train)
    if model_id is not None:
        _rename(model, model_id)
    return model


# ---------------------------------------------------------------------------
# one-call entry points (for the CLI)


def train_on_lake(
    lake: str | PathLike[str],
    *,
    kind: str = "ensemble",
    labels: LabelSpec = ALL_LABELS,
    model_id: str | None = None,
    seed: int = 0,
    register: bool = True,
    overwrite: bool = False,
    clip_config: ClipModelConfig | None = None,
) -> tuple[CellClassifier, Path | None]:
    """Train a model on a lake's labelled, non-flagged cells and register it in the lake.

    Parameters
    ----------
    lake
        The lake (processed by ``cellsift run``).
    kind
        ``ensemble`` (default), ``features`` or ``clips``.
    labels
        Where labels come from (lake ``labels`` table, optionally by source, or a CSV).
    model_id
        Id of the model in the lake (default: generated from kind and time).
    seed
        Random seed.
    register
        Store the model under ``LAKE/models/<model_id>``.
    overwrite
        Replace a registered model of the same id.
    clip_config
        Clip-model settings (default :class:`ClipModelConfig`).

    Returns
    -------
    model, path
        The trained model and its folder in the lake (``None`` if not registered).
    """
    if register:
        check_free_model_id(lake, model_id, overwrite=overwrite)
    cfg = clip_config or ClipModelConfig(seed=seed)
    report_progress("loading labels and clips...")
    data = load_cell_data(lake, labels=labels, model_crop=cfg.model_crop, pool=cfg.pool)
    _report_labels(data)
    model = train_model(data, kind, seed=seed, clip_config=cfg, model_id=model_id)
    attach_oof_metrics(model)
    path = _register(model, lake, overwrite) if register else None
    return model, path


def check_free_model_id(lake: str | PathLike[str], model_id: str | None, *, overwrite: bool = False) -> None:
    """Refuse, before any training, a model id that is invalid or (unless ``overwrite``) taken.

    Raises
    ------
    LakeError
        The id cannot name a folder, is ``default``, or is registered in the lake already.
    """
    if model_id is None:
        return
    check_model_id(model_id)
    final = models_dir(lake) / model_id
    if final.exists() and not overwrite:
        raise LakeError(
            f"a model '{model_id}' is already registered",
            path=final,
            field="model_id",
            fix="choose another --model-id, or pass --overwrite to replace it",
        )


def _report_labels(data: CellData) -> None:
    y = data.y if data.y is not None else np.zeros(0)
    report_progress(
        "labels: %d cells (%d good / %d bad) from %d animals",
        len(data),
        int((y == 1).sum()),
        int((y == 0).sum()),
        len(set(data.groups)),
    )


def _register(model: CellClassifier, lake: str | PathLike[str], overwrite: bool) -> Path:
    path = register_model(model, lake, overwrite=overwrite)
    report_progress("registered %s in %s", model.model_id, path)
    return path


def fine_tune_on_lake(
    lake: str | PathLike[str],
    *,
    base: str | PathLike[str] = "default",
    labels: LabelSpec = ALL_LABELS,
    model_id: str | None = None,
    seed: int = 0,
    register: bool = True,
    overwrite: bool = False,
) -> tuple[CellClassifier, Path | None]:
    """Fine-tune ``base`` (default: the shipped model) on a lab's labels and register the result.

    The lake's cells must come from the clip geometry and frame rate the base model was
    trained at (its card is checked first).
    """
    if register:
        check_free_model_id(lake, model_id, overwrite=overwrite)
    model = load_model(base, lake=lake)
    card = model.require_card()
    crop = card.clip_model_crop or 24
    pool = card.clip_pool or 2
    report_progress("loading labels and clips...")
    data = load_cell_data(
        lake,
        labels=labels,
        clips=model.uses_clips,
        model_crop=crop,
        pool=pool,
        target_fps=card.fps if model.uses_clips and card.fps else None,
    )
    check_card_for_cells(card, data, where=str(lake))
    _report_labels(data)
    report_progress("fine-tuning %s (%s)...", model.model_id, model.kind)
    tuned = fine_tune(model, data, seed=seed, model_id=model_id)
    attach_oof_metrics(tuned)
    path = _register(tuned, lake, overwrite) if register else None
    return tuned, path


def _oof_threshold(model: CellClassifier, oof: Any) -> Any:
    """The cross-fitted per-cell thresholds when the model has them, else its threshold."""
    if "threshold" in oof and np.isfinite(oof["threshold"].to_numpy(dtype=float)).all():
        return oof["threshold"].to_numpy(dtype=float)
    return model.decision_threshold


def attach_oof_metrics(model: CellClassifier) -> None:
    """Put the ensemble's out-of-fold metrics (grouped by animal) on its card."""
    oof = getattr(model, "oof", None)
    if oof is None or model.card is None:
        return
    metrics = {
        name: binary_metrics(
            oof["y"].to_numpy(),
            oof[name].to_numpy(),
            threshold=_oof_threshold(model, oof) if name == "p_good" else 0.5,
        )
        for name in ("p_features", "p_clips", "p_good")
        if name in oof
    }
    model.card = replace(model.card, metrics={**dict(model.card.metrics), "out_of_fold": metrics})
