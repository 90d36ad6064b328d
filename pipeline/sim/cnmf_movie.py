"""The movie side of the simulated CNMF-style extraction: what the factorisation reads.

While the simulator renders a session it hands every block of frames (the 8-bit
frames written to the AVI chunks) to a :class:`MovieCollector`. The collector
motion-corrects each block (with the session's true shifts plus a small estimation
error, as a registration step would leave), bins it in space (``ssub``) and time
(``tsub``) into the *reduced movie* the factorisation works on, and keeps the 8-bit
frames themselves only while they fit a memory budget; otherwise
:meth:`MovieCollector.full_blocks` re-reads the AVI chunks block by block. Memory is
bounded by the budgets, never by the session length.

The background model is spatially smooth and local (CNMF-E's ring model in spirit):
``B(t) = G * (Y(t) - A c(t))`` with ``G`` a Gaussian of about one cell diameter, so
``Y - B = L Y + G(A) c`` with the high-pass ``L = 1 - G`` (:class:`SmoothOperator`): the
traces of footprints ``A`` satisfy ``A L(A)^T c = A L(Y)`` frame by frame
(:func:`project_full` computes both sides at full resolution).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.sim.movie import shift_frames

__all__ = ["MovieCollector", "ReductionPlan", "SmoothOperator", "plan_reduction", "project_full"]

#: Values (float32) of the reduced movie the factorisation holds in memory (~128 MB).
REDUCED_BUDGET: Final = 32_000_000
#: 8-bit pixels of the full movie kept in memory for the final pass (else re-read).
KEEP_BUDGET: Final = 64_000_000
#: Smallest soma diameter (px) in the reduced movie when space must be binned.
_MIN_REDUCED_DIAMETER: Final = 4.0


@dataclass(frozen=True)
class ReductionPlan:
    """How the movie is reduced for the factorisation.

    Attributes
    ----------
    height, width
        Full frame size (px).
    n_frames
        Frames of the session.
    ssub, tsub
        Spatial and temporal binning factors.
    cell_diameter_px
        Median soma diameter (px, full resolution) the extraction is told (its ``gSig``).
    """

    height: int
    width: int
    n_frames: int
    ssub: int
    tsub: int
    cell_diameter_px: float

    @property
    def reduced_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the reduced movie (px)."""
        return self.height // self.ssub, self.width // self.ssub

    @property
    def n_reduced(self) -> int:
        """Frames of the reduced movie."""
        return math.ceil(self.n_frames / self.tsub)

    @property
    def reduced_diameter(self) -> float:
        """Median soma diameter in reduced pixels."""
        return self.cell_diameter_px / self.ssub

    @property
    def sigma_bg(self) -> float:
        """SD (full-resolution px) of the Gaussian background operator ``G``: one cell diameter."""
        return self.cell_diameter_px


