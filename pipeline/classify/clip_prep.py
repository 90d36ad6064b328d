"""Clip preparation: clip-store arrays to model input, normalised per clip.

Each clip's frames become their change from the clip's pre-peak baseline in units of
the clip's robust noise SD (so models are invariant to raw brightness); the footprint
(scaled to max 1), the neighbours' mask and the robust z-score of the baseline image
are the static channels. Crops are centre-cropped to ``model_crop`` px and
average-pooled by ``pool``; clips recorded at another frame rate are resampled in time
to the model's (:func:`resample_time`). :func:`read_clip_store` reads and prepares a
session's clip store in batches of units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from cellsift.pipeline.classify.data import ClipArrays
from cellsift.pipeline.classify.inputs import ROBUST_SD_PER_MAD
from cellsift.schemas import InputFormatError, LakeError

__all__ = [
    "area_resampling_matrix",
    "clip_store_geometry",
    "prepare_clips",
    "read_clip_store",
    "resample_time",
    "robust_sd",
    "spatial_sampler",
]


def robust_sd(x: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """``ROBUST_SD_PER_MAD * MAD`` of ``x`` along ``axis`` (dimensions kept; dtype of ``x``)."""
    med = np.median(x, axis=axis, keepdims=True)
    return ROBUST_SD_PER_MAD * np.median(np.abs(x - med), axis=axis, keepdims=True)


def area_resampling_matrix(size: int, span: float, out: int) -> np.ndarray:
    """``(out, size)`` weights averaging the central ``span`` px of ``size`` px into ``out`` bins.

    Each output bin is the mean of the input pixels it covers, weighted by the covered
    length (area-preserving; pooling when ``span / out`` is a whole number of pixels).
    """
    lo = (size - span) / 2.0
    edges = lo + np.arange(out + 1) * (span / out)
    left = np.arange(size, dtype=np.float64)
    R = np.clip(
        np.minimum(edges[1:, None], left[None, :] + 1) - np.maximum(edges[:-1, None], left[None, :]), 0, None
    )
    return (R / R.sum(axis=1, keepdims=True)).astype(np.float32)


def spatial_sampler(
    s: int, *, model_crop: int, pool: int, crop_scale: float = 1.0
) -> Callable[[np.ndarray], np.ndarray]:
    """The function taking ``(..., s, s)`` crops to the model's ``model_crop / pool`` px.

    The centre ``model_crop * crop_scale`` px, average-pooled by ``pool`` (``crop_scale``
    1) or resampled area-weighted (otherwise).

    Raises
    ------
    InputFormatError
        The view needs more than the ``s`` px of the crop.
    """
    m = model_crop // pool
    span = model_crop * float(crop_scale)
    if not (np.isfinite(span) and pool <= span <= s):
        raise InputFormatError(
            f"model_crop={model_crop} at crop_scale={crop_scale} needs {span:.1f} px of the store's {s} px crop",
            field="model_crop",
            fix="choose a smaller model_crop or re-run the pipeline with a larger crop",
        )
    if abs(span - model_crop) < 1e-6:
        lo = (s - model_crop) // 2
        sl = slice(lo, lo + model_crop)

        def _pool(a: np.ndarray) -> np.ndarray:
            a = a[..., sl, sl]
            if pool == 1:
                return a
            return a.reshape(*a.shape[:-2], m, pool, m, pool).mean(axis=(-3, -1))

        return _pool
    R = area_resampling_matrix(s, span, m)

    def _resample(a: np.ndarray) -> np.ndarray:
        return np.einsum("...ij,ki,lj->...kl", a, R, R, optimize=True).astype(a.dtype, copy=False)

    return _resample


def prepare_clips(
    clips: np.ndarray,
    footprint: np.ndarray,
    neighbour_mask: np.ndarray,
    valid: np.ndarray,
    *,
    n_before: int,
    model_crop: int = 24,
    pool: int = 2,
    crop_px: int | None = None,
    time_step: float = 1.0,
    crop_scale: float = 1.0,
) -> ClipArrays:
    """Turn raw clip-store arrays into model input, normalised per clip.

    Parameters
    ----------
    clips
        ``(n, k, T, S, S)`` clips in movie units (any numeric dtype).
    footprint
        ``(n, S, S)`` footprint crops (float).
    neighbour_mask
        ``(n, S, S)`` neighbour masks (bool).
    valid
        ``(n, k)`` bool, True where a clip was cut.
    n_before
        Frames before the peak frame; the baseline is the mean of the first
        ``max(1, n_before - 2)`` frames (the rise can start a frame or two early).
    model_crop
        Centre crop (px) taken before pooling, at the reference cell size; with
        ``crop_scale`` != 1 the centre ``model_crop * crop_scale`` px are resampled
        (area-weighted) to ``model_crop / pool`` px instead.
    pool
        Average-pooling factor (``model_crop`` must be divisible by it).
    crop_px
        Crop size of the clip store, recorded for the model card (default ``S``).
    crop_scale
        The session's cell size over the reference size (the clip store's ``crop_scale``
        attribute, written when crops scale with cells): the model then sees every
        session in units of cell diameters, whatever the pixel size.
    time_step
        Clip frames per model frame, ``session fps / model fps`` (1: no resampling).
        Otherwise the clips are linearly resampled in time around the peak frame to the
        model's frame rate (same ``T`` frames, same ``n_before``); times beyond the
        stored clip take its edge frame.

    Returns
    -------
    ClipArrays
        ``dynamic`` = (frame - baseline) / robust noise SD of the baseline frames,
        clipped to [-20, 60]; ``static`` = footprint / max, neighbour mask, robust
        z-score of the baseline image clipped to [-10, 10]; float16.
    """
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise InputFormatError(
            f"clips must be (unit, peak, frame, y, x), got shape {clips.shape}", field="clips"
        )
    n, k, t, s, s2 = clips.shape
    if s != s2:
        raise InputFormatError(f"clip crops must be square, got {s}x{s2}", field="clips")
    if model_crop < pool or model_crop % pool:
        raise InputFormatError(
            f"model_crop={model_crop} must be a multiple of pool={pool}",
            field="model_crop",
            fix="choose a smaller model_crop or re-run the pipeline with a larger crop",
        )
    if not 0 < n_before < t:
        raise InputFormatError(f"n_before={n_before} must lie in 1..{t - 1}", field="n_before")
    m = model_crop // pool
    _pool = spatial_sampler(s, model_crop=model_crop, pool=pool, crop_scale=crop_scale)

    c = _pool(clips.astype(np.float32))  # (n, k, t, m, m)
    if not (np.isfinite(time_step) and time_step > 0):
        raise InputFormatError(f"time_step must be > 0, got {time_step}", field="fps")
    if abs(time_step - 1.0) > 1e-3:
        c = resample_time(c, n_before=n_before, time_step=time_step)
    nb = max(1, n_before - 2)
    base = c[:, :, :nb].mean(axis=2, keepdims=True)  # (n, k, 1, m, m)
    sd = robust_sd(c[:, :, :nb] - base, axis=(2, 3, 4)) if nb > 1 else robust_sd(c, axis=(2, 3, 4))
    sd = np.maximum(sd, 1e-3 * np.maximum(np.abs(base).mean(axis=(3, 4), keepdims=True), 1.0))
    dynamic = np.clip((c - base) / sd, -20.0, 60.0)
    base_img = base[:, :, 0]  # (n, k, m, m)
    bz = (base_img - np.median(base_img, axis=(2, 3), keepdims=True)) / np.maximum(
        robust_sd(base_img, axis=(2, 3)), 1e-3
    )
    fp = _pool(np.asarray(footprint, dtype=np.float32))
    fmax = fp.reshape(n, -1).max(axis=1) if n else np.zeros(0, dtype=np.float32)
    fp = fp / np.where(fmax > 0, fmax, 1.0)[:, None, None]
    nbm = _pool(np.asarray(neighbour_mask, dtype=np.float32))
    static = np.empty((n, k, 3, m, m), dtype=np.float16)
    static[:, :, 0] = fp[:, None]
    static[:, :, 1] = nbm[:, None]
    static[:, :, 2] = np.clip(bz, -10.0, 10.0)
    v = np.asarray(valid, dtype=bool)
    dynamic = dynamic.astype(np.float16)
    dynamic[~v] = 0
    return ClipArrays(
        dynamic=dynamic,
        static=static,
        valid=v,
        n_before=int(n_before),
        crop_px=int(crop_px if crop_px is not None else s),
        pool=int(pool),
    )


def resample_time(c: np.ndarray, *, n_before: int, time_step: float) -> np.ndarray:
    """Resample clips ``(..., T, y, x)`` along ``T`` around frame ``n_before``.

    Output frame ``j`` samples input time ``n_before + (j - n_before) * time_step``
    (linear interpolation, clamped to the clip's first and last frame).
    """
    t = c.shape[-3]
    pos = np.clip(n_before + (np.arange(t) - n_before) * float(time_step), 0.0, t - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).astype(np.float32)[:, None, None]
    return c[..., lo, :, :] * (1.0 - w) + c[..., hi, :, :] * w


def clip_store_geometry(path: str | PathLike[str]) -> dict[str, int]:
    """Clip geometry of a clip store, as :meth:`~cellsift.pipeline.classify.card.ModelCard.check_compatible` takes it.

    Returns
    -------
    dict
        ``clip_frames``, ``clip_n_before`` and ``clip_crop_px`` (px).

    Raises
    ------
    LakeError
        The store is missing or unreadable.
    """
    import zarr

    path = Path(path)

    try:
        group: Any = zarr.open_group(str(path), mode="r")
        shape = group["clips"].shape
    except (FileNotFoundError, KeyError, ValueError, OSError):
        raise LakeError(
            "clip store cannot be read",
            path=path,
            fix="run 'cellsift run' so every session has its clip store",
        ) from None
    params = dict(group.attrs.get("params", {}) or {}).get("clips", {}) or {}
    return {
        "clip_frames": int(shape[2]),
        "clip_n_before": int(params.get("n_before", (shape[2] - 1) // 2)),
        "clip_crop_px": int(shape[-1]),
    }


def _read_rows(array: Any, rows_sorted: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Rows ``rows_sorted`` of a zarr array (one orthogonal read), put back in ``inverse`` order."""
    if len(rows_sorted) == 0:
        return np.zeros((0, *array.shape[1:]), dtype=array.dtype)
    selection = (rows_sorted,) + (slice(None),) * (array.ndim - 1)
    return np.asarray(array.get_orthogonal_selection(selection))[inverse]


def read_clip_store(
    path: str | PathLike[str],
    unit_ids: Sequence[int] | np.ndarray | None = None,
    *,
    model_crop: int = 24,
    pool: int = 2,
    batch_units: int = 256,
    time_step: float = 1.0,
) -> ClipArrays:
    """Read a session's clip store and prepare the clips of ``unit_ids`` (in that order).

    Parameters
    ----------
    path
        The clip store (zarr folder, ``LAKE / sessions.clips_path``).
    unit_ids
        Units to read; default all, in store order.
    model_crop, pool
        See :func:`prepare_clips`.
    batch_units
        Units read and prepared at a time (bounds memory).
    time_step
        ``session fps / model fps`` (see :func:`prepare_clips`).

    Raises
    ------
    LakeError
        The store is missing or unreadable, or a unit id is not in it.
    """
    import zarr

    path = Path(path)
    try:
        group: Any = zarr.open_group(str(path), mode="r")
        store_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
        arrays = {name: group[name] for name in ("clips", "valid", "footprint", "neighbour_mask")}
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise LakeError(
            f"clip store cannot be read ({type(exc).__name__})",
            path=path,
            fix="run 'cellsift run' so every session has its clip store",
        ) from None
    params = dict(group.attrs.get("params", {}) or {})
    n_before = int(params.get("clips", {}).get("n_before", (arrays["clips"].shape[2] - 1) // 2))
    ids = store_ids if unit_ids is None else np.asarray(unit_ids, dtype=np.int64)
    order = np.argsort(store_ids, kind="stable")
    pos = np.searchsorted(store_ids[order], ids)
    pos = np.clip(pos, 0, max(len(store_ids) - 1, 0))
    if len(ids) and (len(store_ids) == 0 or not np.array_equal(store_ids[order][pos], ids)):
        missing = ids[~np.isin(ids, store_ids)][:5].tolist()
        raise LakeError(
            f"unit(s) {missing} are not in the clip store",
            path=path,
            field="unit_id",
            fix="re-run 'cellsift run --force' so cells table and clip store agree",
        )
    rows = order[pos]
    parts: list[ClipArrays] = []
    crop = int(arrays["clips"].shape[-1])
    crop_scale = float(group.attrs.get("crop_scale", 1.0) or 1.0)
    if model_crop * crop_scale > crop:  # a store cut narrower than the model's view (old stores)
        model_crop, crop_scale = min(model_crop, crop), 1.0
    for start in range(0, max(len(rows), 1), batch_units):
        sel = rows[start : start + batch_units]
        if len(sel) == 0 and parts:
            break
        srt = np.sort(sel)
        inv = np.searchsorted(srt, sel)
        parts.append(
            prepare_clips(
                _read_rows(arrays["clips"], srt, inv),
                _read_rows(arrays["footprint"], srt, inv),
                _read_rows(arrays["neighbour_mask"], srt, inv),
                _read_rows(arrays["valid"], srt, inv),
                n_before=n_before,
                model_crop=model_crop,
                pool=pool,
                crop_px=crop,
                time_step=time_step,
                crop_scale=crop_scale,
            )
        )
    first = parts[0]
    if len(parts) == 1:
        return first
    return replace(
        first,
        dynamic=np.concatenate([p.dynamic for p in parts]),
        static=np.concatenate([p.static for p in parts]),
        valid=np.concatenate([p.valid for p in parts]),
    )
