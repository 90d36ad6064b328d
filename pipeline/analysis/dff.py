"""ΔF/F of CNMF-E traces, with a stated baseline.

CNMF-E's ``C_raw`` is *background-subtracted*: it is the cell's own signal in movie
units (``movie ≈ A @ C + background``), so its baseline sits near zero and dividing
by it would be meaningless. cellsift therefore uses

.. math::

    \\Delta F/F(t) = \\frac{C_{raw}(t) - F_0(t)}{F_{ref}}

* :math:`F_0(t)` — the cell's running baseline: the ``baseline_percentile`` (10th)
  percentile of ``C_raw`` in a centred window of ``baseline_window_s`` (30 s), evaluated
  every ``baseline_window_s / 10`` and linearly interpolated. It removes slow drift
  (bleaching, neuropil) from the numerator.
* :math:`F_{ref}` — the raw fluorescence under the footprint, in ``C`` units: the
  footprint-weighted projection :math:`a^\\top Y_{10} / a^\\top a` of the movie's
  per-pixel 10th-percentile image :math:`Y_{10}` (median over up to
  ``max_movie_chunks`` chunks spread over the session). This is the resting
  fluorescence the cell is seen against (its own resting brightness plus out-of-focus
  background and neuropil), the same convention as CaImAn's ``detrend_df_f``. It is a
  constant per cell (bleaching over a session changes it by a few per cent).

When the session has no movie, :math:`F_{ref}` is projected from the maximum
projection (``method="max_proj"``, biased *low* by roughly the ratio of transient to
resting brightness); with neither, the trace's robust range, ``p99 - p10`` of ``C_raw``
(``method="c_raw_range"``: a fraction of the cell's large transients, not a true
ΔF/F). The method of each cell is stored (``dff_method`` in ``cell_summary``).
Windows are in frames (``window_s * fps``); with dropped frames they span slightly
more time than stated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from cellsift.pipeline._util import MAD_OF_STD_NORMAL
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "DffParams",
    "DFF_METHODS",
    "running_percentile",
    "movie_baseline_image",
    "reference_fluorescence",
    "compute_dff",
    "robust_noise_sd_rows",
]

DFF_METHODS: Final = ("movie_p10", "max_proj", "c_raw_range")


@dataclass(frozen=True)
class DffParams:
    """Parameters of ΔF/F.

    Attributes
    ----------
    baseline_window_s
        Length of the running-percentile window of :math:`F_0` (s).
    baseline_percentile
        Percentile of ``C_raw`` taken as :math:`F_0` (0-100).
    image_percentile
        Per-pixel percentile of the movie taken as resting fluorescence (0-100).
    max_movie_chunks
        At most this many movie chunks (spread over the session) are read for the
        resting image.

    Raises
    ------
    ParameterError
        A window that is not positive, a percentile outside [0, 100] or fewer than one
        movie chunk.
    """

    baseline_window_s: float = 30.0
    baseline_percentile: float = 10.0
    image_percentile: float = 10.0
    max_movie_chunks: int = 8

    def __post_init__(self) -> None:
        if not (math.isfinite(self.baseline_window_s) and self.baseline_window_s > 0):
            raise ParameterError(f"must be > 0 s, got {self.baseline_window_s}", field="baseline_window_s")
        for name in ("baseline_percentile", "image_percentile"):
            value = getattr(self, name)
            if not (0.0 <= value <= 100.0):
                raise ParameterError(f"must be in [0, 100], got {value}", field=name)
        if isinstance(self.max_movie_chunks, bool) or self.max_movie_chunks < 1:
            raise ParameterError(f"must be >= 1, got {self.max_movie_chunks}", field="max_movie_chunks")


def running_percentile(x: np.ndarray, *, window: int, q: float, step: int | None = None) -> np.ndarray:
    """Running percentile of each row in a centred window, evaluated every ``step`` frames.

    Parameters
    ----------
    x
        ``(n_rows, n_frames)`` traces.
    window
        Window length (frames); windows are cut at the ends of the trace.
    q
        Percentile (0-100).
    step
        Evaluate every ``step`` frames and interpolate linearly between; default
        ``max(1, window // 10)``.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_frames)`` float64.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    if n == 0:
        return x.copy()
    window = max(1, int(window))
    step = max(1, window // 10) if step is None else max(1, int(step))
    half = window // 2
    centres = np.arange(0, n, step)
    if centres[-1] != n - 1:
        centres = np.append(centres, n - 1)
    values = np.empty((x.shape[0], centres.size))
    for j, c in enumerate(centres):
        lo, hi = max(0, c - half), min(n, c + half + 1)
        values[:, j] = np.percentile(x[:, lo:hi], q, axis=1)
    if centres.size == 1:
        return np.repeat(values, n, axis=1)
    frames = np.arange(n)
    k = np.clip(np.searchsorted(centres, frames, side="right") - 1, 0, centres.size - 2)
    w = (frames - centres[k]) / (centres[k + 1] - centres[k])
    return values[:, k] * (1.0 - w) + values[:, k + 1] * w


def movie_baseline_image(
    movie: Any, *, q: float = 10.0, max_chunks: int = 8, chunk_frames: int | None = None
) -> np.ndarray:
    """Per-pixel resting fluorescence: median over sampled chunks of each chunk's ``q``-th percentile.

    Parameters
    ----------
    movie
        ``(n_frames, height, width)`` array-like with slicing (zarr array or numpy).
    q
        Percentile within a chunk (0-100).
    max_chunks
        Number of chunks read, spread evenly over the session.
    chunk_frames
        Frames per chunk; default the array's chunk length (or 100).

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` float64.
    """
    n = int(movie.shape[0])
    if chunk_frames is None:
        chunks = getattr(movie, "chunks", None)
        chunk_frames = int(chunks[0]) if chunks and isinstance(chunks[0], (int, np.integer)) else 100
    chunk_frames = max(1, min(chunk_frames, n))
    n_chunks = max(1, math.ceil(n / chunk_frames))
    picks = np.unique(np.linspace(0, n_chunks - 1, min(max_chunks, n_chunks)).round().astype(int))
    images = []
    for c in picks:
        block = np.asarray(movie[c * chunk_frames : min(n, (c + 1) * chunk_frames)])
        k = int(round(q / 100.0 * (block.shape[0] - 1)))
        images.append(np.partition(block, k, axis=0)[k].astype(np.float64))
    return np.median(np.stack(images), axis=0)


def reference_fluorescence(footprints: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Footprint-weighted projection ``a·image / a·a`` of an image, per unit (in ``C`` units).

    Parameters
    ----------
    footprints
        ``(n_units, height, width)`` non-negative footprints.
    image
        ``(height, width)`` image in movie units.

    Returns
    -------
    numpy.ndarray
        ``(n_units,)`` float64; NaN for empty footprints.
    """
    a = np.asarray(footprints, dtype=np.float64).reshape(len(footprints), -1)
    img = np.asarray(image, dtype=np.float64).ravel()
    norm = np.einsum("ij,ij->i", a, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, a @ img / norm, np.nan)


def robust_noise_sd_rows(x: np.ndarray) -> np.ndarray:
    """Robust SD of the fast noise of each row: ``MAD(diff) / (0.6745 * sqrt 2)``."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] < 3:
        return np.zeros(x.shape[0])
    d = np.diff(x, axis=1)
    mad = np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
    fallback = np.std(d, axis=1) / math.sqrt(2.0)
    return np.where(mad > 0, mad / (MAD_OF_STD_NORMAL * math.sqrt(2.0)), fallback)


def compute_dff(
    c_raw: np.ndarray,
    *,
    fps: float,
    f_ref: np.ndarray | None,
    method: str,
    params: DffParams = DffParams(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """ΔF/F of a batch of units (see the module notes for the convention).

    Parameters
    ----------
    c_raw
        ``(n_units, n_frames)`` raw CNMF-E traces.
    fps
        Frame rate (Hz), for the baseline window.
    f_ref
        ``(n_units,)`` resting fluorescence in ``C`` units, or ``None`` when no image is
        available.
    method
        How ``f_ref`` was obtained (``"movie_p10"`` or ``"max_proj"``); ignored when
        ``f_ref`` is ``None``.
    params
        Baseline parameters.

    Returns
    -------
    tuple
        ``(dff, f0, denominator, methods)``: ``(n_units, n_frames)`` float32 ΔF/F,
        ``(n_units, n_frames)`` float64 running baseline, ``(n_units,)`` denominator
        and the method used per unit (units whose ``f_ref`` is not positive fall back
        to ``"c_raw_range"``).

    Raises
    ------
    InputFormatError
        If the traces are not finite or the shapes disagree.
    """
    x = np.atleast_2d(np.asarray(c_raw, dtype=np.float64))
    if not np.all(np.isfinite(x)):
        raise InputFormatError(
            "C_raw contains NaN or Inf", field="C_raw", fix="re-run ingest; traces must be finite"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise InputFormatError(f"fps must be > 0, got {fps}", field="fps")
    window = max(1, int(round(params.baseline_window_s * fps)))
    f0 = running_percentile(x, window=window, q=params.baseline_percentile)
    n_units = x.shape[0]
    denom = np.full(n_units, np.nan)
    methods = ["c_raw_range"] * n_units
    if f_ref is not None:
        f_ref = np.asarray(f_ref, dtype=np.float64)
        if f_ref.shape != (n_units,):
            raise InputFormatError(f"f_ref has shape {f_ref.shape}, expected ({n_units},)", field="f_ref")
        ok = np.isfinite(f_ref) & (f_ref > 0)
        denom[ok] = f_ref[ok]
        for i in np.flatnonzero(ok):
            methods[i] = method
    need = ~np.isfinite(denom)
    if need.any():
        if x.shape[1]:
            rng_ = np.percentile(x[need], 99, axis=1) - np.percentile(x[need], 10, axis=1)
        else:
            rng_ = np.zeros(int(need.sum()))
        denom[need] = np.where(rng_ > 0, rng_, 1.0)
    dff = ((x - f0) / denom[:, None]).astype(np.float32)
    return dff, f0, denom, methods
