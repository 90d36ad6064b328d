"""Shapes of the simulated tissue: somata (blobs), dendrites and vessels (streaks).

Images are row-major ``(height, width)``, flattened as ``y * width + x``. A shape is
rendered as a small patch of the frame (:func:`blob_image`, :func:`streak_image`) that
:func:`patch_to_flat` turns into flat pixel indices and values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

__all__ = [
    "SUPPORT_FRAC",
    "SIGMA_PER_DIAMETER",
    "Blob",
    "Streak",
    "blob_image",
    "streak_image",
    "patch_to_flat",
    "smooth_field",
]

#: Footprint support is where the soma is above this fraction of its peak.
SUPPORT_FRAC: Final = 0.1
#: Gaussian SD per support diameter of a round blob (support above :data:`SUPPORT_FRAC`).
SIGMA_PER_DIAMETER: Final = 1.0 / (2.0 * math.sqrt(2.0 * math.log(1.0 / SUPPORT_FRAC)))


@dataclass(frozen=True)
class Blob:
    """An elliptical, slightly irregular Gaussian (a soma or a diffuse spot).

    Attributes
    ----------
    cy, cx
        Centre (px, row and column) in animal coordinates.
    sigma_major, sigma_minor
        Gaussian SDs along the two axes (px).
    angle
        Orientation of the major axis (rad).
    irregularity
        SD of the log-multiplicative smooth texture (0 = perfect ellipse).
    shape_seed
        Seed of the texture, so the same cell looks the same every day.
    """

    cy: float
    cx: float
    sigma_major: float
    sigma_minor: float
    angle: float
    irregularity: float
    shape_seed: int

    @property
    def diameter_px(self) -> float:
        """Diameter (px) of the support (above :data:`SUPPORT_FRAC` of peak), geometric mean."""
        return math.sqrt(self.sigma_major * self.sigma_minor) / SIGMA_PER_DIAMETER


@dataclass(frozen=True)
class Streak:
    """A thin curved line: a dendrite or a blood vessel.

    Attributes
    ----------
    y0, x0
        Start point (px).
    angle
        Initial direction (rad).
    length
        Length (px).
    width
        Gaussian SD across the line (px).
    curvature
        Sideways bow as a fraction of the length.
    fade
        Exponential fall-off of intensity along the line (per length); 0 = uniform.
    """

    y0: float
    x0: float
    angle: float
    length: float
    width: float
    curvature: float
    fade: float = 0.0


def blob_image(
    blob: Blob, height: int, width: int, *, dy: float = 0.0, dx: float = 0.0, cutoff: float = 0.02
) -> tuple[int, int, np.ndarray]:
    """Render a :class:`Blob` as a patch of the frame.

    Parameters
    ----------
    blob
        The blob.
    height, width
        Frame size (px).
    dy, dx
        Offset added to the centre (px).
    cutoff
        Values below ``cutoff`` of the peak are set to 0.

    Returns
    -------
    tuple
        ``(y0, x0, patch)``: top-left corner of the patch in the frame and the patch
        (float64, peak 1 unless the blob lies partly outside the frame). The patch
        may be empty (size 0) when the blob lies outside.
    """
    cy, cx = blob.cy + dy, blob.cx + dx
    half = int(math.ceil(3.2 * blob.sigma_major)) + 1
    oy, ox = int(math.floor(cy)) - half, int(math.floor(cx)) - half
    n = 2 * half + 1
    yy, xx = np.mgrid[oy : oy + n, ox : ox + n].astype(np.float64)
    yy -= cy
    xx -= cx
    ca, sa = math.cos(blob.angle), math.sin(blob.angle)
    u = xx * ca + yy * sa
    v = -xx * sa + yy * ca
    img = np.exp(-0.5 * ((u / blob.sigma_major) ** 2 + (v / blob.sigma_minor) ** 2))
    if blob.irregularity > 0:
        # smooth texture in the blob's own frame, reproducible from its seed
        tex = np.random.default_rng(blob.shape_seed).standard_normal((n, n))
        tex = ndimage.gaussian_filter(tex, 1.2 * min(blob.sigma_minor, 2.5), mode="wrap")
        tex /= tex.std() + 1e-12
        img = img * np.exp(blob.irregularity * tex)
    img /= max(float(img.max()), 1e-12)
    img[img < cutoff] = 0.0
    y0, y1 = max(0, oy), min(height, oy + n)
    x0, x1 = max(0, ox), min(width, ox + n)
    if y1 <= y0 or x1 <= x0:
        return 0, 0, np.zeros((0, 0))
    return y0, x0, img[y0 - oy : y1 - oy, x0 - ox : x1 - ox]


def streak_image(
    streak: Streak, height: int, width: int, *, dy: float = 0.0, dx: float = 0.0, cutoff: float = 0.02
) -> tuple[int, int, np.ndarray]:
    """Render a :class:`Streak` as a patch of the frame (peak about 1).

    Parameters
    ----------
    streak
        The streak.
    height, width
        Frame size (px).
    dy, dx
        Offset (px).
    cutoff
        Values below ``cutoff`` are set to 0.

    Returns
    -------
    tuple
        ``(y0, x0, patch)`` as in :func:`blob_image`.
    """
    n_pts = max(8, int(streak.length * 2.0) + 1)
    s = np.linspace(0.0, 1.0, n_pts)
    ds = streak.length / (n_pts - 1)
    ca, sa = math.cos(streak.angle), math.sin(streak.angle)
    bow = streak.curvature * streak.length * 4.0 * s * (1.0 - s)
    py = streak.y0 + dy + s * streak.length * sa + bow * ca
    px = streak.x0 + dx + s * streak.length * ca - bow * sa
    prof = np.exp(-streak.fade * s)
    pad = int(math.ceil(3.5 * streak.width)) + 2
    oy, ox = int(math.floor(py.min())) - pad, int(math.floor(px.min())) - pad
    ny = int(math.ceil(py.max())) + pad + 1 - oy
    nx = int(math.ceil(px.max())) + pad + 1 - ox
    # splat the sampled line bilinearly, then blur: a line of unit density blurred by
    # a 2-D Gaussian of SD w peaks at 1 / (sqrt(2 pi) w)
    canvas = np.zeros((ny + 1, nx + 1))
    fy, fx = py - oy, px - ox
    iy, ix = np.floor(fy).astype(int), np.floor(fx).astype(int)
    wy, wx = fy - iy, fx - ix
    wgt = prof * ds
    np.add.at(canvas, (iy, ix), wgt * (1 - wy) * (1 - wx))
    np.add.at(canvas, (iy + 1, ix), wgt * wy * (1 - wx))
    np.add.at(canvas, (iy, ix + 1), wgt * (1 - wy) * wx)
    np.add.at(canvas, (iy + 1, ix + 1), wgt * wy * wx)
    img = ndimage.gaussian_filter(canvas[:ny, :nx], streak.width, mode="constant")
    img *= math.sqrt(2.0 * math.pi) * streak.width
    img[img < cutoff] = 0.0
    y0, y1 = max(0, oy), min(height, oy + ny)
    x0, x1 = max(0, ox), min(width, ox + nx)
    if y1 <= y0 or x1 <= x0:
        return 0, 0, np.zeros((0, 0))
    return y0, x0, img[y0 - oy : y1 - oy, x0 - ox : x1 - ox]


def patch_to_flat(y0: int, x0: int, patch: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat (row-major) pixel indices and values of the non-zero pixels of a patch.

    Parameters
    ----------
    y0, x0
        Top-left corner of the patch in the frame (px).
    patch
        The patch, e.g. from :func:`blob_image`.
    width
        Frame width (px).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, values)``: pixel indices ``y * width + x`` and the patch values there.
    """
    iy, ix = np.nonzero(patch)
    return (iy + y0) * width + (ix + x0), patch[iy, ix]


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-SD smooth Gaussian random field.

    Parameters
    ----------
    rng
        Random generator (one standard-normal draw per pixel).
    shape
        ``(height, width)`` (px).
    sigma_px
        SD of the Gaussian smoothing (px).

    Returns
    -------
    numpy.ndarray
        ``shape`` float64, SD 1.
    """
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="reflect")
    return f / (f.std() + 1e-12)
