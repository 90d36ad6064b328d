"""Whether footprints are read the right way round, checked against the movie.

:class:`PeakFrameCheck` / :func:`check_orientation` tell whether footprints are
transposed or their pixels row-major where column-major was declared (or the reverse),
decided by correlating each candidate reading of the footprints with the movie at the
cells' own peak frames (or, without a movie, with the extraction's correlation image,
:func:`image_orientation_scores`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import PIXEL_ORDERS, Extraction
from cellsift.pipeline.readers.traces import Traces, any_nonzero, iter_unit_blocks
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "ORIENTATION_UNITS",
    "PeakFrameCheck",
    "check_orientation",
    "footprint_image",
    "image_orientation_scores",
    "peak_traces",
    "pick_check_units",
]

#: Units whose peak frames are used by the orientation check.
ORIENTATION_UNITS: Final = 40
#: A reading of the footprints must correlate at least this well with the movie to count.
_MIN_SCORE: Final = 0.05
#: ... and beat the declared reading by this much to be called a mistake.
_MARGIN: Final = 0.08


def footprint_image(column: np.ndarray, height: int, width: int, order: str) -> np.ndarray:
    """One flat footprint as a ``(height, width)`` image read in pixel ``order``."""
    if order == "F":
        return column.reshape(width, height).T
    return column.reshape(height, width)


def _top_peaks(trace: np.ndarray, k: int, separation: int) -> list[int]:
    """Frames of the ``k`` highest points of ``trace`` at least ``separation`` frames apart."""
    peaks: list[int] = []
    for i in np.argsort(-trace, kind="stable"):
        if all(abs(int(i) - j) >= separation for j in peaks):
            peaks.append(int(i))
            if len(peaks) == k:
                break
    return peaks


def _strength(rows: np.ndarray) -> np.ndarray:
    """Peak over robust spread of each row."""
    x = np.asarray(rows, dtype=np.float64)
    med = np.median(x, axis=1)
    spread = np.median(np.abs(x - med[:, None]), axis=1) + 1e-12
    return np.asarray((x.max(axis=1) - med) / spread)


def pick_check_units(traces: Traces, n: int = ORIENTATION_UNITS) -> np.ndarray:
    """Indices of the ``n`` units with the clearest transients (peak over robust spread).

    The traces are read a block of units at a time (flat memory for long sessions).
    """
    parts = [_strength(rows) for _, rows in iter_unit_blocks(traces)]
    strength = np.concatenate(parts) if parts else np.zeros(0)
    order = np.argsort(-strength, kind="stable")[: min(n, len(strength))]
    return order[np.isfinite(strength[order]) & (strength[order] > 0)]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64)
    b = b.ravel().astype(np.float64)
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def peak_traces(ext: Extraction) -> Traces:
    """The traces whose peaks the orientation check uses: ``C``, or ``C_raw`` when ``C`` is all zero."""
    return ext.C if any_nonzero(ext.C) else ext.C_raw


class PeakFrameCheck:
    """Correlate each reading of the footprints with the movie at the cells' peak frames.

    For up to :data:`ORIENTATION_UNITS` units with the clearest transients, the frames
    around each unit's ``n_peaks`` strongest peaks are averaged and the average of
    frames shortly before each peak subtracted: the image of what brightened when the
    cell fired. Each reading of the footprint (column-major ``"F"`` and row-major
    ``"C"``; for square frames the second is the transpose) is correlated with that
    image inside a window around the footprint (padded by ``pad`` px, smoothed by a
    Gaussian of ``sigma`` px to tolerate residual motion). Only the windows are kept, so
    memory does not depend on the frame size or the session length.

    Feed the movie with :meth:`take` (any block sizes, in order), then call :meth:`scores`.

    Parameters
    ----------
    A
        Footprints ``(height*width, K)``.
    height, width
        Frame size.
    traces
        ``(K, T)`` traces aligned with the movie frames (the denoised ``C`` is best).
    n_peaks
        Peaks per unit.
    pad, sigma
        Window padding and smoothing, in pixels.
    """

    def __init__(
        self,
        A: sp.csc_matrix,
        height: int,
        width: int,
        traces: Traces,
        *,
        n_peaks: int = 3,
        pad: int = 10,
        sigma: float = 1.5,
    ) -> None:
        self.height, self.width, self.sigma = height, width, sigma
        n_frames = traces.shape[1]
        separation = max(10, n_frames // 50)
        self.units = pick_check_units(traces)
        self.windows: list[dict[str, tuple[slice, slice, np.ndarray]]] = []
        self.peak_sum: list[dict[str, np.ndarray]] = []
        self.base_sum: list[dict[str, np.ndarray]] = []
        self.counts = np.zeros((len(self.units), 2), dtype=np.int64)
        self.plan: dict[int, list[tuple[int, int]]] = {}
        for slot, unit in enumerate(self.units):
            column = np.asarray(A[:, int(unit)].toarray()).ravel()
            windows = {}
            for order in PIXEL_ORDERS:
                image = footprint_image(column, height, width, order)
                ys, xs = np.nonzero(image)
                rows = slice(max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, height))
                cols = slice(max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, width))
                windows[order] = (rows, cols, np.array(image[rows, cols], dtype=np.float64))
            self.windows.append(windows)
            self.peak_sum.append({o: np.zeros(w[2].shape) for o, w in windows.items()})
            self.base_sum.append({o: np.zeros(w[2].shape) for o, w in windows.items()})
            for peak in _top_peaks(np.asarray(traces[int(unit)], dtype=np.float64), n_peaks, separation):
                around = range(max(peak - 1, 0), min(peak + 2, n_frames))
                before = (
                    range(peak - 15, peak - 5) if peak >= 15 else range(peak + 20, min(peak + 30, n_frames))
                )
                for frame in around:
                    self.plan.setdefault(frame, []).append((slot, 0))
                for frame in before:
                    if 0 <= frame < n_frames:
                        self.plan.setdefault(frame, []).append((slot, 1))

    def take(self, block: np.ndarray, start: int) -> None:
        """Add the planned frames of ``block`` (frames ``start`` .. ``start + len(block) - 1``)."""
        for frame in range(start, start + len(block)):
            for slot, kind in self.plan.get(frame, ()):
                image = block[frame - start]
                sums = self.peak_sum[slot] if kind == 0 else self.base_sum[slot]
                for order, (rows, cols, _) in self.windows[slot].items():
                    sums[order] += image[rows, cols]
                self.counts[slot, kind] += 1

    def scores(self) -> dict[str, float]:
        """Mean correlation over the checked units of each reading: ``{"F": r, "C": r}``."""
        from scipy.ndimage import gaussian_filter

        out: dict[str, list[float]] = {order: [] for order in PIXEL_ORDERS}
        for slot in range(len(self.units)):
            n_peak, n_base = self.counts[slot]
            if n_peak == 0 or n_base == 0:
                continue
            for order, (_, _, footprint) in self.windows[slot].items():
                change = self.peak_sum[slot][order] / n_peak - self.base_sum[slot][order] / n_base
                out[order].append(_pearson(footprint, gaussian_filter(change, self.sigma)))
        return {order: float(np.mean(v)) if v else 0.0 for order, v in out.items()}

    @property
    def n_checked(self) -> int:
        """Units that entered the scores."""
        return int(np.sum((self.counts[:, 0] > 0) & (self.counts[:, 1] > 0)))


def image_orientation_scores(
    A: sp.csc_matrix, height: int, width: int, image: np.ndarray
) -> dict[str, float]:
    """Correlation of the footprints' maximum projection, read in each pixel order, with a
    reference image of the field of view (e.g. CNMF-E's correlation image ``Cn``)."""
    peak = np.asarray(A.max(axis=1).toarray()).ravel()
    return {order: _pearson(footprint_image(peak, height, width, order), image) for order in PIXEL_ORDERS}


def check_orientation(
    scores: dict[str, float],
    *,
    declared: str,
    path: Path,
    square: bool,
    against: str,
    warn_unclear: bool = True,
) -> str:
    """Decide from :func:`orientation_scores` whether the declared reading is wrong.

    Returns
    -------
    str
        ``"confirmed"``, or ``"unclear"`` (nothing correlates; a warning is logged).

    Raises
    ------
    InputFormatError
        The other reading correlates clearly better: the footprints are transposed
        (square frames) or row-major/column-major mixed up.
    """
    other = "C" if declared == "F" else "F"
    mine, theirs = scores[declared], scores[other]
    if theirs >= _MIN_SCORE and theirs - mine >= _MARGIN and theirs > 2 * max(mine, 0.0):
        names = {"F": "column-major (MATLAB, order='F')", "C": "row-major (numpy, order='C')"}
        problem = (
            f"footprints look {'transposed' if square else 'row-major/column-major mixed up'}: read as "
            f"{names[declared]} they correlate {mine:.2f} with {against}, read as {names[other]} {theirs:.2f}"
        )
        raise InputFormatError(
            problem,
            path=path,
            field="A",
            fix=f"save the footprints in {names[declared]} pixel order, or declare 'pixel_order: {other}' in the manifest",
        )
    if max(mine, theirs) < _MIN_SCORE:
        logger.log(
            logging.WARNING if warn_unclear else logging.INFO,
            "%s: cannot confirm the footprint orientation: they hardly correlate with %s (%.2f)",
            path,
            against,
            mine,
        )
        return "unclear"
    return "confirmed"
