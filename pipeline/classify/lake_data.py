"""A lake's cells as :class:`~cellsift.pipeline.classify.data.CellData`: cells, labels and clips joined.

:func:`load_cell_data` joins the lake's ``cells`` table (with each session's frame
rate, clip store and parameter hash), the training labels
(:mod:`~cellsift.pipeline.classify.labels`) and, for models that read clips, each
session's clip store prepared for the model. Cells flagged by the overlap filter
(``overlap_flag``) keep their flag in the lake and are left out of training (and, by
default, of evaluation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.clip_prep import read_clip_store
from cellsift.pipeline.classify.data import ID_COLUMNS, CellData, ClipArrays
from cellsift.pipeline.classify.inputs import add_session_relative
from cellsift.pipeline.classify.labels import ALL_LABELS, LabelSpec, load_labels
from cellsift.schemas import InputFormatError, LakeError

logger = logging.getLogger(__name__)

__all__ = ["load_cell_data"]

_SESSION_COLUMNS = ("fps", "clips_path", "params_hash")


def load_cell_data(
    lake: str | PathLike[str] | Any,
    *,
    labels: LabelSpec | None = ALL_LABELS,
    clips: bool = True,
    include_flagged: bool = False,
    require_labels: bool = True,
    model_crop: int = 24,
    pool: int = 2,
    cohorts: Sequence[str] | None = None,
    where: Callable[[pd.DataFrame], pd.Series] | None = None,
    target_fps: float | None = None,
) -> CellData:
    """Join a lake's cells, labels and clips into :class:`~cellsift.pipeline.classify.data.CellData`.

    Parameters
    ----------
    lake
        Lake folder or an opened :class:`~cellsift.catalog.Lake`.
    labels
        Where labels come from; ``None``: no labels (scoring).
    clips
        Load and prepare clips (needed by clip and ensemble models).
    include_flagged
        Keep cells flagged by the overlap filter (default: left out, as for training).
    require_labels
        Keep only labelled cells (training); otherwise unlabelled cells get ``y = -1``.
    model_crop, pool
        Clip preparation (see :func:`cellsift.pipeline.classify.clip_prep.prepare_clips`).
    cohorts
        Keep only these cohorts.
    where
        Extra row filter on the cells table (returns a boolean Series).
    target_fps
        Resample every session's clips in time to this frame rate (Hz), e.g. a model's
        ``fps``; ``None``: clips as stored. ``CellData.fps`` is then ``target_fps``.

    Returns
    -------
    CellData
        Table = cells rows (+ ``fps``, ``clips_path``, ``params_hash``, ``label_source``),
        sorted by cohort, animal, session, unit_id.

    Raises
    ------
    LakeError
        No processed cells in the lake.
    InputFormatError
        No labels, or no labelled cell matches a cell in the lake.
    """
    from cellsift.catalog import Lake

    lk = lake if isinstance(lake, Lake) else Lake(lake)
    cells, n_flagged = _lake_cells(lk, cohorts=cohorts, where=where, include_flagged=include_flagged)
    y = np.full(len(cells), -1, dtype=np.int8)
    reasons = np.full(len(cells), None, dtype=object)
    if labels is not None:
        cells, y, reasons = _attach_labels(lk, cells, labels, require_labels=require_labels)
    order = np.lexsort(
        (
            cells["unit_id"].to_numpy(),
            cells["session"].astype(str).to_numpy(),
            cells["animal"].astype(str).to_numpy(),
            cells["cohort"].astype(str).to_numpy(),
        )
    )
    cells = cells.iloc[order].reset_index(drop=True)
    y = y[order]
    reasons = np.where(y == 0, reasons[order], np.array(None, dtype=object))
    clip_arrays = (
        _clip_arrays(lk, cells, model_crop=model_crop, pool=pool, target_fps=target_fps) if clips else None
    )
    fps_values = cells["fps"].dropna().to_numpy(dtype=np.float64) if "fps" in cells else np.zeros(0)
    fps = float(np.median(fps_values)) if fps_values.size else None
    if target_fps is not None and clip_arrays is not None:
        fps = float(target_fps)
    logger.info(
        "loaded %d cells (%d good, %d bad, %d unlabelled; %d overlap-flagged left out) from %s",
        len(cells),
        int((y == 1).sum()),
        int((y == 0).sum()),
        int((y < 0).sum()),
        n_flagged,
        lk.root,
    )
    return CellData(
        table=cells,
        clips=clip_arrays,
        y=y if labels is not None else None,
        reasons=reasons if labels is not None else None,
        fps=fps,
    )


def _lake_cells(
    lk: Any,
    *,
    cohorts: Sequence[str] | None,
    where: Callable[[pd.DataFrame], pd.Series] | None,
    include_flagged: bool,
) -> tuple[pd.DataFrame, int]:
    """The lake's cells with their session's columns, filtered; and how many flagged cells were left out."""
    cells = lk.cells
    if len(cells) == 0:
        raise LakeError("the lake has no processed cells", path=lk.root, fix="run 'cellsift run' first")
    sessions = lk.sessions[["cohort", "animal", "session", *_SESSION_COLUMNS]]
    cells = cells.drop(columns=[c for c in _SESSION_COLUMNS if c in cells])
    cells = cells.merge(sessions, on=["cohort", "animal", "session"], how="left")
    cells = add_session_relative(cells)  # over whole sessions, before any filter
    if cohorts is not None:
        cells = cells[cells["cohort"].isin(list(cohorts))]
    if where is not None:
        cells = cells[where(cells).to_numpy(dtype=bool)]
    n_all = len(cells)
    if not include_flagged:
        cells = cells[~cells["overlap_flag"].fillna(False).astype(bool)]
    return cells, n_all - len(cells)


def _attach_labels(
    lk: Any, cells: pd.DataFrame, labels: LabelSpec, *, require_labels: bool
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``(cells + label_source, y, true reasons)``; only labelled cells when ``require_labels``."""
    lab = load_labels(lk, labels)
    keys = [c for c in ID_COLUMNS if c in lab.columns]
    cells = cells.merge(lab, on=keys, how="left")
    y = cells["y"].fillna(-1).to_numpy(dtype=np.int8)
    reasons = cells["true_reason"].to_numpy(dtype=object)
    cells = cells.drop(columns=["y", "true_reason"])
    if require_labels:
        keep = y >= 0
        if not keep.any():
            raise InputFormatError(
                "no labelled cell matches a cell of the lake",
                path=labels.csv or lk.root,
                field="unit_id",
                fix="check that labels use the lake's animal/session names and unit ids",
            )
        cells, y, reasons = cells[keep], y[keep], reasons[keep]
    return cells, y, reasons