def plan_reduction(
    height: int, width: int, n_frames: int, cell_diameter_px: float, *, budget: int = REDUCED_BUDGET
) -> ReductionPlan:
    """Choose spatial and temporal binning so the reduced movie fits ``budget`` values.

    Space is binned when cells are large (about 7 reduced px per diameter are kept) or
    when even 1,000 frames of the full field would not fit (down to 4 px per diameter);
    time is then binned to fit the budget.

    Parameters
    ----------
    height, width
        Frame size (px).
    n_frames
        Frames of the session.
    cell_diameter_px
        Median soma diameter (px).
    budget
        Values of the reduced movie (float32: 4 bytes each).

    Returns
    -------
    ReductionPlan
        The plan.
    """
    ssub = max(1, int(cell_diameter_px // 7.0))
    while (height // ssub) * (width // ssub) * min(n_frames, 1000) > budget and cell_diameter_px / (
        ssub + 1
    ) >= _MIN_REDUCED_DIAMETER:
        ssub += 1
    n_px = (height // ssub) * (width // ssub)
    tsub = max(1, math.ceil(n_frames * n_px / budget))
    return ReductionPlan(height, width, n_frames, ssub, tsub, float(cell_diameter_px))


class SmoothOperator:
    """The background operator ``G``: a separable Gaussian blur of ``sigma`` px, low rank.

    Along each axis the blur is the symmetric (normalised) Gaussian kernel matrix,
    truncated to its eigenvectors above 1e-4 of the largest eigenvalue: a wide blur is
    applied with a few small matrix products whatever its width, and ``G`` is
    self-adjoint, so ``A L(A)^T`` is a symmetric Gram matrix.

    Parameters
    ----------
    height, width
        Image size (px).
    sigma
        SD of the Gaussian (px).
    """

    def __init__(self, height: int, width: int, sigma: float) -> None:
        self.sigma = float(sigma)
        self._v = [self._factor(n, self.sigma) for n in (height, width)]

    @staticmethod
    def _factor(n: int, sigma: float) -> np.ndarray:
        """``V sqrt(L)`` of the axis's kernel matrix ``K = V L V^T`` (``n x r``, float32)."""
        x = np.arange(n, dtype=np.float64)
        k = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
        d = 1.0 / np.sqrt(k.sum(axis=1))
        k = d[:, None] * k * d[None, :]
        lam, vec = np.linalg.eigh(k)
        keep = lam > 1e-4 * lam.max()
        return (vec[:, keep] * np.sqrt(lam[keep])).astype(np.float32)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``G * images`` for images ``(..., height, width)``; float32."""
        vh, vw = self._v
        x = np.asarray(images, dtype=np.float32)
        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        n = int(np.prod(lead, dtype=np.int64))
        rw = vw.shape[1]
        # four large matrix products (per-image products would not use BLAS well)
        z = (x.reshape(n * h, w) @ vw).reshape(n, h, rw).transpose(0, 2, 1).reshape(n * rw, h) @ vh
        z = (z @ vh.T).reshape(n, rw, h).transpose(0, 2, 1).reshape(n * h, rw) @ vw.T
        return z.reshape(*lead, h, w)

    def high_pass(self, images: np.ndarray) -> np.ndarray:
        """``L images = images - G * images``; float32."""
        x = np.asarray(images, dtype=np.float32)
        return x - self.apply(x)


class MovieCollector:
    """Collects the rendered movie for the factorisation (see the module notes).

    Parameters
    ----------
    plan
        The reduction plan.
    shifts
        Shifts ``(n_frames, 2)`` (dy, dx) (px) the registration removes (the true motion
        plus its estimation error).
    folder
        The Miniscope folder the frames are written to (re-read for the final pass
        when the movie is larger than ``keep_budget``).
    keep_budget
        8-bit pixels of the movie kept in memory.
    """

    def __init__(
        self, plan: ReductionPlan, shifts: np.ndarray, folder: Path, *, keep_budget: int = KEEP_BUDGET
    ) -> None:
        self.plan = plan
        self.shifts = np.asarray(shifts, dtype=np.float64)
        self.folder = Path(folder)
        hr, wr = plan.reduced_shape
        self.reduced = np.zeros((plan.n_reduced, hr, wr), dtype=np.float32)
        self._count = np.zeros(plan.n_reduced, dtype=np.int64)
        self.n_seen = 0
        self._keep = plan.n_frames * plan.height * plan.width <= keep_budget
        self._kept: list[np.ndarray] = []

    def correct(self, block: np.ndarray, f0: int) -> np.ndarray:
        """Motion-correct frames ``f0 ...`` of ``block`` (uint8 or float) into float32."""
        x = np.asarray(block, dtype=np.float32)
        sh = -self.shifts[f0 : f0 + x.shape[0]]
        return shift_frames(x, sh, np.ones(x.shape[0]))

    def update(self, block: np.ndarray) -> None:
        """Add the next block of rendered frames ``(n, height, width)`` uint8."""
        p = self.plan
        n = block.shape[0]
        if self._keep:
            self._kept.append(np.array(block, dtype=np.uint8, copy=True))
        x = self.correct(block, self.n_seen)
        s = p.ssub
        hr, wr = p.reduced_shape
        if s > 1:
            x = x[:, : hr * s, : wr * s].reshape(n, hr, s, wr, s).mean(axis=(2, 4))
        idx = (self.n_seen + np.arange(n)) // p.tsub
        np.add.at(self.reduced, idx, x)
        np.add.at(self._count, idx, 1)
        self.n_seen += n

    def reduced_movie(self) -> np.ndarray:
        """The reduced movie ``(n_reduced, h', w')`` float32 (bins averaged)."""
        self.reduced /= np.maximum(self._count, 1)[:, None, None].astype(np.float32)
        self._count[:] = 1
        return self.reduced

    def full_blocks(self, block_frames: int = 500) -> Iterator[np.ndarray]:
        """The motion-corrected full movie, block by block, ``(n, height, width)`` float32."""
        f0 = 0
        if self._keep:
            for blk in self._kept:
                yield self.correct(blk, f0)
                f0 += blk.shape[0]
            return
        buf: list[np.ndarray] = []
        for path in sorted(self.folder.glob("*.avi"), key=lambda q: int(q.stem) if q.stem.isdigit() else -1):
            if not path.stem.isdigit():
                continue
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    buf.append(frame.to_ndarray())
                    if len(buf) == block_frames:
                        yield self.correct(np.stack(buf), f0)
                        f0 += len(buf)
                        buf = []
        if buf:
            yield self.correct(np.stack(buf), f0)

    def release(self) -> None:
        """Drop the kept frames and the reduced movie."""
        self._kept = []
        self.reduced = np.zeros((0, 0, 0), dtype=np.float32)


def project_full(
    footprints: np.ndarray, blocks: Iterator[np.ndarray], *, sigma_bg: float, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The normal equations of the traces of footprints ``A`` at full resolution.

    The least-squares traces once the smooth local background ``G * (y - A c)`` is
    removed solve ``M c(t) = r(t)`` with ``M = A L(A)^T`` and ``r(t) = A L(y(t))``.

    Parameters
    ----------
    footprints
        ``(K, height, width)`` non-negative footprints (full resolution).
    blocks
        Motion-corrected frames, block by block (:meth:`MovieCollector.full_blocks`).
    sigma_bg
        SD (px) of the background Gaussian.
    n_frames
        Frames in all blocks.

    Returns
    -------
    tuple of numpy.ndarray
        ``M`` ``(K, K)`` (symmetric, positive definite) and ``r`` ``(K, n_frames)``
        float64 (resting levels included).
    """
    k, h, w = footprints.shape
    op = SmoothOperator(h, w, sigma_bg)
    a = footprints.reshape(k, -1).astype(np.float64)
    la = op.high_pass(footprints).reshape(k, -1).astype(np.float64)
    gram = a @ la.T
    gram = 0.5 * (gram + gram.T) + 1e-6 * np.trace(gram) / max(k, 1) * np.eye(k)
    a_sp = sp.csr_matrix(footprints.reshape(k, -1).astype(np.float32))
    rhs = np.zeros((k, n_frames))
    f0 = 0
    for blk in blocks:
        n = blk.shape[0]
        rhs[:, f0 : f0 + n] = a_sp @ op.high_pass(blk).reshape(n, -1).T
        f0 += n
    return gram, rhs
