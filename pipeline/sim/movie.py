"""Scene and movie of the simulated miniscope.

The fluorescence model of a frame (camera counts, row-major ``(height, width)``
images flattened as ``y * width + x``) is::

    F(t) = dark + vignette * bleach(t) * shift_t( vessels * (static + sum_k s_k c_k(t)) ) + noise

where the spatial components ``s_k`` are neuron somata (peak 1), dendrites, out-of-focus
neurons, a few very broad out-of-focus background blobs and a neuropil field, and
``c_k(t)`` their intensities: ``brightness * (1 + dF/F(t))`` for neurons. The noise is
shot noise (variance ``gain * F``, the normal approximation of Poisson photon counts,
accurate at these photon numbers) plus Gaussian read noise. ``shift_t`` is the rigid
brain motion (bilinear interpolation). Movies are rendered in blocks of frames, so a
session of any length never sits in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.geometry import blob_image, patch_to_flat, smooth_field, streak_image
from cellsift.pipeline.sim.population import Population

__all__ = [
    "Scene",
    "build_scene",
    "neuron_intensity",
    "expected_frame",
    "render_movie",
    "ProjectionStats",
    "shift_frames",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- scene / movie


@dataclass
class Scene:
    """Spatial side of one session (population seen through the day's field of view).

    Attributes
    ----------
    height, width
        Frame size (px).
    fov_offset
        Shift of the animal's tissue in this session (dy, dx) (px).
    neuron_images
        Soma image per neuron as sparse rows ``(n_neurons, n_pixels)`` (peak 1).
    dendrite_images
        Dendrite image per neuron (empty rows where none), ``(n_neurons, n_pixels)``.
    bg_images
        Background blob images (peak amplitude in counts) and the neuropil field
        (mean ``neuropil_amp``), dense ``(n_bg + 1, n_pixels)``.
    static
        Static additive image: flat background, tissue texture and spots (counts).
    transmission
        Multiplicative darkening by blood vessels (1 = none), ``(n_pixels,)``.
    vignette
        Optical fall-off (1 at the centre), ``(n_pixels,)``.
    dark_counts
        Camera black level (counts).
    gain_counts
        Shot-noise variance per count (counts).
    read_sd_counts
        Read-noise SD (counts).
    spot_images
        Image (peak 1) of each static spot, ``(n_spots, n_pixels)`` sparse.
    """

    height: int
    width: int
    fov_offset: tuple[float, float]
    neuron_images: sp.csr_matrix
    dendrite_images: sp.csr_matrix
    bg_images: np.ndarray
    static: np.ndarray
    transmission: np.ndarray
    vignette: np.ndarray
    dark_counts: float
    gain_counts: float
    read_sd_counts: float
    spot_images: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))

    @property
    def n_pixels(self) -> int:
        """Pixels per frame."""
        return self.height * self.width


def _rows_to_csr(rows: list[tuple[np.ndarray, np.ndarray]], n_pixels: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    for i, (idx, _) in enumerate(rows):
        indptr[i + 1] = indptr[i] + idx.size
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    m = sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=(len(rows), n_pixels))
    m.sort_indices()
    return m


def build_scene(
    pop: Population,
    *,
    fov_offset: tuple[float, float],
    noise_scale: float,
) -> Scene:
    """Render the population's spatial components for one session.

    Parameters
    ----------
    pop
        The animal's population.
    fov_offset
        Day-to-day shift of the tissue (dy, dx) (px).
    noise_scale
        Multiplier of the shot- and read-noise SDs.

    Returns
    -------
    Scene
        The session's spatial components.
    """
    h, w = pop.height, pop.width
    dy, dx = fov_offset
    n_px = h * w
    rows = []
    drows = []
    for nr in pop.neurons:
        rows.append(patch_to_flat(*blob_image(nr.blob, h, w, dy=dy, dx=dx), w))
        if nr.dendrite is not None:
            drows.append(patch_to_flat(*streak_image(nr.dendrite, h, w, dy=dy, dx=dx), w))
        else:
            drows.append((np.zeros(0, np.int64), np.zeros(0)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    bg = []
    for cy, cx, sig, amp in pop.bg_blobs:
        bg.append((amp * np.exp(-0.5 * ((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / sig**2)).ravel())
    # neuropil and texture fields live on a padded canvas and move with the tissue
    frng = np.random.default_rng(pop.field_seed)
    scale = pop.cell_scale  # tissue structures scale with the cells
    pad = max(8, int(np.ceil(8.0 * scale)))
    npil = np.exp(0.35 * smooth_field(frng, (h + 2 * pad, w + 2 * pad), 6.0 * scale))
    tex = 3.0 * smooth_field(frng, (h + 2 * pad, w + 2 * pad), 1.5 * scale)
    npil = ndimage.shift(npil, (dy, dx), order=1, mode="nearest")[pad:-pad, pad:-pad]
    tex = ndimage.shift(tex, (dy, dx), order=1, mode="nearest")[pad:-pad, pad:-pad]
    npil = npil / npil.mean() * pop.neuropil_amp
    bg.append(npil.ravel())
    static = pop.bg_base + tex.ravel()
    spot_rows = []
    for blob, amp in pop.spots:
        idx, val = patch_to_flat(*blob_image(blob, h, w, dy=dy, dx=dx), w)
        np.add.at(static, idx, amp * val)
        spot_rows.append((idx, val))
    trans = np.ones(n_px)
    for vessel, depth in pop.vessels:
        y0, x0, patch = streak_image(vessel, h, w, dy=dy, dx=dx)
        if patch.size:
            trans[patch_to_flat(y0, x0, patch, w)[0]] *= 1.0 - depth * patch[np.nonzero(patch)]
    r2 = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    vignette = (1.0 - 0.18 * r2).ravel()
    return Scene(
        height=h,
        width=w,
        fov_offset=(float(dy), float(dx)),
        neuron_images=_rows_to_csr(rows, n_px),
        dendrite_images=_rows_to_csr(drows, n_px),
        bg_images=np.asarray(bg, dtype=np.float32),
        static=static.astype(np.float32),
        transmission=trans.astype(np.float32),
        vignette=vignette.astype(np.float32),
        dark_counts=10.0,
        gain_counts=0.08 * noise_scale**2,
        read_sd_counts=1.2 * noise_scale,
        spot_images=_rows_to_csr(spot_rows, n_px),
    )


def neuron_intensity(pop: Population, activity: Activity, frames: slice) -> tuple[np.ndarray, np.ndarray]:
    """Soma and dendrite intensities (counts) of every neuron for ``frames``.

    Parameters
    ----------
    pop
        The animal's population.
    activity
        The session's activity.
    frames
        The frames wanted.

    Returns
    -------
    tuple of numpy.ndarray
        ``(soma, dendrite)``, each ``(n_frames_in_slice, n_neurons)`` float32.
    """
    b = np.array([nr.brightness for nr in pop.neurons], dtype=np.float32)
    bd = np.array([nr.dendrite_brightness for nr in pop.neurons], dtype=np.float32)
    d = activity.dff[:, frames].T
    # dendritic calcium follows the soma (back-propagating spikes), a little weaker
    return b * (1.0 + d), bd * (1.0 + 0.8 * d)


def expected_frame(pop: Population, scene: Scene, activity: Activity) -> np.ndarray:
    """Time-averaged noiseless frame (counts) without motion.

    Parameters
    ----------
    pop, scene, activity
        The animal's population, the session's spatial components and its activity.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)`` float64, row-major.
    """
    soma, dend = neuron_intensity(pop, activity, slice(None))
    f = scene.static.astype(np.float64).copy()
    f += scene.neuron_images.T @ soma.mean(axis=0).astype(np.float64)
    f += scene.dendrite_images.T @ dend.mean(axis=0).astype(np.float64)
    f += activity.bg_temporal.mean(axis=1) @ scene.bg_images.astype(np.float64)
    f *= scene.transmission * scene.vignette * float(activity.bleach.mean())
    return f + scene.dark_counts


def render_movie(
    pop: Population,
    scene: Scene,
    activity: Activity,
    rng: np.random.Generator,
    *,
    block_frames: int = 500,
) -> Iterator[np.ndarray]:
    """Render the movie block by block.

    Parameters
    ----------
    pop, scene, activity
        The animal's population, the session's spatial components and its activity.
    rng
        Random generator of the camera noise.
    block_frames
        Frames per block (memory: about ``block_frames * n_pixels * 12`` bytes).

    Yields
    ------
    numpy.ndarray
        Consecutive blocks of frames, ``(n, height, width)`` uint8.
    """
    h, w = scene.height, scene.width
    n_frames = activity.dff.shape[1]
    trans = scene.transmission.astype(np.float32)
    # blood vessels darken everything in the tissue: fold them into the components
    dense = (scene.neuron_images.shape[0] + scene.dendrite_images.shape[0]) * scene.n_pixels <= 40_000_000
    if dense:  # dense products are faster than sparse ones up to a size
        na = scene.neuron_images.toarray().astype(np.float32) * trans
        da = scene.dendrite_images.toarray().astype(np.float32) * trans
    else:
        tdiag = sp.diags(trans)
        nt_a = (scene.neuron_images @ tdiag).T.tocsr()
        dt_a = (scene.dendrite_images @ tdiag).T.tocsr()
    bg_a = scene.bg_images * trans
    static = scene.static * trans
    vign = scene.vignette.reshape(h, w)
    read_var = np.float32(scene.read_sd_counts**2)
    gain = np.float32(scene.gain_counts)
    for f0 in range(0, n_frames, block_frames):
        sl = slice(f0, min(n_frames, f0 + block_frames))
        soma, dend = neuron_intensity(pop, activity, sl)
        nb = soma.shape[0]
        if dense:
            tissue = soma @ na
            tissue += dend @ da
        else:
            tissue = np.asarray(nt_a @ soma.T, dtype=np.float32)
            tissue += np.asarray(dt_a @ dend.T, dtype=np.float32)
            tissue = np.ascontiguousarray(tissue.T)
        tissue += activity.bg_temporal[:, sl].T.astype(np.float32) @ bg_a
        tissue += static
        tissue = tissue.reshape(nb, h, w)
        frames = shift_frames(tissue, activity.motion_px[sl], activity.bleach[sl])
        del tissue
        frames *= vign
        frames += np.float32(scene.dark_counts)
        # shot noise (normal approximation of Poisson, variance gain * F) + read noise
        sd = frames * gain
        sd += read_var
        np.sqrt(sd, out=sd)
        sd *= rng.standard_normal(frames.shape, dtype=np.float32)
        frames += sd
        del sd
        frames += np.float32(0.5)  # so that truncation below rounds to nearest
        np.clip(frames, 0.0, 255.0, out=frames)
        yield frames.astype(np.uint8)


def shift_frames(tissue: np.ndarray, shifts: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Rigidly shift each frame by (dy, dx) px with bilinear interpolation and scale it.

    Same result as ``scipy.ndimage.shift(frame, (dy, dx), order=1, mode="nearest")``
    times ``gains[i]``, but on an edge-padded block, which is several times faster.

    Parameters
    ----------
    tissue
        Frames ``(n, height, width)`` float32.
    shifts
        ``(n, 2)`` shifts (dy, dx) (px); content moves by +shift.
    gains
        ``(n,)`` multipliers (photobleaching).

    Returns
    -------
    numpy.ndarray
        Shifted, scaled frames ``(n, height, width)`` float32 (a new array).
    """
    n, h, w = tissue.shape
    if n == 0:
        return tissue.copy()
    if not np.any(shifts):
        return tissue * gains.astype(np.float32)[:, None, None]
    p = int(np.ceil(np.abs(shifts).max())) + 2
    padded = np.pad(tissue, ((0, 0), (p, p), (p, p)), mode="edge")
    out = np.empty_like(tissue)
    iy_all = np.floor(shifts[:, 0]).astype(int)
    ix_all = np.floor(shifts[:, 1]).astype(int)
    fy_all = shifts[:, 0] - iy_all
    fx_all = shifts[:, 1] - ix_all
    tmp = np.empty((h, w), dtype=np.float32)
    for i in range(n):
        iy, ix, fy, fx, g = iy_all[i], ix_all[i], fy_all[i], fx_all[i], float(gains[i])
        src = padded[i]
        r0, c0 = p - iy, p - ix  # S(iy, ix) starts here; S(iy+1, .) one row up
        o = out[i]
        np.multiply(src[r0 : r0 + h, c0 : c0 + w], np.float32((1 - fy) * (1 - fx) * g), out=o)
        if fy:
            np.multiply(src[r0 - 1 : r0 - 1 + h, c0 : c0 + w], np.float32(fy * (1 - fx) * g), out=tmp)
            o += tmp
        if fx:
            np.multiply(src[r0 : r0 + h, c0 - 1 : c0 - 1 + w], np.float32((1 - fy) * fx * g), out=tmp)
            o += tmp
        if fy and fx:
            np.multiply(src[r0 - 1 : r0 - 1 + h, c0 - 1 : c0 - 1 + w], np.float32(fy * fx * g), out=tmp)
            o += tmp
    return out