def _time_step(cells: pd.DataFrame, first: int, target_fps: float | None, label: str) -> float:
    """``session fps / target_fps`` of the session whose first row is ``first`` (1: no resampling)."""
    if target_fps is None:
        return 1.0
    f = cells["fps"].iloc[first] if "fps" in cells else None
    if f is None or not pd.notna(f) or not f > 0:
        return 1.0
    step = float(f) / float(target_fps)
    if abs(step - 1.0) > 0.1:
        logger.info("%s: clips resampled from %.3g Hz to %.3g Hz", label, float(f), float(target_fps))
    return step


def _clip_arrays(
    lk: Any, cells: pd.DataFrame, *, model_crop: int, pool: int, target_fps: float | None
) -> ClipArrays | None:
    """Every cell's prepared clips (zeros, not valid, for sessions without a clip store)."""
    parts = []
    groups = cells.groupby(["cohort", "animal", "session"], sort=False).indices
    for (cohort, animal, session), idx in groups.items():
        path = cells["clips_path"].iloc[idx[0]]
        label = f"{cohort}/{animal}/{session}"
        if not isinstance(path, str) or not path:  # no movie: its cells get no valid clip
            logger.warning("%s has no clip store (no movie): its cells have no clips", label)
            continue
        step = _time_step(cells, idx[0], target_fps, label)
        parts.append(
            (
                idx,
                read_clip_store(
                    lk.root / path,
                    cells["unit_id"].to_numpy()[idx],
                    model_crop=model_crop,
                    pool=pool,
                    time_step=step,
                ),
            )
        )
    if not parts:
        return None
    first = parts[0][1]
    n = len(cells)
    dyn = np.zeros((n, *first.dynamic.shape[1:]), dtype=first.dynamic.dtype)
    sta = np.zeros((n, *first.static.shape[1:]), dtype=first.static.dtype)
    val = np.zeros((n, first.valid.shape[1]), dtype=bool)
    for idx, ca in parts:
        if ca.dynamic.shape[1:] != first.dynamic.shape[1:]:
            raise LakeError(
                f"clip stores differ in shape ({ca.dynamic.shape[1:]} vs {first.dynamic.shape[1:]})",
                path=lk.root,
                fix="process all sessions with the same pipeline parameters",
            )
        dyn[idx], sta[idx], val[idx] = ca.dynamic, ca.static, ca.valid
    return replace(first, dynamic=dyn, static=sta, valid=val)
