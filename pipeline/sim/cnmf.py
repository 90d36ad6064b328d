"""A seeded CNMF-style factorisation of the simulated movie (CNMF-E in miniature).

On the reduced, motion-corrected movie ``Y`` (:mod:`~cellsift.pipeline.sim.cnmf_movie`):

1. **Background.** A smooth local background ``B = G * (Y - A C)`` (``G``: a Gaussian of
   one cell diameter), so the factorisation works on the high-passed, mean-centred
   movie ``L Y`` and the target of the footprints and traces is ``L Y + G(A) C``.
2. **Seeding** as CNMF-E's greedy initialisation: the high-passed movie filtered with a
   cell-sized Gaussian gives a peak-to-noise image (PNR) and a local correlation
   image (Cn, of the movie thresholded at 3 noise SDs); seeds are taken greedily at the
   largest ``Cn x PNR`` with ``Cn >= min_corr`` and ``PNR >= min_pnr``. A seed's
   footprint is the non-negative regression of its neighbourhood on its trace,
   restricted to correlated pixels connected to it; its rank-1 part is then removed
   from the movie and the images are recomputed around it.
3. **HALS** updates of traces and (locally supported, non-negative) footprints.
4. **Merging** of components whose footprints touch and whose traces correlate above
   ``merge_thr`` (a threshold, so not every duplicate goes), then a last HALS round;
   components left with a tiny footprint are deleted.

Everything is deterministic (no random draws); the thresholds, not chance, decide what
the extraction gets wrong — duplicates, merges, neighbour residuals, background and
noise components, as a real extraction does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from cellsift.pipeline.sim.cnmf_movie import SmoothOperator
from cellsift.pipeline.sim.geometry import SIGMA_PER_DIAMETER

__all__ = ["CnmfParams", "factorise"]

_NOISE_FROM_MEAN_ABS_DIFF = math.sqrt(math.pi) / 2.0  # mean|x_t - x_t-1| -> SD of x (Gaussian)


@dataclass(frozen=True)
class CnmfParams:
    """Settings of the factorisation (sizes in reduced pixels).

    Attributes
    ----------
    diameter
        Median soma diameter (px).
    min_corr, min_pnr
        Seeding thresholds on the correlation and peak-to-noise images.
    max_components
        At most this many seeds.
    merge_thr
        Trace correlation above which touching components are merged.
    n_iter
        HALS rounds before and after merging.
    border
        Pixels at the edge of the frame never seeded (what motion correction shifts
        in from outside the field of view).
    """

    diameter: float
    min_corr: float = 0.75
    min_pnr: float = 9.0
    max_components: int = 400
    merge_thr: float = 0.7
    n_iter: int = 3
    border: int = 0

    @property
    def radius(self) -> int:
        """Half-width (px) of a seed's neighbourhood."""
        return max(3, int(math.ceil(1.1 * self.diameter)))

    @property
    def sigma_cell(self) -> float:
        """SD (px) of the cell-sized Gaussian of the seeding filter."""
        return max(0.5, self.diameter * SIGMA_PER_DIAMETER)

    @property
    def sigma_bg(self) -> float:
        """SD (px) of the background Gaussian ``G``."""
        return self.diameter