class ProjectionStats:
    """Streaming summary images of a movie: mean, max, local correlation and PNR.

    The correlation image follows CNMF-E's idea: each frame is spatially high-passed
    (minus a ``box_px`` box average), then the temporal correlation of each pixel with its 8
    neighbours is averaged. PNR is (max - mean) / SD of the high-passed movie. Both use
    the movie averaged over pairs of frames.

    Parameters
    ----------
    height, width
        Frame size (px).
    box_px
        Side (px) of the box average subtracted by the high-pass (about a cell diameter).
    """

    def __init__(self, height: int, width: int, box_px: int = 9) -> None:
        self.h, self.w = height, width
        self.box_px = int(box_px)
        self.n = 0
        self.n_raw = 0
        self._carry: np.ndarray | None = None
        self.s1 = np.zeros((height, width))
        self.s2 = np.zeros((height, width))
        self.raw_sum = np.zeros((height, width))
        self.raw_max = np.zeros((height, width))
        self.hmax = np.full((height, width), -np.inf)
        # products with the right, down, down-right and down-left neighbour
        self.sxy = [np.zeros((height, width)) for _ in range(4)]

    def update(self, block: np.ndarray) -> None:
        """Add a block of frames ``(n, height, width)``.

        The correlation image and PNR are computed on pairs of frames averaged
        (calcium transients last many frames, and this halves the cost).
        """
        x = block.astype(np.float32)
        self.raw_sum += x.sum(axis=0, dtype=np.float64)
        self.n_raw += x.shape[0]
        np.maximum(self.raw_max, x.max(axis=0), out=self.raw_max)
        if self._carry is not None:
            x = np.concatenate([self._carry, x])
            self._carry = None
        if x.shape[0] % 2:
            self._carry = x[-1:].copy()
            x = x[:-1]
        if x.shape[0] == 0:
            return
        x = 0.5 * (x[0::2] + x[1::2])
        hp = x - ndimage.uniform_filter(x, size=(1, self.box_px, self.box_px), mode="nearest")
        self.n += hp.shape[0]
        self.s1 += hp.sum(axis=0, dtype=np.float64)
        self.s2 += np.einsum("tij,tij->ij", hp, hp, dtype=np.float64)
        np.maximum(self.hmax, hp.max(axis=0), out=self.hmax)
        self.sxy[0][:, :-1] += np.einsum("tij,tij->ij", hp[:, :, :-1], hp[:, :, 1:], dtype=np.float64)
        self.sxy[1][:-1, :] += np.einsum("tij,tij->ij", hp[:, :-1, :], hp[:, 1:, :], dtype=np.float64)
        self.sxy[2][:-1, :-1] += np.einsum("tij,tij->ij", hp[:, :-1, :-1], hp[:, 1:, 1:], dtype=np.float64)
        self.sxy[3][:-1, 1:] += np.einsum("tij,tij->ij", hp[:, :-1, 1:], hp[:, 1:, :-1], dtype=np.float64)

    def results(self) -> dict[str, np.ndarray]:
        """Return ``mean``, ``max``, ``Cn`` and ``PNR`` images ``(height, width)`` float64."""
        n = max(self.n, 1)
        mu = self.s1 / n
        var = np.maximum(self.s2 / n - mu**2, 1e-12)
        sd = np.sqrt(var)
        acc = np.zeros((self.h, self.w))
        cnt = np.zeros((self.h, self.w))

        def corr(sxy: np.ndarray, a: tuple[slice, slice], b: tuple[slice, slice]) -> np.ndarray:
            return (sxy[a] / n - mu[a] * mu[b]) / (sd[a] * sd[b])

        pairs = [
            ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
            ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
            ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
            ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
        ]
        for sxy, (a, b) in zip(self.sxy, pairs, strict=True):
            c = corr(sxy, a, b)
            acc[a] += c
            cnt[a] += 1
            acc[b] += c
            cnt[b] += 1
        cn = acc / np.maximum(cnt, 1)
        return {
            "mean": self.raw_sum / max(self.n_raw, 1),
            "max": self.raw_max,
            "Cn": cn,
            "PNR": (self.hmax - mu) / sd,
        }
