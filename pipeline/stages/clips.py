"""Peak-aligned movie clips and matching footprint crops.

A clip is ``n_before + 1 + n_after`` frames around one transient peak, cropped to
``crop_px x crop_px`` pixels centred on the unit's centroid. Frames beyond the session
edges repeat the first/last frame and pixels beyond the frame border repeat the edge
pixels, so every clip has the same shape. Footprint and neighbour-mask crops use the
very same pixel mapping, so they align pixel for pixel with the clips.

:func:`extract_clips` reads the movie one stored frame chunk at a time, in order, only
the chunks that hold requested frames and only the frame range needed inside each; no
chunk is read twice. Memory: one chunk's frames plus the clip output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.stages.footprints import bounding_boxes, check_csr, check_dims
from cellsift.pipeline.stages.transients import TransientResult
from cellsift.schemas import InputFormatError, ParameterError, SchemaError

logger = logging.getLogger(__name__)

__all__ = [
    "ClipParams",
    "clip_windows",
    "clip_frame_indices",
    "crop_indices",
    "movie_frame_chunks",
    "extract_clips",
    "crop_footprints",
    "crop_neighbour_masks",
]

#: Frames read per step from arrays that do not declare chunks (e.g. numpy).
DEFAULT_FRAMES_PER_READ = 100


@dataclass(frozen=True)
class ClipParams:
    """Clip geometry.

    Attributes
    ----------
    n_before
        Frames before the peak frame.
    n_after
        Frames after the peak frame.
    crop_px
        Side of the square crop (px), centred on the unit's centroid; the centroid pixel
        sits at index ``crop_px // 2``. With ``scale_with_cells`` it is the side for a
        session whose median cell is ``REFERENCE_CELL_DIAMETER_PX`` wide (see
        :func:`session_crop_px`).
    scale_with_cells
        Scale the crop with the session's median cell diameter, so every session's clips
        cover the same number of cell diameters whatever the lab's pixel size.
    """

    n_before: int = 10
    n_after: int = 10
    crop_px: int = 32
    scale_with_cells: bool = True

    def __post_init__(self) -> None:
        if self.n_before < 0 or self.n_after < 0:
            raise ParameterError(
                f"n_before/n_after must be >= 0, got {self.n_before}/{self.n_after}",
                field="n_before",
            )
        if self.crop_px < 1:
            raise ParameterError(f"crop_px must be >= 1, got {self.crop_px}", field="crop_px")

    @property
    def n_frames(self) -> int:
        """Frames per clip, ``n_before + 1 + n_after``."""
        return self.n_before + 1 + self.n_after


def _check_peaks(peak_frames: Any, n_frames: int) -> np.ndarray:
    p = np.asarray(peak_frames)
    if p.size == 0:
        return np.zeros(0, dtype=np.int64)
    if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer):
        if not (p.ndim == 1 and np.all(np.isfinite(p)) and np.all(p == np.round(p))):
            raise InputFormatError(
                f"peak frames must be a 1-D array of integers, got {p!r}", field="peak_frames"
            )
    p = p.astype(np.int64)
    if p.min() < 0 or p.max() >= n_frames:
        raise InputFormatError(
            f"peak frames must lie in 0..{n_frames - 1}, got {p.min()}..{p.max()}",
            field="peak_frames",
            fix="detect peaks on traces of the same session as the movie",
        )
    return p


def clip_windows(
    peak_frames: np.ndarray, n_frames: int, params: ClipParams = ClipParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Frame range actually read for each peak, clamped at the session edges.

    Parameters
    ----------
    peak_frames
        ``(n,)`` peak frame indices.
    n_frames
        Frames in the session.
    params
        Clip geometry.

    Returns
    -------
    start, stop
        ``(n,)`` int64 each, half-open ``[start, stop)``. A clip whose window crosses a
        session edge is padded by repeating the edge frame (see
        :func:`clip_frame_indices`), so it still has ``params.n_frames`` frames.
    """
    p = _check_peaks(peak_frames, n_frames)
    start = np.maximum(p - params.n_before, 0)
    stop = np.minimum(p + params.n_after + 1, n_frames)
    return start, stop


def clip_frame_indices(
    peak_frames: np.ndarray, n_frames: int, params: ClipParams = ClipParams()
) -> np.ndarray:
    """Movie frame shown at each clip position (edge frames repeated).

    Returns
    -------
    numpy.ndarray
        ``(n, params.n_frames)`` int64, row ``i`` is
        ``clip(p_i - n_before .. p_i + n_after, 0, n_frames - 1)``.
    """
    p = _check_peaks(peak_frames, n_frames)
    offs = np.arange(-params.n_before, params.n_after + 1, dtype=np.int64)
    return np.clip(p[:, None] + offs[None, :], 0, n_frames - 1)


