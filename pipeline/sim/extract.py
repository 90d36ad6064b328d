"""A CNMF-E-like extraction of the simulated session: real cells plus artifacts.

The simulator does not run CNMF-E; it writes what CNMF-E typically returns for such a
movie. Every unit ``i`` has a footprint ``a_i`` (unit L2 norm) and a raw trace

.. math::

    C^{raw}_i(t) = \\sum_j m_{ij}\\, \\sigma_j(t) + \\rho^{bg}_i\\, a_i \\cdot B(t)
                   - \\rho^{mot}_i\\, (a_i \\cdot \\nabla \\bar F) \\cdot d(t) + \\epsilon_i(t)

where :math:`\\sigma_j(t) = \\lVert f_j \\rVert\\, b_j\\, \\mathrm{bleach}(t)\\, \\Delta F/F_j(t)`
is neuron ``j``'s signal as its own unit would carry it, :math:`B(t)` the background
fluctuation (blobs, neuropil, bleaching) that CNMF-E's ring model leaves behind,
:math:`d(t)` the brain motion left after motion correction and
:math:`\\epsilon_i` white noise with the SD the camera noise gives under ``a_i``.
``C`` and ``S`` are then estimated from ``C_raw`` by a thresholded, non-negative
matching-pursuit deconvolution with the unit's AR(2) calcium kernel, so ``C`` holds
false small events on noise and misses weak real ones, as a real deconvolution does.

Artifact kinds (label ``bad``), each with its ``reason``:

``no_transients``
    ``silent_cell`` (a real soma that is silent this session) or ``ghost`` (a static
    bright spot of tissue); the trace is noise, background residue and motion blips.
``irregular_shape``
    ``dendrite`` (a real, active dendrite: a thin streak), ``fragment`` (a tiny piece
    of a real cell), ``large_blob`` (an active out-of-focus neuron: big and diffuse)
    and ``ragged`` (a multi-lobed patch between cells with their weak signals).
``borrowed_fluorescence``
    A soma-like footprint touching an active cell where the movie has no cell; its
    trace is a scaled copy of the neighbour's signal plus its own noise.
``overlap``
    A near-duplicate (shifted 1-3 px, > 50 % overlap) of an active cell sharing its
    signal.
``background``
    A large diffuse footprint on the background whose trace is the slow background
    fluctuation (with the neuropil's population-activity bumps).
"""

from __future__ import annotations

import logging
import math
from dataclasses import InitVar, dataclass, field
from typing import Final

import numpy as np
import scipy.sparse as sp
from scipy import fft as sfft
from scipy import ndimage

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.movie import Scene, expected_frame
from cellsift.pipeline.sim.population import SUPPORT_FRAC, Blob, Population, blob_image

__all__ = [
    "ARTIFACT_REASONS",
    "REASON_SHARE",
    "Unit",
    "Extraction",
    "extract_units",
    "deconvolve",
]

log = logging.getLogger(__name__)

ARTIFACT_REASONS: Final = (
    "no_transients",
    "irregular_shape",
    "borrowed_fluorescence",
    "overlap",
    "background",
)

#: Expected share of each artifact reason among the artifacts.
REASON_SHARE: Final = {
    "no_transients": 0.24,
    "irregular_shape": 0.24,
    "borrowed_fluorescence": 0.2,
    "overlap": 0.14,
    "background": 0.18,
}


