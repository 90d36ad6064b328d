"""The card of a freshly trained model: what it is and a summary of its training data.

:func:`new_card` is called by every model's ``fit``; it records the versions of the
code and packages, the clip geometry and frame rate of the training cells, and
:func:`training_summary` of them (classes, reasons, animals, sessions, a hash of the
``(ids, labels)`` list). Metrics and weight-file hashes are added later.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cellsift.pipeline._util import utc_now
from cellsift.pipeline.classify.card import FEATURE_VERSION, ModelCard
from cellsift.pipeline.classify.data import CellData, group_keys
from cellsift.pipeline.provenance import package_versions
from cellsift.schemas import PIPELINE_VERSION

logger = logging.getLogger(__name__)

__all__ = ["TrainedModel", "new_card", "training_cell_keys", "training_summary", "unit_ranges"]


def unit_ranges(unit_ids: Sequence[Any]) -> str | list[str]:
    """Unit ids compactly: integers as ``"0-12,14,16-20"``, anything else as a sorted list."""
    if not all(isinstance(u, (int, np.integer)) and not isinstance(u, bool) and u >= 0 for u in unit_ids):
        return sorted({str(u) for u in unit_ids})
    ids = sorted({int(u) for u in unit_ids})
    parts: list[str] = []
    start = prev = None
    for i in ids:
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def _expand(ranges: str | Sequence[str]) -> list[str]:
    if not isinstance(ranges, str):
        return [str(u) for u in ranges]
    out: list[str] = []
    for part in filter(None, ranges.split(",")):
        lo, sep, hi = part.partition("-")
        out += [str(i) for i in range(int(lo), int(hi) + 1)] if sep and lo else [part]
    return out


def training_cell_keys(training: Mapping[str, Any]) -> set[str] | None:
    """``cohort/animal/session/unit_id`` of a card's training cells, or None if not recorded.

    Cards written before cellsift recorded ``training["cells"]`` return None (their
    ``animals`` list is all that is known).
    """
    cells = training.get("cells")
    if not isinstance(cells, Mapping):
        return None
    return {f"{session}/{unit}" for session, ranges in cells.items() for unit in _expand(ranges)}


def training_summary(data: CellData) -> dict[str, Any]:
    """Summarise labelled training cells for a model card.

    Returns
    -------
    dict
        ``n_cells``, ``n_good``, ``n_bad``, ``reasons`` (counts), ``cohorts``,
        ``n_animals``, ``animals`` (``cohort/animal``), ``n_sessions``, ``label_sources``,
        ``data_sha256`` (SHA-256 of the sorted ``cohort/animal/session/unit_id=label``
        lines), ``cells`` (``{cohort/animal/session: unit ids}``, see :func:`unit_ranges`;
        read back by :func:`training_cell_keys`) and ``clip_stores`` (``{session: clip-store name}`` where known).
    """
    table = data.table
    y = data.y if data.y is not None else np.full(len(data), -1, dtype=np.int8)
    keys = (
        (
            table["cohort"].astype(str)
            + "/"
            + table["animal"].astype(str)
            + "/"
            + table["session"].astype(str)
            + "/"
            + table["unit_id"].astype(str)
        )
        if len(table)
        else pd.Series([], dtype=str)
    )
    lines = sorted(f"{k}={int(v)}" for k, v in zip(keys, y, strict=True))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    reasons: dict[str, int] = {}
    if data.reasons is not None:
        for r in data.reasons[y == 0]:
            name = str(r) if r is not None and not (isinstance(r, float) and np.isnan(r)) else "unknown"
            reasons[name] = reasons.get(name, 0) + 1
    sessions = (
        table[["cohort", "animal", "session"]].astype(str).agg("/".join, axis=1)
        if len(table)
        else pd.Series([], dtype=str)
    )
    summary: dict[str, Any] = {
        "n_cells": int(len(table)),
        "n_good": int((y == 1).sum()),
        "n_bad": int((y == 0).sum()),
        "reasons": dict(sorted(reasons.items())),
        "cohorts": sorted(table["cohort"].astype(str).unique().tolist()) if len(table) else [],
        "n_animals": int(len(set(group_keys(table)))),
        "animals": sorted(set(group_keys(table).tolist())),
        "n_sessions": int(sessions.nunique()),
        "data_sha256": digest,
        "cells": {
            str(session): unit_ranges(units.tolist())
            for session, units in table["unit_id"].groupby(sessions.to_numpy(), sort=True)
        }
        if len(table)
        else {},
    }
    if "label_source" in table:
        summary["label_sources"] = (
            table["label_source"].fillna("unknown").astype(str).value_counts().sort_index().to_dict()
        )
    if "clips_path" in table:
        stores = table.drop_duplicates("clips_path")
        summary["clip_stores"] = {
            f"{r.cohort}/{r.animal}/{r.session}": Path(str(r.clips_path)).name for r in stores.itertuples()
        }
    if "params_hash" in table:
        summary["params_hashes"] = sorted(table["params_hash"].dropna().astype(str).unique().tolist())
    return summary


class TrainedModel(Protocol):
    """What :func:`new_card` reads of a model: its kind and whether it reads clips."""

    @property
    def kind(self) -> str: ...

    @property
    def uses_clips(self) -> bool: ...


def _versions() -> dict[str, str]:
    versions = package_versions()
    try:
        from importlib.metadata import version

        versions["scikit-learn"] = version("scikit-learn")
    except Exception:  # noqa: BLE001 - optional
        versions["scikit-learn"] = "not installed"
    return versions


def new_card(
    model: TrainedModel,
    train: CellData,
    *,
    params: Mapping[str, Any],
    feature_columns: Sequence[str],
    model_id: str | None = None,
    pixel_size_um: float | None = None,
    model_crop: int | None = None,
) -> ModelCard:
    """Build the card of a model just trained on ``train`` (no metrics, no files yet).

    Parameters
    ----------
    model
        The trained model (its ``kind`` and ``uses_clips`` are recorded).
    train
        Its training cells (summarised on the card).
    params
        The model's configuration.
    feature_columns
        Table columns the model reads.
    model_id
        Id of the model (default: ``<kind>-<UTC time>-<random>``).
    pixel_size_um
        Pixel size (um) of the training movies (default: median of the table's column).
    model_crop
        Centre crop (px) the clip network reads.
    """
    import cellsift

    table = train.table
    pipeline_version = PIPELINE_VERSION
    if "pipeline_version" in table and table["pipeline_version"].notna().any():
        found = sorted(table["pipeline_version"].dropna().astype(str).unique())
        pipeline_version = found[-1]
        if len(found) > 1:
            logger.warning("training cells come from several pipeline versions: %s", found)
    if pixel_size_um is None and "pixel_size_um" in table and table["pixel_size_um"].notna().any():
        pixel_size_um = float(table["pixel_size_um"].median())
    clips = train.clips if model.uses_clips else None
    now = utc_now()
    return ModelCard(
        model_id=model_id or f"{model.kind}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}",
        kind=model.kind,
        created_at=now.isoformat(),
        cellsift_version=cellsift.__version__,
        pipeline_version=pipeline_version,
        feature_version=FEATURE_VERSION,
        feature_columns=tuple(c for c in feature_columns),
        uses_clips=model.uses_clips,
        clip_frames=None if clips is None else clips.n_frames,
        clip_n_before=None if clips is None else clips.n_before,
        clip_crop_px=None if clips is None else clips.crop_px,
        clip_pool=None if clips is None else clips.pool,
        clip_model_crop=model_crop,
        fps=train.fps,
        pixel_size_um=pixel_size_um,
        training=training_summary(train),
        params=dict(params),
        package_versions=_versions(),
    )