@lru_cache(maxsize=32)
def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """The ``n x n`` matrix of :func:`scipy.ndimage.gaussian_filter1d` (reflect, 3 SDs), float32."""
    eye = np.eye(n, dtype=np.float64)
    return ndimage.gaussian_filter1d(eye, sigma, axis=0, mode="reflect", truncate=3.0).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (``sigma`` px) of each frame of ``x (T, h, w)``, as two matrix products."""
    t, h, w = x.shape
    mh, mw = _gauss_matrix(h, sigma), _gauss_matrix(w, sigma)
    y = np.ascontiguousarray(x, dtype=np.float32).reshape(t * h, w) @ mw.T
    y = y.reshape(t, h, w).transpose(0, 2, 1).reshape(t * w, h) @ mh.T
    return np.ascontiguousarray(y.reshape(t, w, h).transpose(0, 2, 1))


def _images_block(yhp: np.ndarray, prm: CnmfParams) -> tuple[np.ndarray, np.ndarray]:
    """``(Cn, PNR)`` of a high-passed movie block ``(T, h, w)`` (see the module notes)."""
    yf = _blur(yhp, prm.sigma_cell)  # zero-mean: the movie is mean-centred
    sd = _NOISE_FROM_MEAN_ABS_DIFF * np.abs(np.diff(yf, axis=0)).mean(axis=0) / math.sqrt(2.0) + 1e-6
    pnr = yf.max(axis=0) / sd
    z = np.where(yf > 3.0 * sd, yf, np.float32(0.0))
    del yf
    z -= z.mean(axis=0)
    z /= np.sqrt((z**2).sum(axis=0)) + np.float32(1e-9)
    h, w = z.shape[1:]
    acc = np.zeros((h, w))
    cnt = np.zeros((h, w))
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ya, yb = slice(0, h - dy), slice(dy, h)
        xa, xb = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        c = np.einsum("tij,tij->ij", z[:, ya, xa], z[:, yb, xb])
        acc[ya, xa] += c
        cnt[ya, xa] += 1
        acc[yb, xb] += c
        cnt[yb, xb] += 1
    return acc / np.maximum(cnt, 1), pnr


def _images(yhp: np.ndarray, prm: CnmfParams, rows: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """``(Cn, PNR)`` of a high-passed movie, computed in strips of ``rows`` rows (bounded memory)."""
    h = yhp.shape[1]
    m = int(math.ceil(3 * prm.sigma_cell)) + 2
    cn = np.zeros(yhp.shape[1:])
    pnr = np.zeros(yhp.shape[1:])
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(0, r0 - m), min(h, r1 + m)
        c, p = _images_block(yhp[:, lo:hi], prm)
        cn[r0:r1] = c[r0 - lo : r1 - lo]
        pnr[r0:r1] = p[r0 - lo : r1 - lo]
    return cn, pnr


def _region(cy: int, cx: int, r: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The square of half-width ``r`` around ``(cy, cx)``, clipped to ``shape``."""
    return slice(max(0, cy - r), min(shape[0], cy + r + 1)), slice(max(0, cx - r), min(shape[1], cx + r + 1))