@dataclass
class Unit:
    """One extracted component, before ids are assigned.

    Attributes
    ----------
    kind
        ``"cell"`` for a real cell, else the artifact subtype (see module doc).
    label
        ``"good"`` or ``"bad"``.
    reason
        Artifact reason (one of :data:`ARTIFACT_REASONS`), ``""`` for good cells.
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


def _footprint_matrix(units: list[Unit], n_pixels: int) -> sp.csr_matrix:
    """Footprints as sparse rows ``(K, n_pixels)``, row-major pixels."""
    indptr = np.concatenate([[0], np.cumsum([u.pixels.size for u in units])]).astype(np.int64)
    indices = np.concatenate([u.pixels for u in units]) if units else np.zeros(0, np.int64)
    data = np.concatenate([u.values for u in units]) if units else np.zeros(0)
    return sp.csr_matrix((data, indices, indptr), shape=(len(units), n_pixels))


@dataclass
class Extraction:
    """CNMF-E-like output of one session, units in output order.

    Attributes
    ----------
    units
        The units.
    ids
        CNMF-E ids (1-based, increasing, with gaps), ``(K,)`` int64.
    A
        Footprints, ``(height * width, K)`` CSC, pixels in MATLAB column-major order.
    C, C_raw, S
        Denoised trace, raw trace and deconvolved spikes, ``(K, n_frames)`` float64.
    """

    units: list[Unit]
    ids: np.ndarray
    A: sp.csc_matrix
    C: np.ndarray
    C_raw: np.ndarray
    S: np.ndarray


# --------------------------------------------------------------------------- helpers


def _support(img: np.ndarray) -> np.ndarray:
    return img > SUPPORT_FRAC * max(float(img.max()), 1e-12)


def _overlap_frac(a: np.ndarray, b: np.ndarray) -> float:
    """Shared support pixels as a fraction of the smaller support."""
    sa, sb = _support(a), _support(b)
    n = min(int(sa.sum()), int(sb.sum()))
    return float((sa & sb).sum()) / n if n else 0.0


def _perturb(img: np.ndarray, rng: np.random.Generator, shape: tuple[int, int], *, noise: float = 0.08) -> np.ndarray:
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
    out = out.ravel()
    return out / (np.linalg.norm(out) + 1e-12)


def _render_blob(blob: Blob, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w))
    y0, x0, patch = blob_image(blob, h, w)
    if patch.size:
        img[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    return img.ravel()


def _kernel_matrix(
    taus: list[tuple[float, float]], fps: float, n_frames: int, nfft: int
) -> tuple[np.ndarray, np.ndarray]:
    """Peak-normalised calcium kernels ``(K, L)`` and their rfft ``(K, nfft//2+1)``."""
    length = min(n_frames, max(8, int(max(t[1] for t in taus) * fps * 8)))
    k = np.arange(length)
    kern = np.empty((len(taus), length))
    for i, (tr, td) in enumerate(taus):
        d = math.exp(-1.0 / (td * fps))
        r = math.exp(-1.0 / (tr * fps))
        kern[i] = d ** (k + 0.5) - r ** (k + 0.5)
        kern[i] /= kern[i].max()
    return kern, sfft.rfft(kern, nfft, axis=1)


def deconvolve(
    c_raw: np.ndarray,
    taus: list[tuple[float, float]],
    *,
    fps: float,
    noise_sd: np.ndarray | None = None,
    threshold: float = 3.0,
    n_rounds: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative, thresholded matching-pursuit deconvolution.

    Each round correlates the residual with the unit's kernel (a matched filter),
    takes every local maximum above ``threshold`` noise SDs as an event and adds most
    of its least-squares amplitude to ``S``; ``C`` is ``S`` convolved with the kernel.

    Parameters
    ----------
    c_raw
        Raw traces ``(K, n_frames)``, baseline near 0.
    taus
        ``(tau_rise_s, tau_decay_s)`` per unit.
    fps
        Frame rate (Hz).
    noise_sd
        Noise SD per unit; default: estimated from frame-to-frame differences.
    threshold
        Detection threshold of the matched filter (noise SDs).
    n_rounds
        Matching-pursuit rounds.

    Returns
    -------
    tuple of numpy.ndarray
        ``(C, S)``, each ``(K, n_frames)`` float64, non-negative.
    """
    c_raw = np.atleast_2d(np.asarray(c_raw, dtype=np.float64))
    n_units, n_frames = c_raw.shape
    if len(taus) != n_units:
        raise ValueError(f"need one (tau_rise_s, tau_decay_s) per unit: {len(taus)} for {n_units} units")
    if n_units == 0:
        return np.zeros_like(c_raw), np.zeros_like(c_raw)
    if noise_sd is None:
        noise_sd = 1.4826 * np.median(np.abs(np.diff(c_raw, axis=1)), axis=1) / math.sqrt(2.0)
    noise_sd = np.maximum(np.asarray(noise_sd, dtype=np.float64), 1e-9)
    # bound the FFT work arrays (~ 6 x units x 2 n_frames complex) for long sessions
    chunk = max(1, int(4_000_000 // max(n_frames, 1)))
    if n_units > chunk:
        c = np.empty_like(c_raw)
        s = np.empty_like(c_raw)
        for u0 in range(0, n_units, chunk):
            u1 = min(n_units, u0 + chunk)
            c[u0:u1], s[u0:u1] = deconvolve(
                c_raw[u0:u1], taus[u0:u1], fps=fps, noise_sd=noise_sd[u0:u1], threshold=threshold, n_rounds=n_rounds
            )
        return c, s
    nfft = sfft.next_fast_len(2 * n_frames)
    kern, kf = _kernel_matrix(taus, fps, n_frames, nfft)
    knorm2 = (kern**2).sum(axis=1)
    thr = threshold * noise_sd * np.sqrt(knorm2)

    def conv(s: np.ndarray) -> np.ndarray:
        return sfft.irfft(sfft.rfft(s, nfft, axis=1) * kf, nfft, axis=1)[:, :n_frames]

    def corr(x: np.ndarray) -> np.ndarray:
        return sfft.irfft(sfft.rfft(x, nfft, axis=1) * np.conj(kf), nfft, axis=1)[:, :n_frames]

    s = np.zeros_like(c_raw)
    res = c_raw.copy()
    for _ in range(n_rounds):
        y = corr(res)
        left = np.concatenate([np.full((n_units, 1), -np.inf), y[:, :-1]], axis=1)
        right = np.concatenate([y[:, 1:], np.full((n_units, 1), -np.inf)], axis=1)
        pk = (y > thr[:, None]) & (y >= left) & (y > right)
        if not pk.any():
            break
        s[pk] += 0.8 * (y / knorm2[:, None])[pk]
        res = c_raw - conv(s)
    c = np.maximum(conv(s), 0.0)
    s[s < 1e-9] = 0.0
    return c, s


# --------------------------------------------------------------------------- extraction


def _choose_counts(rng: np.random.Generator, n_art: int) -> dict[str, int]:
    """Artifacts per reason: largest remainder, at least one of each when possible."""
    reasons = list(REASON_SHARE)
    share = np.array([REASON_SHARE[r] for r in reasons])
    counts = np.zeros(len(reasons), dtype=int)
    if n_art >= len(reasons):
        counts += 1
    rest = n_art - counts.sum()
    if rest > 0:
        counts += rng.multinomial(rest, share / share.sum())
    return dict(zip(reasons, counts.tolist()))


def extract_units(
    pop: Population,
    scene: Scene,
    activity: Activity,
    rng: np.random.Generator,
    *,
    fps: float,
    artifact_fraction: float,
) -> Extraction:
    """Build the CNMF-E-like extraction of one session.

    Parameters
    ----------
    pop
        The animal's population.
    scene
        The session's spatial components.
    activity
        The session's activity.
    rng
        Random generator of the extraction.
    fps
        Frame rate (Hz).
    artifact_fraction
        Target fraction of artifacts among all units, in [0, 0.9].

    Returns
    -------
    Extraction
        Units in a random (CNMF-E-like) order with their traces.
    """
    h, w = scene.height, scene.width
    shape = (h, w)
    n_px = h * w
    n_neurons = len(pop.neurons)
    n_frames = activity.dff.shape[1]
    tv = (scene.transmission * scene.vignette).astype(np.float64)
    eff = scene.neuron_images.multiply(tv[None, :]).tocsr()  # effective soma images
    deff = scene.dendrite_images.multiply(tv[None, :]).tocsr()
    eff_norm = np.sqrt(np.asarray(eff.multiply(eff).sum(axis=1)).ravel())
    deff_norm = np.sqrt(np.asarray(deff.multiply(deff).sum(axis=1)).ravel())
    bright = np.array([nr.brightness for nr in pop.neurons])
    dbright = np.array([nr.dendrite_brightness for nr in pop.neurons])
    bleach = activity.bleach
    sig = (eff_norm * bright)[:, None] * bleach[None, :] * activity.dff.astype(np.float64)
    dsig = (deff_norm * dbright)[:, None] * bleach[None, :] * 0.8 * activity.dff.astype(np.float64)

    def eff_img(j: int) -> np.ndarray:
        return eff[j].toarray().ravel()

    n_spk = activity.spikes.sum(axis=1)
    in_focus = np.arange(pop.n_in_focus)
    active = [int(j) for j in in_focus if n_spk[j] > 0 and eff_norm[j] > 0]
    silent = [int(j) for j in in_focus if n_spk[j] == 0 and eff_norm[j] > 0]

    # CNMF-E misses some dim or nearly silent cells
    units: list[Unit] = []
    good_cells: list[int] = []
    for j in active:
        nr = pop.neurons[j]
        p_miss = 0.03 + (0.25 if nr.brightness < 6.0 else 0.0) + (0.15 if n_spk[j] < 3 else 0.0)
        if rng.random() < p_miss:
            continue
        good_cells.append(j)
    for j in good_cells:
        nr = pop.neurons[j]
        fp = _perturb(eff_img(j), rng, shape)
        mix = {j: float(rng.uniform(0.85, 1.1))}
        units.append(
            Unit(
                kind="cell", label="good", reason="", footprint=fp, mixing=mix,
                bg_weight=float(rng.uniform(0.03, 0.15)), motion_weight=float(rng.uniform(0.1, 0.4)),
                noise_factor=float(rng.uniform(1.0, 1.25)),
                tau_rise_s=nr.tau_rise_s * float(rng.uniform(0.85, 1.15)),
                tau_decay_s=nr.tau_decay_s * float(rng.uniform(0.85, 1.15)),
                true_cell=j, source_cell=j,
            )
        )

    f = min(max(artifact_fraction, 0.0), 0.9)
    n_art = int(round(len(good_cells) * f / (1.0 - f))) if f > 0 else 0
    counts = _choose_counts(rng, n_art)

    # brightest / most active cells are the usual victims of borrowing and duplication
    donors = sorted(good_cells, key=lambda j: -float(sig[j].max()))
    donors = donors[: max(3, int(0.7 * len(donors)))] if donors else []
    cy = np.array([nr.blob.cy + scene.fov_offset[0] for nr in pop.neurons])
    cx = np.array([nr.blob.cx + scene.fov_offset[1] for nr in pop.neurons])
    rad = np.array([nr.blob.diameter_px / 2.0 for nr in pop.neurons])

    def soma_blob(y: float, x: float, diameter: float) -> Blob:
        sigma = diameter / (2.0 * math.sqrt(2.0 * math.log(1.0 / SUPPORT_FRAC)))
        aspect = float(np.clip(1.0 + abs(rng.normal(0.0, 0.2)), 1.0, 1.9))
        return Blob(y, x, sigma * math.sqrt(aspect), sigma / math.sqrt(aspect),
                    float(rng.uniform(0, math.pi)), float(rng.uniform(0.05, 0.25)), int(rng.integers(0, 2**31 - 1)))

    def kernel_like(j: int | None) -> tuple[float, float]:
        if j is None:
            return float(rng.uniform(0.05, 0.1)), float(rng.uniform(0.4, 1.0))
        nr = pop.neurons[j]
        return nr.tau_rise_s * float(rng.uniform(0.85, 1.15)), nr.tau_decay_s * float(rng.uniform(0.85, 1.15))

    def crosstalk(fp: np.ndarray, scale: tuple[float, float], exclude: tuple[int, ...] = ()) -> dict[int, float]:
        """Neighbour signal picked up under ``fp`` (cosine overlap x random factor)."""
        proj = eff @ fp  # (n_neurons,)
        out: dict[int, float] = {}
        for j in np.nonzero(proj > 0)[0]:
            if int(j) in exclude or eff_norm[j] == 0:
                continue
            cos = float(proj[j] / eff_norm[j])
            if cos > 0.05:
                out[int(j)] = cos * float(rng.uniform(*scale))
        return out

    def pick(seq: list[int]) -> int | None:
        return int(seq[int(rng.integers(len(seq)))]) if seq else None

    arts: list[Unit] = []
    used_dup: set[int] = set()
    # ---- no_transients
    for _ in range(counts["no_transients"]):
        use_silent = silent and rng.random() < 0.55
        if use_silent:
            j = pick(silent)
            silent.remove(j)
            fp = _perturb(eff_img(j), rng, shape)
            kind, tc, src = "silent_cell", j, j
        elif pop.spots and rng.random() < 0.7:
            blob, _ = pop.spots[int(rng.integers(len(pop.spots)))]
            b2 = Blob(blob.cy + scene.fov_offset[0] + rng.normal(0, 0.5),
                      blob.cx + scene.fov_offset[1] + rng.normal(0, 0.5),
                      blob.sigma_major, blob.sigma_minor, blob.angle, blob.irregularity, blob.shape_seed)
            fp = _perturb(_render_blob(b2, h, w) * tv, rng, shape)
            kind, tc, src = "ghost", None, None
        else:
            y, x = rng.uniform(2, h - 3), rng.uniform(2, w - 3)
            fp = _perturb(_render_blob(soma_blob(y, x, rng.uniform(8, 14)), h, w) * tv, rng, shape)
            kind, tc, src = "ghost", None, None
        tr = kernel_like(src)
        arts.append(Unit(kind=kind, label="bad", reason="no_transients", footprint=fp,
                         mixing=crosstalk(fp, (0.05, 0.3)),
                         bg_weight=float(rng.uniform(0.03, 0.2)), motion_weight=float(rng.uniform(0.2, 0.8)),
                         noise_factor=float(rng.uniform(1.0, 1.3)), tau_rise_s=tr[0], tau_decay_s=tr[1],
                         true_cell=tc, source_cell=src))

    # ---- irregular_shape
    with_dend = [j for j in good_cells if pop.neurons[j].dendrite is not None and deff_norm[j] > 0]
    oof_active = [int(j) for j in range(pop.n_in_focus, n_neurons) if n_spk[j] > 0 and eff_norm[j] > 0]
    for _ in range(counts["irregular_shape"]):
        options = ["fragment", "ragged"]
        if with_dend:
            options += ["dendrite", "dendrite"]
        if oof_active:
            options += ["large_blob", "large_blob"]
        kind = options[int(rng.integers(len(options)))]
        if kind == "dendrite":
            j = pick(with_dend)
            with_dend.remove(j)
            fp = _perturb(deff[j].toarray().ravel(), rng, shape, noise=0.15)
            u = Unit(kind=kind, label="bad", reason="irregular_shape", footprint=fp,
                     dendrite_mixing={j: float(rng.uniform(0.6, 1.0))},
                     mixing=crosstalk(fp, (0.2, 0.6)), source_cell=j)
        elif kind == "large_blob":
            j = pick(oof_active)
            oof_active.remove(j)
            fp = _perturb(eff_img(j), rng, shape, noise=0.12)
            mix = crosstalk(fp, (0.2, 0.6), exclude=(j,))
            mix[j] = float(rng.uniform(0.7, 1.0))
            u = Unit(kind=kind, label="bad", reason="irregular_shape", footprint=fp, mixing=mix,
                     bg_weight=float(rng.uniform(0.1, 0.4)), true_cell=j, source_cell=j)
        elif kind == "fragment":
            j = pick(donors) if donors else None
            if j is None:
                y, x, r0 = rng.uniform(2, h - 3), rng.uniform(2, w - 3), 4.0
            else:
                ang = rng.uniform(0, 2 * math.pi)
                r0 = rad[j] * rng.uniform(0.4, 0.8)
                y, x = cy[j] + r0 * math.sin(ang), cx[j] + r0 * math.cos(ang)
            small = Blob(y, x, rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.9), rng.uniform(0, math.pi), 0.2,
                         int(rng.integers(0, 2**31 - 1)))
            img = _render_blob(small, h, w)
            if j is not None:
                img = img * (0.3 + eff_img(j) / max(eff_img(j).max(), 1e-12))
            fp = _perturb(img * tv, rng, shape, noise=0.15)
            mix = crosstalk(fp, (0.5, 1.0))
            u = Unit(kind=kind, label="bad", reason="irregular_shape", footprint=fp, mixing=mix,
                     noise_factor=float(rng.uniform(1.1, 1.5)), source_cell=j)
        else:  # ragged: several lobes around a point between cells
            j = pick(donors) if donors else None
            if j is None:
                y, x = rng.uniform(4, h - 5), rng.uniform(4, w - 5)
            else:
                ang = rng.uniform(0, 2 * math.pi)
                y, x = cy[j] + 1.1 * rad[j] * math.sin(ang), cx[j] + 1.1 * rad[j] * math.cos(ang)
            img = np.zeros(n_px)
            for _k in range(int(rng.integers(3, 6))):
                lobe = Blob(y + rng.normal(0, 3.5), x + rng.normal(0, 3.5),
                            rng.uniform(1.2, 2.8), rng.uniform(0.7, 1.5),
                            rng.uniform(0, math.pi), 0.3, int(rng.integers(0, 2**31 - 1)))
                img = np.maximum(img, _render_blob(lobe, h, w) * rng.uniform(0.5, 1.0))
            fp = _perturb(img * tv, rng, shape, noise=0.2)
            u = Unit(kind=kind, label="bad", reason="irregular_shape", footprint=fp,
                     mixing=crosstalk(fp, (0.4, 1.0)), bg_weight=float(rng.uniform(0.1, 0.5)),
                     noise_factor=float(rng.uniform(1.1, 1.4)), source_cell=j)
        u.tau_rise_s, u.tau_decay_s = kernel_like(u.source_cell)
        arts.append(u)

    # ---- borrowed_fluorescence
    for _ in range(counts["borrowed_fluorescence"]):
        j = pick(donors)
        fp = None
        if j is not None:
            ej = eff_img(j)
            for _try in range(30):
                d_new = rng.uniform(8.0, 14.0)
                dist = (rad[j] + d_new / 2.0) * rng.uniform(0.68, 0.95)
                ang = rng.uniform(0, 2 * math.pi)
                y, x = cy[j] + dist * math.sin(ang), cx[j] + dist * math.cos(ang)
                if not (1 <= y <= h - 2 and 1 <= x <= w - 2):
                    continue
                nf = pop.n_in_focus
                others = np.hypot(cy[:nf] - y, cx[:nf] - x) / (rad[:nf] + d_new / 2)
                others[j] = np.inf
                if others.min() < 0.8:
                    continue
                img = _render_blob(soma_blob(y, x, d_new), h, w)
                ov = _overlap_frac(img.reshape(shape), ej.reshape(shape))
                if 0.0 < ov < 0.45:
                    fp = _perturb(img * tv, rng, shape)
                    break
        if fp is None:  # no room: a soma-like blob anywhere, borrowing from the closest cell
            y, x = rng.uniform(2, h - 3), rng.uniform(2, w - 3)
            fp = _perturb(_render_blob(soma_blob(y, x, rng.uniform(8, 14)), h, w) * tv, rng, shape)
            if good_cells:
                j = min(good_cells, key=lambda k: math.hypot(cy[k] - y, cx[k] - x))
        mix = crosstalk(fp, (0.1, 0.4), exclude=(j,) if j is not None else ())
        if j is not None:
            mix[j] = float(rng.uniform(0.25, 0.8))
        tr = kernel_like(j)
        arts.append(Unit(kind="neighbour_spill", label="bad", reason="borrowed_fluorescence", footprint=fp,
                         mixing=mix, bg_weight=float(rng.uniform(0.05, 0.25)),
                         noise_factor=float(rng.uniform(1.0, 1.3)), tau_rise_s=tr[0], tau_decay_s=tr[1],
                         source_cell=j))

    # ---- overlap (near-duplicates)
    for _ in range(counts["overlap"]):
        cands = [j for j in donors if j not in used_dup] or donors
        j = pick(cands)
        if j is None:
            break
        used_dup.add(j)
        nb = pop.neurons[j].blob
        ej = eff_img(j)
        fp = None
        for _try in range(20):
            sh = rng.uniform(1.0, 3.0)
            ang = rng.uniform(0, 2 * math.pi)
            sc_ = rng.uniform(0.8, 1.2)
            b2 = Blob(cy[j] + sh * math.sin(ang), cx[j] + sh * math.cos(ang),
                      nb.sigma_major * sc_, nb.sigma_minor * sc_,
                      nb.angle + rng.normal(0, 0.3), nb.irregularity, int(rng.integers(0, 2**31 - 1)))
            img = _render_blob(b2, h, w)
            if _overlap_frac(img.reshape(shape), ej.reshape(shape)) > 0.55:
                fp = _perturb(img * tv, rng, shape)
                break
        if fp is None:
            fp = _perturb(ej, rng, shape, noise=0.15)
        beta = float(rng.uniform(0.3, 0.9))
        mix = crosstalk(fp, (0.05, 0.2), exclude=(j,))
        mix[j] = beta
        for u in units:
            if u.true_cell == j:  # the original gives up part of its signal
                u.mixing[j] *= 1.0 - 0.3 * beta
        tr = kernel_like(j)
        arts.append(Unit(kind="duplicate", label="bad", reason="overlap", footprint=fp, mixing=mix,
                         bg_weight=float(rng.uniform(0.03, 0.2)), noise_factor=float(rng.uniform(1.1, 1.5)),
                         tau_rise_s=tr[0], tau_decay_s=tr[1], source_cell=j))

    # ---- background
    npil = scene.bg_images[-1].reshape(shape).astype(np.float64)
    bg_at: list[tuple[float, float]] = []
    for _ in range(counts["background"]):
        y, x = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        # climb to a nearby local maximum of the neuropil field (unless one is taken)
        y_start, x_start = y, x
        for _step in range(30):
            iy, ix = int(round(y)), int(round(x))
            y0, y1, x0, x1 = max(0, iy - 3), min(h, iy + 4), max(0, ix - 3), min(w, ix + 4)
            win = npil[y0:y1, x0:x1]
            my, mx = np.unravel_index(int(np.argmax(win)), win.shape)
            if (my + y0, mx + x0) == (iy, ix):
                break
            y, x = float(my + y0), float(mx + x0)
        if any(math.hypot(y - by, x - bx) < 12.0 for by, bx in bg_at):
            y, x = y_start, x_start
        bg_at.append((y, x))
        sig_px = rng.uniform(4.5, 14.0)
        blob = Blob(y, x, sig_px * rng.uniform(1.0, 1.5), sig_px / rng.uniform(1.0, 1.3), rng.uniform(0, math.pi),
                    float(rng.uniform(0.2, 0.45)), int(rng.integers(0, 2**31 - 1)))
        img = _render_blob(blob, h, w) * (npil.ravel() / npil.mean()) ** 2
        fp = _perturb(img * tv, rng, shape, noise=0.15)
        arts.append(Unit(kind="background", label="bad", reason="background", footprint=fp,
                         mixing=crosstalk(fp, (0.05, 0.35)),
                         bg_weight=float(rng.uniform(0.15, 0.5)), motion_weight=float(rng.uniform(0.2, 0.6)),
                         noise_factor=float(rng.uniform(0.9, 1.2)),
                         tau_rise_s=float(rng.uniform(0.08, 0.2)), tau_decay_s=float(rng.uniform(0.8, 2.0))))

    # an artifact drawn at the edge of the field of view can fall outside it: CNMF-E never
    # returns an empty component, so neither does the simulator
    all_units = [u for u in units + arts if u.values.size and np.any(u.values > 0)]
    order = rng.permutation(len(all_units))
    all_units = [all_units[i] for i in order]
    gaps = rng.choice([0] * 14 + [1, 1, 2, 4], size=len(all_units))  # deleted components
    ids = np.cumsum(1 + gaps).astype(np.int64)

    c_raw = _raw_traces(all_units, sig, dsig, scene, activity, rng, pop)
    c, s = deconvolve(c_raw, [(u.tau_rise_s, u.tau_decay_s) for u in all_units], fps=fps)

    # footprints to MATLAB column-major pixel order: (y, x) -> x * height + y
    rows = [(u.pixels % w) * h + u.pixels // w for u in all_units]
    cols = [np.full(u.pixels.size, k, dtype=np.int64) for k, u in enumerate(all_units)]
    if all_units:
        a_mat = sp.csc_matrix(
            (np.concatenate([u.values for u in all_units]), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_px, len(all_units)),
        )
        a_mat.sort_indices()
    else:
        a_mat = sp.csc_matrix((n_px, 0))
    log.debug("extraction: %d good, %d artifacts %s", len(units), len(arts), counts)
    return Extraction(units=all_units, ids=ids, A=a_mat, C=c, C_raw=c_raw, S=s)


def _raw_traces(
    units: list[Unit],
    sig: np.ndarray,
    dsig: np.ndarray,
    scene: Scene,
    activity: Activity,
    rng: np.random.Generator,
    pop: Population,
) -> np.ndarray:
    """Raw traces ``(K, n_frames)`` of ``units`` (see module doc)."""
    n_frames = sig.shape[1]
    if not units:
        return np.zeros((0, n_frames))
    h, w = scene.height, scene.width
    fp = _footprint_matrix(units, h * w)  # (K, P) sparse
    tv = (scene.transmission * scene.vignette).astype(np.float64)
    mean_f = expected_frame(pop, scene, activity)
    var_px = scene.gain_counts * np.maximum(mean_f, 0.0) + scene.read_sd_counts**2
    noise_sd = np.sqrt(fp.multiply(fp) @ var_px) * np.array([u.noise_factor for u in units])

    # background fluctuation under each footprint: blobs + neuropil and bleaching
    bg_img = scene.bg_images.astype(np.float64) * tv  # (n_bg+1, P)
    bg_dev = activity.bg_temporal - activity.bg_temporal.mean(axis=1, keepdims=True)
    b_rel = activity.bleach / activity.bleach.mean()
    bg = (fp @ bg_img.T) @ bg_dev * activity.bleach[None, :]
    f0 = fp @ (mean_f - scene.dark_counts)
    bg += f0[:, None] * 0.1 * (b_rel - 1.0)[None, :]  # ring model leaves a little drift

    # motion residue: -(grad F . shift), projected on the footprint
    gy, gx = np.gradient(mean_f.reshape(h, w))
    g = np.stack([fp @ gy.ravel(), fp @ gx.ravel()], axis=1)  # (K, 2)
    mot = activity.motion_px - activity.motion_px.mean(axis=0)
    motion = -(g @ mot.T)

    c_raw = np.empty((len(units), n_frames))
    for i, u in enumerate(units):
        x = np.zeros(n_frames)
        for j, m in u.mixing.items():
            x += m * sig[j]
        for j, m in u.dendrite_mixing.items():
            x += m * dsig[j]
        x += u.bg_weight * bg[i] + u.motion_weight * motion[i]
        x += noise_sd[i] * rng.standard_normal(n_frames)
        c_raw[i] = x
    return c_raw
