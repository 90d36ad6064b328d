"""Footprints of the simulated extraction: the :class:`Unit` record and shape helpers.

A footprint is a row-major ``(height * width,)`` image with unit L2 norm, stored
sparsely (its non-zero pixels). The helpers turn a true spatial profile into a
CNMF-E-like estimate of it (:func:`perturb_footprint`) and measure how two shapes
overlap (:func:`overlap_fraction`).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from cellsift.pipeline.sim.geometry import SUPPORT_FRAC, Blob, blob_image

__all__ = [
    "Unit",
    "footprint_matrix",
    "footprint_support",
    "overlap_fraction",
    "perturb_footprint",
    "render_blob",
]


@dataclass
class Unit:
    """One extracted component, before ids are assigned.

    Attributes
    ----------
    kind
        ``"cell"`` for a real cell, else the artifact subtype (see
        :mod:`cellsift.pipeline.sim.extract`).
    label
        ``"good"`` or ``"bad"``.
    reason
        Artifact reason (one of :data:`~cellsift.pipeline.sim.extract.ARTIFACT_REASONS`),
        ``""`` for good cells.
    footprint
        Unit-L2-norm footprint, row-major ``(n_pixels,)`` (init only; stored sparsely
        as :attr:`pixels` and :attr:`values`, see :meth:`dense_footprint`).
    mixing
        Weight of each neuron's own-unit signal in the trace, ``{neuron: weight}``.
    dendrite_mixing
        Weight of each neuron's dendrite signal, ``{neuron: weight}``.
    bg_weight
        Fraction of the background fluctuation under the footprint left in the trace.
    motion_weight
        Fraction of the motion-induced intensity change left in the trace.
    noise_factor
        Multiplier of the camera-noise SD under the footprint (demixing inflation).
    tau_rise_s, tau_decay_s
        Kernel the deconvolution assumes (s).
    true_cell
        Neuron index if the unit *is* that neuron (good cells, silent cells,
        out-of-focus blobs), else None.
    source_cell
        Neuron index the artifact derives its signal or shape from, else None.
    info
        More truth about the unit, written to ``truth.json`` (e.g. how a CNMF-style
        component matches the true neurons); empty for rule-drawn units.
    pixels, values
        Row-major indices and values of the footprint's non-zero pixels.
    n_pixels
        Pixels per frame.
    """

    kind: str
    label: str
    reason: str
    footprint: InitVar[np.ndarray]
    mixing: dict[int, float] = field(default_factory=dict)
    dendrite_mixing: dict[int, float] = field(default_factory=dict)
    bg_weight: float = 0.1
    motion_weight: float = 0.25
    noise_factor: float = 1.1
    tau_rise_s: float = 0.07
    tau_decay_s: float = 0.7
    true_cell: int | None = None
    source_cell: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    pixels: np.ndarray = field(init=False)
    values: np.ndarray = field(init=False)
    n_pixels: int = field(init=False)

    def __post_init__(self, footprint: np.ndarray) -> None:
        fp = np.asarray(footprint, dtype=np.float64).ravel()
        self.n_pixels = int(fp.size)
        self.pixels = np.flatnonzero(fp)
        self.values = fp[self.pixels]

    def dense_footprint(self) -> np.ndarray:
        """The footprint as a dense row-major ``(n_pixels,)`` float64 array."""
        out = np.zeros(self.n_pixels)
        out[self.pixels] = self.values
        return out


def footprint_matrix(units: list[Unit], n_pixels: int) -> sp.csr_matrix:
    """Footprints of ``units`` as sparse rows ``(K, n_pixels)`` CSR, row-major pixels.

    Parameters
    ----------
    units
        The units.
    n_pixels
        Pixels per frame.

    Returns
    -------
    scipy.sparse.csr_matrix
        Row ``k`` is the footprint of ``units[k]`` (float64).
    """
    indptr = np.concatenate([[0], np.cumsum([u.pixels.size for u in units])]).astype(np.int64)
    indices = np.concatenate([u.pixels for u in units]) if units else np.zeros(0, np.int64)
    data = np.concatenate([u.values for u in units]) if units else np.zeros(0)
    return sp.csr_matrix((data, indices, indptr), shape=(len(units), n_pixels))


def footprint_support(img: np.ndarray) -> np.ndarray:
    """Support of an image: pixels above :data:`SUPPORT_FRAC` of its peak (bool, same shape)."""
    return img > SUPPORT_FRAC * max(float(img.max()), 1e-12)


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Shared support pixels as a fraction of the smaller support."""
    sa, sb = footprint_support(a), footprint_support(b)
    n = min(int(sa.sum()), int(sb.sum()))
    return float((sa & sb).sum()) / n if n else 0.0


def perturb_footprint(
    img: np.ndarray, rng: np.random.Generator, shape: tuple[int, int], *, noise: float = 0.08
) -> np.ndarray:
    """A CNMF-E-ish estimate of a footprint: multiplicative noise, trimmed, unit norm.

    Parameters
    ----------
    img
        True spatial profile, row-major ``(n_pixels,)`` (any scale, non-negative).
    rng
        Random generator.
    shape
        ``(height, width)``.
    noise
        SD of the multiplicative log-normal pixel noise.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)`` float64 with unit L2 norm (all zero if ``img`` is zero).
    """
    full = img.reshape(shape).astype(np.float64)
    out = np.zeros(shape)
    peak = float(full.max()) if full.size else 0.0
    if peak <= 0:
        return out.ravel()
    ys, xs = np.nonzero(full > 0.02 * peak)
    y0, y1 = max(0, ys.min() - 2), min(shape[0], ys.max() + 3)
    x0, x1 = max(0, xs.min() - 2), min(shape[1], xs.max() + 3)
    box = full[y0:y1, x0:x1]
    mask = box > 0.02 * peak
    box = box * np.exp(noise * rng.standard_normal(box.shape))
    box += 0.015 * peak * np.abs(rng.standard_normal(box.shape)) * ndimage.binary_dilation(mask)
    box[box < SUPPORT_FRAC * box.max()] = 0.0
    out[y0:y1, x0:x1] = box
    flat = out.ravel()
    return flat / (np.linalg.norm(flat) + 1e-12)


def render_blob(blob: Blob, h: int, w: int) -> np.ndarray:
    """A blob rendered on an ``(h, w)`` frame, flattened row-major ``(h * w,)`` float64."""
    img = np.zeros((h, w))
    y0, x0, patch = blob_image(blob, h, w)
    if patch.size:
        img[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    return img.ravel()