def _seed_component(
    yhp: np.ndarray, cy: int, cx: int, prm: CnmfParams
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """Footprint (on the neighbourhood) and trace of a seed at ``(cy, cx)``, or None."""
    shape = yhp.shape[1:]
    sl = _region(cy, cx, prm.radius, shape)
    patch = yhp[:, sl[0], sl[1]]
    t, ph, pw = patch.shape
    iy, ix = cy - sl[0].start, cx - sl[1].start
    c0 = _blur(patch, prm.sigma_cell)[:, iy, ix].astype(np.float64)
    c0 = c0 - np.median(c0)
    if not np.any(c0):
        return None
    flat = patch.reshape(t, -1).astype(np.float64)
    a = flat.T @ c0 / (c0 @ c0)
    fc = flat - flat.mean(axis=0)
    corr = (fc.T @ (c0 - c0.mean())) / (np.linalg.norm(fc, axis=0) * np.linalg.norm(c0 - c0.mean()) + 1e-12)
    keep = (corr > 0.3) & (a > 0)
    lab, _ = ndimage.label(keep.reshape(ph, pw))
    if lab[iy, ix] == 0:
        return None
    mask = (lab == lab[iy, ix]).ravel()
    a = np.where(mask, a, 0.0)
    if (a > 0).sum() < 3:
        return None
    c = flat @ a / (a @ a)
    return a.reshape(ph, pw), c, sl


def _greedy_init(
    yhp: np.ndarray, prm: CnmfParams, blocked: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Greedy seeding (CNMF-E-like) of one patch; never at the ``blocked`` pixels.

    Each component's rank-1 part is removed from ``yhp`` while seeding and added back
    at the end (``yhp`` is unchanged, up to rounding). Returns footprints (images of
    the patch) and traces.
    """
    shape = yhp.shape[1:]
    cn, pnr = _images(yhp, prm)
    blocked = blocked.copy()
    footprints: list[np.ndarray] = []
    traces: list[np.ndarray] = []
    r_block = max(1, int(round(0.35 * prm.diameter)))
    margin = prm.radius + int(math.ceil(3 * prm.sigma_cell)) + 1
    while len(footprints) < prm.max_components:
        score = np.where((cn >= prm.min_corr) & (pnr >= prm.min_pnr) & ~blocked, cn * pnr, 0.0)
        k = int(np.argmax(score))
        if score.flat[k] <= 0:
            break
        cy, cx = divmod(k, shape[1])
        bs = _region(cy, cx, r_block, shape)
        blocked[bs] = True
        comp = _seed_component(yhp, cy, cx, prm)
        if comp is None:
            continue
        a_patch, c, sl = comp
        yhp[:, sl[0], sl[1]] -= (c[:, None, None] * a_patch[None]).astype(np.float32)
        full = np.zeros(shape)
        full[sl] = a_patch
        footprints.append(full)
        traces.append(c)
        # recompute the images around the seed on the updated movie
        big = _region(cy, cx, margin, shape)
        cn_r, pnr_r = _images_block(yhp[:, big[0], big[1]], prm)
        inner = _region(cy, cx, prm.radius, shape)
        oy, ox = inner[0].start - big[0].start, inner[1].start - big[1].start
        ny, nx = inner[0].stop - inner[0].start, inner[1].stop - inner[1].start
        cn[inner] = cn_r[oy : oy + ny, ox : ox + nx]
        pnr[inner] = pnr_r[oy : oy + ny, ox : ox + nx]
    for a_full, c in zip(footprints, traces, strict=True):
        ys, xs = np.nonzero(a_full)
        sl = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
        yhp[:, sl[0], sl[1]] += (c[:, None, None] * a_full[sl][None]).astype(np.float32)
    return footprints, traces


def _patches(shape: tuple[int, int], prm: CnmfParams) -> list[tuple[slice, slice]]:
    """Overlapping patches (about 5.5 cell diameters, overlapping by one) covering the frame."""
    size = max(40, int(round(5.5 * prm.diameter)))
    overlap = max(4, int(round(prm.diameter)))
    axes = []
    for n in shape:
        if n <= size:
            axes.append([slice(0, n)])
            continue
        k = math.ceil((n - overlap) / (size - overlap))
        starts = np.round(np.linspace(0, n - size, k)).astype(int)
        axes.append([slice(int(a), int(a) + size) for a in starts])
    return [(ys, xs) for ys in axes[0] for xs in axes[1]]


def _init_patches(yhp: np.ndarray, prm: CnmfParams) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Greedy seeding patch by patch, as CNMF-E does (cells in the overlaps may be found twice)."""
    shape = yhp.shape[1:]
    edge = np.ones(shape, dtype=bool)
    b = prm.border
    edge[b : shape[0] - b, b : shape[1] - b] = False
    footprints: list[np.ndarray] = []
    traces: list[np.ndarray] = []
    for ys, xs in _patches(shape, prm):
        fps_, trs = _greedy_init(yhp[:, ys, xs], prm, edge[ys, xs])
        for a in fps_:
            full = np.zeros(shape)
            full[ys, xs] = a
            footprints.append(full)
        traces += trs
    return footprints, traces


def _support_masks(a: np.ndarray, prm: CnmfParams) -> np.ndarray:
    """Where each footprint may grow: its support dilated by a quarter diameter."""
    it = max(1, int(round(0.25 * prm.diameter)))
    return np.stack([ndimage.binary_dilation(x > 0, iterations=it) for x in a]) if len(a) else a > 0


def _hals(
    yhp: np.ndarray, a: np.ndarray, c: np.ndarray, prm: CnmfParams, op: SmoothOperator, n_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """HALS updates of traces ``c (K, T)`` and footprints ``a (K, h, w)`` on ``L Y + G(A) C``.

    Footprints stay non-negative and within their (dilated) initial supports.
    """
    k = a.shape[0]
    if k == 0:
        return a, c
    t = yhp.shape[0]
    y2 = yhp.reshape(t, -1)
    idx = [np.flatnonzero(m) for m in _support_masks(a, prm).reshape(k, -1)]
    af = a.reshape(k, -1).copy()
    for _ in range(n_iter):
        ga = op.apply(af.reshape(a.shape)).reshape(k, -1).astype(np.float64)
        # traces: numerator A (LY + G(A) C)^T, Gram A A^T (dense products: BLAS beats gathers)
        u = (af.astype(np.float32) @ y2.T).astype(np.float64) + (af @ ga.T) @ c
        v = af @ af.T
        for j in range(k):
            if v[j, j] > 0:
                c[j] += (u[j] - v[j] @ c) / v[j, j]
        # footprints: (LY + G(A) C)^T C^T and C C^T, each on its support
        q = c @ c.T
        w = (y2.T @ c.T.astype(np.float32)).astype(np.float64) + ga.T @ q
        for j, ix in enumerate(idx):
            if q[j, j] > 0:
                af[j, ix] = np.maximum(0.0, af[j, ix] + (w[ix, j] - af[:, ix].T @ q[:, j]) / q[j, j])
        norms = np.linalg.norm(af, axis=1)
        ok = norms > 0
        c[ok] *= norms[ok, None]
        af[ok] /= norms[ok, None]
    return af.reshape(a.shape), c


def _merge(a: np.ndarray, c: np.ndarray, prm: CnmfParams) -> tuple[np.ndarray, np.ndarray]:
    """Merge groups of touching components whose traces correlate above ``merge_thr``."""
    k = a.shape[0]
    if k < 2:
        return a, c
    af = a.reshape(k, -1)
    sup = (af > 0).astype(np.float32)
    touch = (sup @ sup.T) > 0
    # CNMF-E compares denoised traces: here each trace above 2.5 noise SDs
    sd = _NOISE_FROM_MEAN_ABS_DIFF * np.abs(np.diff(c, axis=1)).mean(axis=1) / math.sqrt(2.0)
    den = np.maximum(c - np.median(c, axis=1, keepdims=True) - 2.5 * sd[:, None], 0.0)
    den[~den.any(axis=1), 0] = 1e-9  # a flat trace correlates with nothing
    link = touch & (np.corrcoef(den) > prm.merge_thr)
    np.fill_diagonal(link, False)
    n_grp, grp = _groups(link)
    if n_grp == k:
        return a, c
    new_a, new_c = [], []
    for g in range(n_grp):
        members = np.flatnonzero(grp == g)
        if members.size == 1:
            new_a.append(af[members[0]])
            new_c.append(c[members[0]])
            continue
        # rank-1 of the group's reconstruction: trace weighted by footprint mass
        mass = af[members].sum(axis=1)
        cm = (mass[:, None] * c[members]).sum(axis=0) / mass.sum()
        px = np.flatnonzero(sup[members].any(axis=0))
        am = np.zeros(af.shape[1])
        am[px] = np.maximum(0.0, af[members][:, px].T @ (c[members] @ cm) / (cm @ cm + 1e-12))
        nrm = float(np.linalg.norm(am))
        new_a.append(am / max(nrm, 1e-12))
        new_c.append(cm * nrm)
    return np.stack(new_a).reshape((n_grp, *a.shape[1:])), np.stack(new_c)


def _groups(link: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of a boolean adjacency matrix, labelled in order of first member."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, lab = connected_components(csr_matrix(link), directed=False)
    # relabel by first occurrence so the output order follows the seeding order
    order = {int(x): i for i, x in enumerate(dict.fromkeys(lab.tolist()))}
    return int(n), np.array([order[int(x)] for x in lab])


def factorise(movie: np.ndarray, prm: CnmfParams) -> tuple[np.ndarray, np.ndarray]:
    """Footprints and traces of a reduced movie (see the module notes).

    Parameters
    ----------
    movie
        Reduced, motion-corrected movie ``(T, h, w)`` float32 (overwritten: it becomes
        the high-passed residual).
    prm
        The settings.

    Returns
    -------
    tuple of numpy.ndarray
        Footprints ``(K, h, w)`` (unit L2 norm, non-negative) and their traces
        ``(K, T)`` (zero-mean, movie units), in seeding order.
    """
    op = SmoothOperator(movie.shape[1], movie.shape[2], prm.sigma_bg)
    yhp = movie
    for f0 in range(0, yhp.shape[0], 256):  # in place, block by block
        yhp[f0 : f0 + 256] -= op.apply(yhp[f0 : f0 + 256])
    yhp -= yhp.mean(axis=0)
    fps_, trs = _init_patches(yhp, prm)
    if not fps_:
        return np.zeros((0, *movie.shape[1:])), np.zeros((0, movie.shape[0]))
    a = np.stack(fps_)
    c = np.stack(trs)
    norms = np.linalg.norm(a.reshape(len(a), -1), axis=1)
    a /= norms[:, None, None]
    c *= norms[:, None]
    a, c = _hals(yhp, a, c, prm, op, prm.n_iter)
    a, c = _merge(a, c, prm)
    a, c = _hals(yhp, a, c, prm, op, prm.n_iter)
    area = (a > 0.2 * a.reshape(len(a), -1).max(axis=1)[:, None, None]).sum(axis=(1, 2))
    keep = area >= max(3.0, 0.1 * math.pi * (prm.diameter / 2) ** 2)
    return a[keep], c[keep]
