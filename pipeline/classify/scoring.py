"""Scoring one session's cells with a model: card check, batches of units, labels, reasons and OOD flags.

:func:`classify_session` checks the model card against the session (feature set,
pipeline version, clip geometry, frame rate) and scores its cells in batches of units
(:func:`units_per_batch`), so memory is bounded by the batch, not the session. Clips
recorded at another frame rate are resampled to the model's.

Cells flagged by the overlap filter are scored like the others and keep their
``overlap_flag``; the models never trained on such cells, so their ``ood_flag`` stays
False (their ``ood_score`` is kept): the OOD flag warns about cells the overlap filter
did not already mark.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card import cells_pipeline_version
from cellsift.pipeline.classify.clip_net import choose_device
from cellsift.pipeline.classify.clip_prep import clip_store_geometry, read_clip_store
from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.inputs import add_session_relative
from cellsift.pipeline.classify.store import load_model
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = ["OUTPUT_COLUMNS", "classify_session", "units_per_batch"]

#: Columns :func:`classify_session` returns.
OUTPUT_COLUMNS: Final = ("unit_id", "p_good", "label", "reason", "model_id", "ood_score", "ood_flag")
_OUTPUT_DTYPES: Final = ("int64", "float64", "object", "object", "object", "float64", "bool")


def units_per_batch(device: str | None = None) -> int:
    """Units scored at a time: 512 on the CPU, 4096 on a GPU with >= 8 GiB free, else 1024."""
    device = device or choose_device("auto")
    if not device.startswith("cuda"):
        return 512
    import torch

    try:
        free, _ = torch.cuda.mem_get_info()
    except (RuntimeError, AssertionError):
        return 1024
    return 4096 if free >= 8 * 2**30 else 1024


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(OUTPUT_COLUMNS, _OUTPUT_DTYPES, strict=True)})


def _prepare_session(
    model: CellClassifier,
    cells: pd.DataFrame,
    clip_store_path: str | PathLike[str] | None,
    *,
    fps: float | None,
    pixel_size_um: float | None,
    strict: bool,
) -> tuple[bool, float, float | None]:
    """Check the card against the session; ``(read clips?, clip time step, fps)``."""
    card = model.card
    where = str(clip_store_path) if clip_store_path is not None else None
    read_clips = model.uses_clips and clip_store_path is not None
    if model.uses_clips and clip_store_path is None and not model.can_score_without_clips:
        raise LakeError(
            "the model reads clips but no clip store was given",
            field="clips_path",
            fix="pass the session's clip store (sessions.clips_path)",
        )
    geometry = clip_store_geometry(str(clip_store_path)) if read_clips else {}
    if fps is None and "fps" in cells and cells["fps"].notna().any():
        fps = float(cells["fps"].dropna().iloc[0])
    time_step = 1.0
    if read_clips and card is not None and card.fps and fps:
        time_step = float(fps) / float(card.fps)
        if abs(time_step - 1.0) > 0.1:
            logger.warning(
                "%s: clips resampled from %.3g Hz to the %.3g Hz of model '%s'",
                where,
                float(fps),
                float(card.fps),
                model.model_id,
            )
    if card is not None:
        card.check_compatible(
            pipeline_version=cells_pipeline_version(cells),
            columns=list(cells.columns),
            fps=None if model.uses_clips else fps,  # clips are resampled; no clips: rates per minute
            pixel_size_um=pixel_size_um,
            strict=strict,
            where=where,
            **geometry,
        )
    return read_clips, time_step, fps


def _score_batch(model: CellClassifier, sub: pd.DataFrame, clips: Any, fps: float | None) -> pd.DataFrame:
    """:data:`OUTPUT_COLUMNS` of one batch of units."""
    data = CellData(table=sub, clips=clips, fps=fps)
    p, reason_p = model.predict(data)
    reason = model.predict_reason(data, proba=reason_p)
    score, flag = model.ood_scores(data)
    if "overlap_flag" in sub:  # flagged cells lie outside the training data by construction
        flag = flag & ~sub["overlap_flag"].fillna(False).to_numpy(dtype=bool)
    label = np.where(p >= model.decision_threshold, "good", "bad")
    return pd.DataFrame(
        {
            "unit_id": sub["unit_id"].to_numpy(dtype=np.int64),
            "p_good": p.astype(np.float64),
            "label": label.astype(object),
            "reason": np.where(label == "bad", reason, None),
            "model_id": model.model_id,
            "ood_score": score.astype(np.float64),
            "ood_flag": flag.astype(bool),
        }
    )


def classify_session(
    cells: pd.DataFrame,
    clip_store_path: str | PathLike[str] | None,
    model: CellClassifier | str | PathLike[str],
    *,
    fps: float | None = None,
    pixel_size_um: float | None = None,
    strict: bool = True,
    batch_units: int | None = None,
    lake: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """Score one session's cells.

    Parameters
    ----------
    cells
        The session's rows of the ``cells`` table (all units, flagged ones included).
    clip_store_path
        The session's clip store (``LAKE / sessions.clips_path``); may be ``None`` for a
        model that does not read clips.
    model
        A loaded model, or ``"default"`` / a registered id / a model folder (loaded for
        this call; pass a loaded model, or use :func:`classify_lake`, to score many
        sessions with one load).
    fps
        The session's frame rate (Hz); default: the ``fps`` column of ``cells`` if present.
    pixel_size_um
        Pixel size (um) if known, checked against the model card.
    strict
        Refuse (raise) on a card mismatch; ``False``: warn and score anyway.
    batch_units
        Units scored at a time (default :func:`units_per_batch`).
    lake
        Lake for resolving registered model ids.

    Returns
    -------
    pandas.DataFrame
        :data:`OUTPUT_COLUMNS`, one row per cell in the order of ``cells``: ``p_good``
        (calibrated for ensembles), ``label`` (good/bad), ``reason`` (most likely artifact
        reason of bad cells, ``None`` if the model cannot tell), ``model_id``,
        ``ood_score`` (Mahalanobis distance to the training data) and ``ood_flag``.

    Raises
    ------
    ModelMismatchError
        The model card does not match the data (when ``strict``).
    LakeError
        The clip store is missing or does not hold the cells' units.
    """
    if not isinstance(model, CellClassifier):
        model = load_model(model, lake=lake)
    if len(cells) == 0:
        return _empty_output()
    read_clips, time_step, fps = _prepare_session(
        model, cells, clip_store_path, fps=fps, pixel_size_um=pixel_size_um, strict=strict
    )
    card = model.card
    table = cells.reset_index(drop=True)
    if {"area_px", "noise_sd"} <= set(table.columns):
        table = add_session_relative(table)
    batch = batch_units or units_per_batch()
    crop = card.clip_model_crop if card is not None and card.clip_model_crop else None
    pool = card.clip_pool if card is not None and card.clip_pool else None
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "clips", cfg)
    parts = []
    for start in range(0, len(table), batch):
        sub = table.iloc[start : start + batch]
        clips = None
        if read_clips:
            clips = read_clip_store(
                Path(str(clip_store_path)),
                sub["unit_id"].to_numpy(),
                model_crop=crop or getattr(cfg, "model_crop", 32),
                pool=pool or getattr(cfg, "pool", 2),
                time_step=time_step,
            )
        parts.append(_score_batch(model, sub, clips, fps))
    out = pd.concat(parts, ignore_index=True)
    n_ood = int(out["ood_flag"].sum())
    where = str(clip_store_path) if clip_store_path is not None else None
    logger.info(
        "%s: %d cells scored by %s, %d good, %d out of distribution",
        where or "session",
        len(out),
        model.model_id,
        int((out["label"] == "good").sum()),
        n_ood,
    )
    return out
