"""Checks that catch real mistakes in raw session files, each a clear error or warning.

* :func:`validate_extraction` — one extraction on its own: footprint/trace unit counts,
  trace shapes, unit ids, frame size vs footprint pixels, NaN/Inf, empty footprints,
  all-zero traces.
* :func:`check_frame_size` — footprints against the video's frame size (pixel count,
  ``d1``/``d2`` swapped).
* :func:`frame_alignment` — trace length against the video's frame count; an exact
  integer ratio is a temporal downsampling, accepted only when the manifest declares it.

The orientation of footprints against the movie is checked in
:mod:`cellsift.pipeline.readers.orientation`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import PIXEL_ORDERS, Extraction
from cellsift.pipeline.readers.traces import iter_unit_blocks
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "validate_extraction",
    "finish_extraction",
    "check_frame_size",
    "FrameAlignment",
    "frame_alignment",
]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ids_text(ids: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


def validate_extraction(ext: Extraction, *, path: Path) -> None:
    """Check an extraction's internal consistency.

    Raises
    ------
    InputFormatError
        Naming ``path`` and the wrong field: unit counts of ``A`` and ``C`` differ,
        ``C_raw``/``S`` shapes differ from ``C``, ids wrong or duplicated, ``d1*d2`` is
        not the footprint pixel count, NaN/Inf values, footprints that are empty
        (all zero), traces that are all zero in every unit.
    """
    k = _check_shapes(ext, path=path)
    _check_values(ext, path=path)
    for name, values in ext.unit_vars.items():
        if np.shape(values) != (k,):
            raise InputFormatError(
                f"per-unit column has {np.size(values)} values for {k} units",
                path=path,
                field=name,
                fix="export it with the same units as A",
            )


def _check_shapes(ext: Extraction, *, path: Path) -> int:
    """Sparse footprints, pixel order, trace shapes, unit ids and frame size; return ``K``."""
    if not sp.issparse(ext.A):
        raise InputFormatError(
            "footprints are not a sparse matrix", path=path, field="A", fix="report this as a cellsift bug"
        )
    if ext.pixel_order not in PIXEL_ORDERS:
        raise InputFormatError(
            f"pixel order '{ext.pixel_order}' is not one of {', '.join(PIXEL_ORDERS)}",
            path=path,
            field="pixel_order",
            fix="use F (column-major, MATLAB) or C (row-major)",
        )
    if ext.C.ndim != 2:
        raise InputFormatError(f"C has {ext.C.ndim} dimensions", path=path, field="C", fix="save C as K x T")
    k, t = ext.C.shape
    k_a = ext.A.shape[1]
    if k_a != k:
        transposed = ext.C.shape[1] == k_a
        raise InputFormatError(
            f"A has {k_a} units but C has {k} rows"
            + (" - C looks transposed (frames x units)" if transposed else " (C must be units x frames)"),
            path=path,
            field="C" if transposed else "A",
            fix="save C as units x frames" if transposed else "export A and C from the same extraction run",
        )
    if t == 0:
        raise InputFormatError(
            "the traces have no frames", path=path, field="C", fix="save the traces with the results"
        )
    for name in ("C_raw", "S"):
        shape = getattr(ext, name).shape
        if shape != (k, t):
            raise InputFormatError(
                f"{name} has shape {shape}, expected {(k, t)} like C",
                path=path,
                field=name,
                fix="export all traces from the same extraction run",
            )
    if ext.unit_ids.shape != (k,):
        raise InputFormatError(
            f"{ext.unit_ids.size} unit ids for {k} units",
            path=path,
            field="ids",
            fix="export ids with the same units as A and C, or drop ids to number units 1..K",
        )
    if len(np.unique(ext.unit_ids)) != k:
        raise InputFormatError("unit ids are not unique", path=path, field="ids", fix="renumber the units")
    if ext.dims is not None and ext.A.shape[0] != ext.dims[0] * ext.dims[1]:
        d1, d2 = ext.dims
        raise InputFormatError(
            f"A has {ext.A.shape[0]} pixels per footprint but the frame size d1*d2 = {d1}*{d2} = {d1 * d2}",
            path=path,
            field="A",
            fix="check options.d1/d2 (height/width) match the footprints",
        )
    return k


def _check_values(ext: Extraction, *, path: Path) -> None:
    """NaN/Inf values, empty footprints and all-zero traces (a warning unless all are)."""
    k = ext.n_units
    silent_parts: list[np.ndarray] = []
    for name in ("C", "C_raw", "S"):
        bad = 0
        for start, rows in iter_unit_blocks(getattr(ext, name)):  # unit blocks: memory stays flat
            bad += int(np.count_nonzero(~np.isfinite(rows).all(axis=1)))
            if name == "C_raw":
                silent_parts.append(start + np.flatnonzero(~np.any(rows != 0, axis=1)))
        if bad:
            raise InputFormatError(
                f"contains NaN or Inf ({bad} of {k} units affected)",
                path=path,
                field=name,
                fix="re-run the extraction or remove the affected units",
            )
    if not np.isfinite(ext.A.data).all():
        bad_units = np.unique(np.repeat(np.arange(k), np.diff(ext.A.indptr))[~np.isfinite(ext.A.data)])
        raise InputFormatError(
            f"footprints contain NaN or Inf (units {_ids_text(ext.unit_ids[bad_units])})",
            path=path,
            field="A",
            fix="re-run the extraction or remove the affected units",
        )
    nonzero = np.asarray((abs(ext.A) > 0).sum(axis=0)).ravel()
    empty = np.flatnonzero(nonzero == 0)
    if empty.size == k:
        raise InputFormatError(
            "every footprint is empty (A is all zero)",
            path=path,
            field="A",
            fix="save the footprints after running the extraction (A is the spatial matrix)",
        )
    if empty.size:
        raise InputFormatError(
            f"{empty.size} of {k} footprints are empty (all zero): units {_ids_text(ext.unit_ids[empty])}",
            path=path,
            field="A",
            fix="delete the empty components before saving (CNMF-E: neuron.delete(ids); CaImAn: remove_components)",
        )
    silent = np.concatenate(silent_parts) if silent_parts else np.zeros(0, dtype=np.int64)
    if silent.size == k:
        raise InputFormatError(
            "every raw trace is all zero",
            path=path,
            field="C_raw",
            fix="save the traces after running the extraction",
        )
    if silent.size:
        logger.warning(
            "%s: %d units have all-zero traces: %s", path, silent.size, _ids_text(ext.unit_ids[silent])
        )


def finish_extraction(ext: Extraction, path: Path) -> Extraction:
    """Check ``ext`` with :func:`validate_extraction`, log its size and return it."""
    validate_extraction(ext, path=path)
    logger.debug(
        "extraction %s (%s): %d units x %d frames, dims %s",
        path,
        ext.source_format,
        ext.n_units,
        ext.n_frames,
        ext.dims,
    )
    return ext


def check_frame_size(ext: Extraction, height: int, width: int, *, path: Path, video: Path) -> None:
    """Check the footprints were computed on frames of ``height x width`` pixels.

    Raises
    ------
    InputFormatError
        ``d1 x d2`` differs from the video (says so when they look swapped), or the
        footprint pixel count is not ``height * width`` (cropped or spatially downsampled).
    """
    n_pixels = ext.A.shape[0]
    if ext.dims is not None and ext.dims != (height, width):
        swapped = ext.dims == (width, height)
        raise InputFormatError(
            f"footprints are {ext.dims[0]}x{ext.dims[1]} px (height x width) but the video {video} "
            f"has {height}x{width} frames" + (": d1/d2 (height/width) look swapped" if swapped else ""),
            path=path,
            field="A",
            fix="pair the extraction with the video it was computed from"
            + ("; d1 is the frame height and d2 the width" if swapped else ""),
        )
    if n_pixels != height * width:
        ratio = (height * width) / n_pixels if n_pixels else 0.0
        hint = ""
        for s in (2, 3, 4):
            if abs(ratio - s * s) < 1e-9:
                hint = f" - {s}x spatially downsampled footprints (ssub={s})?"
        raise InputFormatError(
            f"footprints have {n_pixels} pixels but the video's {height}x{width} frames have {height * width}{hint}",
            path=path,
            field="A",
            fix="pair the extraction with the video it was computed from (not cropped or downsampled)",
        )


@dataclass(frozen=True)
class FrameAlignment:
    """How the trace frames and the video frames line up.

    Attributes
    ----------
    ratio
        1 when the counts are equal; N when one is N times the other (downsampling).
    longer
        ``"traces"`` (the video holds every N-th frame of the traces' recording),
        ``"video"`` (the traces are N-frame averages of the movie, e.g. CNMF-E ``tsub``)
        or ``""`` for ratio 1.
    n_frames
        Frames stored in the session (the shorter of the two).
    """

    ratio: int
    longer: str
    n_frames: int


def frame_alignment(
    n_trace: int,
    n_video: int,
    *,
    declared: int | None,
    extraction: Path,
    video: Path,
    tsub: int | None = None,
) -> FrameAlignment:
    """Decide how the extraction's traces line up with the video's frames.

    Parameters
    ----------
    n_trace, n_video
        Frame counts of the traces and of the video.
    declared
        ``temporal_downsample`` from the manifest (``None``: not declared).
    extraction, video
        The files, for messages.
    tsub
        The extraction's own temporal downsampling, if it records one.

    Raises
    ------
    InputFormatError
        The counts differ and their ratio is not a whole number, or it is one but the
        manifest does not declare it (the message says so), or the manifest declares a
        ratio the files do not have.
    """
    longer_n, shorter_n = max(n_trace, n_video), min(n_trace, n_video)
    if n_trace == n_video:
        if declared not in (None, 1):
            raise InputFormatError(
                f"temporal_downsample is {declared} but the traces and the video both have {n_trace} frames",
                path=extraction,
                field="temporal_downsample",
                fix="remove temporal_downsample from the manifest (or set it to 1)",
            )
        return FrameAlignment(1, "", n_trace)
    ratio = max(1, int(round(longer_n / max(shorter_n, 1))))
    exact = ratio >= 2 and shorter_n in {longer_n // ratio, -(-longer_n // ratio)}
    longer = "traces" if n_trace > n_video else "video"
    if not exact:
        raise InputFormatError(
            f"traces have {n_trace} frames but the video {video} has {n_video}",
            path=extraction,
            field="C",
            fix="pair the extraction with the full video it was computed from (all chunks)",
        )
    what = (
        f"the video holds every {_ordinal(ratio)} frame of the recording the traces come from"
        if longer == "traces"
        else f"the traces are {ratio}-frame averages of the movie"
        + (f" (the extraction says tsub = {tsub})" if tsub and tsub > 1 else "")
    )
    if declared is None or declared == 1:
        raise InputFormatError(
            f"traces have {n_trace} frames but the video {video} has {n_video}: a ratio of exactly {ratio}, "
            f"a temporal downsampling ({what})",
            path=extraction,
            field="temporal_downsample",
            fix=f"if that is intended, declare it with 'temporal_downsample: {ratio}' in the manifest; "
            "otherwise pair the extraction with the video it was computed from",
        )
    if declared != ratio:
        raise InputFormatError(
            f"temporal_downsample is {declared} but the traces ({n_trace} frames) and the video ({n_video}) "
            f"differ by a factor of {ratio}",
            path=extraction,
            field="temporal_downsample",
            fix=f"set temporal_downsample to {ratio}, or pair the extraction with its own video",
        )
    logger.info("%s: temporal downsampling %d accepted (%s)", extraction, ratio, what)
    return FrameAlignment(ratio, longer, shorter_n)