def crop_indices(centroids: np.ndarray, dims: tuple[int, int], crop_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame row/column shown at each crop pixel (edge pixels repeated).

    Parameters
    ----------
    centroids
        ``(K, 2)`` ``(y, x)`` in px.
    dims
        ``(H, W)`` of the frame.
    crop_px
        Crop side (px).

    Returns
    -------
    rows, cols
        ``(K, crop_px)`` int64 each; the centroid pixel (rounded half up) is at index
        ``crop_px // 2``.
    """
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise InputFormatError(f"centroids must be (K, 2), got shape {c.shape}", field="centroids")
    if not np.all(np.isfinite(c)):
        raise InputFormatError("centroids contain NaN or Inf", field="centroids")
    h, w = int(dims[0]), int(dims[1])
    centre = np.floor(c + 0.5).astype(np.int64) - crop_px // 2
    offs = np.arange(crop_px, dtype=np.int64)
    rows = np.clip(centre[:, 0:1] + offs[None, :], 0, h - 1)
    cols = np.clip(centre[:, 1:2] + offs[None, :], 0, w - 1)
    return rows, cols


def movie_frame_chunks(movie: Any, n_frames: int) -> np.ndarray:
    """Boundaries of the movie's stored frame chunks.

    Understands zarr arrays (``chunks`` is a tuple of ints), dask arrays and
    dask-backed DataArrays (tuple of tuples) and lazily opened xarray variables
    (``encoding['chunks']``); anything else is read ``DEFAULT_FRAMES_PER_READ`` frames
    at a time.

    Returns
    -------
    numpy.ndarray
        Increasing int64 boundaries ``[0, b1, ..., n_frames]``.
    """
    chunks = getattr(movie, "chunks", None)
    if chunks is None:
        enc = getattr(movie, "encoding", None)
        if isinstance(enc, dict):
            chunks = enc.get("chunks") or enc.get("preferred_chunks")
            if isinstance(chunks, dict):
                chunks = None
    first: Any = None
    if chunks is not None:
        try:
            first = chunks[0]
        except (TypeError, IndexError, KeyError):
            first = None
    if isinstance(first, (tuple, list)):
        bounds = np.concatenate([[0], np.cumsum(np.asarray(first, dtype=np.int64))])
    else:
        size = int(first) if first is not None and int(first) > 0 else DEFAULT_FRAMES_PER_READ
        bounds = np.arange(0, n_frames + size, size, dtype=np.int64)
    bounds = np.unique(np.clip(bounds, 0, n_frames))
    if bounds[0] != 0:
        bounds = np.concatenate([[0], bounds])
    if bounds[-1] != n_frames:
        bounds = np.concatenate([bounds, [n_frames]])
    return bounds


def _normalise_requests(
    requests: Sequence[tuple[int, Any]] | Sequence[TransientResult],
) -> list[tuple[int, np.ndarray]]:
    out = []
    for n, item in enumerate(requests):
        if isinstance(item, TransientResult):
            out.append((n, np.asarray(item.peak_frames)))
        else:
            try:
                unit, peaks = item
            except (TypeError, ValueError):
                raise InputFormatError(
                    f"request {n} must be (unit_index, peak_frames) or a TransientResult",
                    field="requests",
                ) from None
            out.append((int(unit), np.asarray(peaks)))
    return out


def extract_clips(
    movie: Any,
    requests: Sequence[tuple[int, Any]] | Sequence[TransientResult],
    centroids: np.ndarray,
    *,
    params: ClipParams = ClipParams(),
    k_peaks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut peak-aligned, centroid-centred clips out of a movie, chunk by chunk.

    Parameters
    ----------
    movie
        ``(frame, height, width)`` array: zarr array, numpy array, or anything sliceable
        along frames (dask array, xarray DataArray) that returns array-likes.
    requests
        Either ``(unit_index, peak_frames)`` pairs, or one :class:`TransientResult` per
        unit (unit index = position). Output row ``n`` belongs to request ``n``.
    centroids
        ``(K, 2)`` ``(y, x)`` px, indexed by ``unit_index``.
    params
        Clip geometry.
    k_peaks
        Clips per unit in the output; default: the longest peak list. Extra peaks of a
        request are dropped (lists are strongest first).

    Returns
    -------
    clips
        ``(n_requests, k_peaks, params.n_frames, crop_px, crop_px)`` float32 in movie
        units; slots without a peak are 0.
    valid
        ``(n_requests, k_peaks)`` bool, True where a clip was cut.

    Raises
    ------
    InputFormatError
        Bad shapes, peak frames outside the movie, unit index outside ``centroids``.
    """
    shape = tuple(getattr(movie, "shape", ()))
    if len(shape) != 3:
        raise SchemaError(
            f"movie must be (frame, height, width), got shape {shape}",
            field="movie",
            fix="pass the session's movie variable",
        )
    n_frames, h, w = (int(s) for s in shape)
    reqs = _normalise_requests(requests)
    cen = np.asarray(centroids, dtype=np.float64)
    rows_all, cols_all = crop_indices(cen, (h, w), params.crop_px)
    if k_peaks is None:
        k_peaks = max((p.size for _, p in reqs), default=0)
    n_req, L, cp = len(reqs), params.n_frames, params.crop_px
    clips = np.zeros((n_req, k_peaks, L, cp, cp), dtype=np.float32)
    valid = np.zeros((n_req, k_peaks), dtype=bool)
    if n_req == 0 or k_peaks == 0 or n_frames == 0:
        return clips, valid

    # One entry per (clip slot, clip position): which movie frame goes there.
    slot_ids, units, frame_idx = [], [], []
    for n, (unit, peaks) in enumerate(reqs):
        if not 0 <= unit < cen.shape[0]:
            raise InputFormatError(
                f"request {n}: unit index {unit} outside 0..{cen.shape[0] - 1}",
                field="requests",
                fix="pass centroids of every requested unit",
            )
        p = _check_peaks(peaks, n_frames)[:k_peaks]
        if p.size == 0:
            continue
        valid[n, : p.size] = True
        slot_ids.append(n * k_peaks + np.arange(p.size, dtype=np.int64))
        units.append(np.full(p.size, unit, dtype=np.int64))
        frame_idx.append(clip_frame_indices(p, n_frames, params))
    if not slot_ids:
        return clips, valid
    slot = np.repeat(np.concatenate(slot_ids), L)
    unit_of = np.repeat(np.concatenate(units), L)
    pos = np.tile(np.arange(L, dtype=np.int64), slot.size // L)
    frame = np.concatenate(frame_idx).ravel()
    order = np.argsort(frame, kind="stable")
    slot, unit_of, pos, frame = slot[order], unit_of[order], pos[order], frame[order]

    flat = clips.reshape(n_req * k_peaks, L, cp, cp)
    bounds = movie_frame_chunks(movie, n_frames)
    edges = np.searchsorted(frame, bounds)
    n_reads = 0
    for c in range(bounds.size - 1):
        a, b = edges[c], edges[c + 1]
        if a == b:
            continue
        lo, hi = int(frame[a]), int(frame[b - 1]) + 1  # needed range inside this chunk
        block = np.asarray(movie[lo:hi])
        n_reads += 1
        if block.shape != (hi - lo, h, w):
            raise SchemaError(
                f"movie[{lo}:{hi}] returned shape {block.shape}, expected {(hi - lo, h, w)}",
                field="movie",
            )
        f_loc = frame[a:b] - lo
        r = rows_all[unit_of[a:b]]
        q = cols_all[unit_of[a:b]]
        crops = block[f_loc[:, None, None], r[:, :, None], q[:, None, :]]
        flat[slot[a:b], pos[a:b]] = crops
        del block, crops
    logger.debug(
        "extract_clips: %d clips from %d chunk reads (%d frame chunks in movie)",
        int(valid.sum()),
        n_reads,
        bounds.size - 1,
    )
    return clips, valid


def _crop_row(A: sp.csr_matrix, u: int, rows: np.ndarray, cols: np.ndarray, w: int) -> np.ndarray:
    """Values of sparse row ``u`` at the crop grid ``rows x cols`` (float64)."""
    lo, hi = A.indptr[u], A.indptr[u + 1]
    cp_r, cp_c = rows.size, cols.size
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    patch = np.zeros((r1 - r0, c1 - c0), dtype=np.float64)
    if hi > lo:
        ys, xs = np.divmod(A.indices[lo:hi].astype(np.int64), w)
        inside = (ys >= r0) & (ys < r1) & (xs >= c0) & (xs < c1)
        patch[ys[inside] - r0, xs[inside] - c0] = A.data[lo:hi][inside]
    return patch[(rows - r0)[:, None], (cols - c0)[None, :]].reshape(cp_r, cp_c)


def crop_footprints(
    A: sp.spmatrix, dims: tuple[int, int], centroids: np.ndarray, *, crop_px: int
) -> np.ndarray:
    """Footprint crops aligned pixel for pixel with :func:`extract_clips` crops.

    Parameters
    ----------
    A
        Sparse footprints ``(K, H*W)``.
    dims
        ``(H, W)`` of the frame.
    centroids
        ``(K, 2)`` ``(y, x)`` px of the same units (usually :func:`footprints.centroids`).
    crop_px
        Crop side (px), as ``ClipParams.crop_px``.

    Returns
    -------
    numpy.ndarray
        ``(K, crop_px, crop_px)`` float32 footprint weights (edge pixels repeated
        beyond the frame border, like the clips).
    """
    A = check_csr(A)
    h, w = check_dims(dims, A.shape[1])
    k = A.shape[0]
    if np.shape(centroids)[0] != k:
        raise SchemaError(f"{np.shape(centroids)[0]} centroids for {k} footprints", field="centroids")
    rows, cols = crop_indices(centroids, (h, w), crop_px)
    out = np.zeros((k, crop_px, crop_px), dtype=np.float32)
    Af = A.astype(np.float64)
    for u in range(k):
        out[u] = _crop_row(Af, u, rows[u], cols[u], w)
    return out


def crop_neighbour_masks(
    masks: sp.spmatrix,
    pairs: np.ndarray | None,
    centroids: np.ndarray,
    dims: tuple[int, int],
    crop_px: int,
    *,
    units: np.ndarray | None = None,
) -> np.ndarray:
    """Union of the *other* units' binary masks inside each unit's crop.

    Parameters
    ----------
    masks
        ``(K, H*W)`` boolean masks.
    pairs
        ``(P, 3)`` ``OverlapResult.pairs``: only touching units count as neighbours.
        ``None``: every other unit with a mask pixel inside the crop counts (also
        adjacent, non-touching cells).
    centroids
        ``(K, 2)`` ``(y, x)`` px.
    dims
        ``(H, W)`` of the frame.
    crop_px
        Crop side (px).
    units
        Row indices of the units to crop for (e.g. one batch); default all K.
        ``masks``, ``pairs`` and ``centroids`` still describe the whole session.

    Returns
    -------
    numpy.ndarray
        ``(len(units), crop_px, crop_px)`` bool (``K`` rows by default), aligned with
        :func:`crop_footprints`.
    """
    M = check_csr(masks, field="masks")
    h, w = check_dims(dims, M.shape[1], field="masks")
    k = M.shape[0]
    if np.shape(centroids)[0] != k:
        raise SchemaError(f"{np.shape(centroids)[0]} centroids for {k} masks", field="centroids")
    sel = np.arange(k, dtype=np.int64) if units is None else np.asarray(units, dtype=np.int64).ravel()
    if sel.size and (sel.min() < 0 or sel.max() >= k):
        raise InputFormatError(f"units must lie in 0..{k - 1}", field="units")
    rows, cols = crop_indices(np.asarray(centroids)[sel], (h, w), crop_px)
    Mf = M.astype(np.float64)
    if pairs is None:
        bb = bounding_boxes(M, (h, w))
        nonempty = bb[:, 1] > bb[:, 0]
        neighbours = []
        for n, u in enumerate(sel):
            hit = (
                nonempty
                & (bb[:, 0] <= rows[n, -1])
                & (bb[:, 1] > rows[n, 0])
                & (bb[:, 2] <= cols[n, -1])
                & (bb[:, 3] > cols[n, 0])
            )
            hit[u] = False
            neighbours.append(np.flatnonzero(hit))
    else:
        pr = np.asarray(pairs, dtype=np.float64).reshape(-1, 3)
        i, j = pr[:, 0].astype(np.int64), pr[:, 1].astype(np.int64)
        if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= k):
            raise SchemaError(f"pairs reference units outside 0..{k - 1}", field="pairs")
        a, b = np.concatenate([i, j]), np.concatenate([j, i])
        o = np.argsort(a, kind="stable")
        a, b = a[o], b[o]
        cuts = np.searchsorted(a, np.arange(k + 1))
        neighbours = [b[cuts[u] : cuts[u + 1]] for u in sel]
    out = np.zeros((sel.size, crop_px, crop_px), dtype=bool)
    for n in range(sel.size):
        for v in neighbours[n]:
            out[n] |= _crop_row(Mf, int(v), rows[n], cols[n], w) > 0
    return out
