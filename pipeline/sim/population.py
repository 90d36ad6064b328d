"""Neurons and tissue of one animal's field of view for the simulated cohort.

One *population* is drawn per animal; the same neurons are imaged every day. Images
are row-major ``(height, width)``, flattened as ``y * width + x``; intensities are
camera counts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy import ndimage

__all__ = [
    "CLASS_SHARE",
    "SUPPORT_FRAC",
    "Blob",
    "Streak",
    "blob_image",
    "streak_image",
    "Neuron",
    "Population",
    "make_population",
]

log = logging.getLogger(__name__)

#: Share of each firing class among neurons (mPFC: mostly regular/adapting spiking).
CLASS_SHARE: Final = {"tonic": 0.25, "adapting": 0.35, "bursting": 0.22, "irregular": 0.18}

#: Footprint support is where the soma is above this fraction of its peak.
SUPPORT_FRAC: Final = 0.1
_SIGMA_PER_DIAMETER: Final = 1.0 / (2.0 * math.sqrt(2.0 * math.log(1.0 / SUPPORT_FRAC)))


# --------------------------------------------------------------------------- geometry


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
        return math.sqrt(self.sigma_major * self.sigma_minor) / _SIGMA_PER_DIAMETER


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


def _patch_to_flat(y0: int, x0: int, patch: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat (row-major) pixel indices and values of the non-zero pixels of a patch."""
    iy, ix = np.nonzero(patch)
    return (iy + y0) * width + (ix + x0), patch[iy, ix]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-SD smooth Gaussian random field."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="reflect")
    return f / (f.std() + 1e-12)


# --------------------------------------------------------------------------- population


@dataclass(frozen=True)
class Neuron:
    """One simulated neuron of an animal (the same every session).

    Attributes
    ----------
    index
        Index in :attr:`Population.neurons`.
    in_focus
        True for a soma in the focal plane; False for an out-of-focus neuron (large,
        dim, blurred).
    blob
        Shape and place.
    brightness
        Resting intensity at the soma peak (counts).
    dff_per_spike
        Peak dF/F of one isolated spike.
    saturation_spikes
        Calcium level (in spikes) at which dF/F is half its linear value.
    tau_rise_s, tau_decay_s
        Indicator kinetics (s).
    firing_class
        AdEx class, one of :data:`~cellsift.pipeline.sim.adex.FIRING_CLASSES`.
    event_rate_hz
        Rate of spontaneous depolarising events (network up-states) (Hz).
    tone_selectivity
        ``"CS+"``, ``"CS-"``, ``"both"`` or ``"none"``.
    tone_gain
        Strength of the tone-evoked input, relative to the pulse rheobase.
    tone_reliability
        Probability that a preferred tone evokes input on a trial.
    shock_responsive
        Whether the neuron gets strong input during shocks.
    assembly
        Index of the co-active assembly the neuron belongs to, -1 if none.
    dendrite
        A visible dendrite that follows the soma, or None.
    dendrite_brightness
        Resting intensity of the dendrite (counts).
    """

    index: int
    in_focus: bool
    blob: Blob
    brightness: float
    dff_per_spike: float
    saturation_spikes: float
    tau_rise_s: float
    tau_decay_s: float
    firing_class: str
    event_rate_hz: float
    tone_selectivity: str
    tone_gain: float
    tone_reliability: float
    shock_responsive: bool
    assembly: int
    dendrite: Streak | None = None
    dendrite_brightness: float = 0.0


@dataclass(frozen=True)
class Population:
    """Everything about one animal's field of view that does not change across days.

    Attributes
    ----------
    height, width
        Frame size (px).
    neurons
        In-focus neurons first (``n_in_focus`` of them), then out-of-focus ones.
    n_in_focus
        Number of in-focus neurons (the cells an extraction should find).
    bg_blobs
        Broad out-of-focus background blobs, ``(cy, cx, sigma_px, amplitude_counts)``.
    bg_base
        Spatially flat background (counts).
    neuropil_amp
        Mean neuropil intensity (counts).
    spots
        Static soma-sized bright spots of tissue (no activity), with their amplitude.
    vessels
        Blood vessels (dark streaks) and their darkening fraction.
    field_seed
        Seed of the neuropil and texture random fields.
    """

    height: int
    width: int
    neurons: tuple[Neuron, ...]
    n_in_focus: int
    bg_blobs: tuple[tuple[float, float, float, float], ...]
    bg_base: float
    neuropil_amp: float
    spots: tuple[tuple[Blob, float], ...]
    vessels: tuple[tuple[Streak, float], ...]
    field_seed: int


def _place_blobs(
    rng: np.random.Generator,
    radii: np.ndarray,
    height: int,
    width: int,
    *,
    touch_prob: float = 0.3,
    avoid: list[tuple[float, float, float]] | None = None,
) -> list[tuple[float, float]]:
    """Place discs of ``radii`` with a minimum spacing; some neighbours may touch.

    A candidate centre is accepted when its distance to every placed disc is at least
    0.9 of the summed radii, or, with probability ``touch_prob``, at least 0.62 of it
    (touching neighbours, up to about 25 % shared area). After 300 rejected
    candidates the least crowded one is taken.
    """
    avoid = list(avoid or [])
    n_max = len(avoid) + len(radii)
    arr = np.zeros((max(n_max, 1), 3))
    if avoid:
        arr[: len(avoid)] = np.asarray(avoid, dtype=np.float64)
    n = len(avoid)
    out: list[tuple[float, float]] = []
    margin = 1.0
    for r in radii:
        best = (rng.uniform(margin, height - 1 - margin), rng.uniform(margin, width - 1 - margin))
        best_q = -1.0
        for _ in range(300):
            y = rng.uniform(margin, height - 1 - margin)
            x = rng.uniform(margin, width - 1 - margin)
            q = float(np.min(np.hypot(arr[:n, 0] - y, arr[:n, 1] - x) / (arr[:n, 2] + r))) if n else np.inf
            if q >= 0.9 or (q >= 0.62 and rng.random() < touch_prob):
                best, best_q = (y, x), q
                break
            if q > best_q:
                best, best_q = (y, x), q
        arr[n] = (best[0], best[1], float(r))
        n += 1
        out.append(best)
    return out


def _random_blob(
    rng: np.random.Generator, cy: float, cx: float, diameter: float, *, max_aspect: float = 1.8
) -> Blob:
    sigma = diameter * _SIGMA_PER_DIAMETER
    aspect = float(np.clip(1.0 + abs(rng.normal(0.0, 0.18)), 1.0, max_aspect))
    return Blob(
        cy=float(cy),
        cx=float(cx),
        sigma_major=sigma * math.sqrt(aspect),
        sigma_minor=sigma / math.sqrt(aspect),
        angle=float(rng.uniform(0.0, math.pi)),
        irregularity=float(rng.uniform(0.04, 0.18)),
        shape_seed=int(rng.integers(0, 2**31 - 1)),
    )


def make_population(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    cell_density: float,
    background_scale: float = 1.0,
) -> Population:
    """Draw one animal's neurons, background and tissue.

    Parameters
    ----------
    rng
        The animal's random generator.
    height, width
        Frame size (px).
    cell_density
        Mean number of in-focus neurons per 10,000 px (varies +-10 % by animal).
    background_scale
        Multiplier of the out-of-focus background and neuropil intensity.

    Returns
    -------
    Population
        The animal's field of view.
    """
    area = height * width
    n_cells = max(1, int(round(cell_density * area / 1e4 * rng.uniform(0.9, 1.1))))
    diam = rng.uniform(8.0, 15.0, n_cells)
    centres = _place_blobs(rng, diam / 2.0, height, width)

    n_oof = max(1, int(round(0.2 * n_cells)))
    classes = list(CLASS_SHARE)
    share = np.array([CLASS_SHARE[c] for c in classes])

    # co-active assemblies: mostly spatial neighbours (shared local input)
    assembly = -np.ones(n_cells, dtype=int)
    n_asm = max(1, n_cells // 12)
    cy_all = np.array([c[0] for c in centres])
    cx_all = np.array([c[1] for c in centres])
    for k in range(n_asm):
        free = np.nonzero(assembly < 0)[0]
        if free.size < 2:
            break
        seed_cell = int(rng.choice(free))
        size = int(rng.integers(2, 4))
        if rng.random() < 0.75:
            d = np.hypot(cy_all[free] - cy_all[seed_cell], cx_all[free] - cx_all[seed_cell])
            members = free[np.argsort(d)[:size]]
        else:
            members = np.concatenate([[seed_cell], rng.choice(free[free != seed_cell], size - 1, replace=False)])
        assembly[members] = k

    neurons: list[Neuron] = []

    def draw_common(idx: int, in_focus: bool, blob: Blob, brightness: float) -> dict[str, Any]:
        sel_draw = rng.random()
        if sel_draw < 0.11:
            sel = "CS+"
        elif sel_draw < 0.19:
            sel = "CS-"
        elif sel_draw < 0.25:
            sel = "both"
        else:
            sel = "none"
        return dict(
            index=idx,
            in_focus=in_focus,
            blob=blob,
            brightness=float(brightness),
            dff_per_spike=float(rng.uniform(0.1, 0.3)),
            saturation_spikes=float(rng.uniform(5.0, 12.0)),
            tau_rise_s=float(rng.uniform(0.05, 0.1)),
            tau_decay_s=float(rng.uniform(0.4, 1.0)),
            firing_class=str(classes[int(rng.choice(len(classes), p=share))]),
            event_rate_hz=float(np.exp(rng.uniform(np.log(0.015), np.log(0.35)))),
            tone_selectivity=sel,
            tone_gain=float(rng.lognormal(np.log(1.7), 0.25)),
            tone_reliability=float(rng.uniform(0.5, 0.95)),
            shock_responsive=bool(rng.random() < 0.3),
        )

    for i, (cy, cx) in enumerate(centres):
        blob = _random_blob(rng, cy, cx, diam[i])
        bright = float(np.clip(rng.lognormal(np.log(20.0), 0.5), 5.0, 60.0))
        kw = draw_common(i, True, blob, bright)
        dend = None
        dend_b = 0.0
        if rng.random() < 0.22:
            ang = float(rng.uniform(0, 2 * math.pi))
            r0 = 0.8 * blob.diameter_px / 2.0
            dend = Streak(
                y0=cy + r0 * math.sin(ang),
                x0=cx + r0 * math.cos(ang),
                angle=ang + float(rng.normal(0, 0.3)),
                length=float(rng.uniform(12.0, 30.0)),
                width=float(rng.uniform(0.7, 1.2)),
                curvature=float(rng.uniform(-0.25, 0.25)),
                fade=float(rng.uniform(0.3, 1.2)),
            )
            dend_b = bright * float(rng.uniform(0.5, 0.9))
        neurons.append(Neuron(**kw, assembly=int(assembly[i]), dendrite=dend, dendrite_brightness=dend_b))

    for j in range(n_oof):
        cy = rng.uniform(0, height - 1)
        cx = rng.uniform(0, width - 1)
        sig = float(rng.uniform(5.0, 8.5))
        blob = Blob(cy, cx, sig * 1.1, sig / 1.1, float(rng.uniform(0, math.pi)), 0.1, int(rng.integers(0, 2**31 - 1)))
        bright = float(np.clip(rng.lognormal(np.log(6.0), 0.35), 2.5, 14.0))
        kw = draw_common(n_cells + j, False, blob, bright)
        neurons.append(Neuron(**kw, assembly=-1))

    # static spots of tissue away from cells (candidates for 'no_transients' ghosts)
    n_spots = max(2, int(round(0.15 * n_cells)))
    spot_d = rng.uniform(8.0, 13.0, n_spots)
    spot_c = _place_blobs(
        rng, spot_d / 2.0, height, width, touch_prob=0.0,
        avoid=[(c[0], c[1], d / 2.0) for c, d in zip(centres, diam)],
    )
    spots = tuple(
        (_random_blob(rng, y, x, d), float(rng.uniform(2.0, 6.0))) for (y, x), d in zip(spot_c, spot_d)
    )

    vessels = []
    for _ in range(int(rng.integers(0, 3))):
        side = rng.random() < 0.5
        y0 = float(rng.uniform(0, height - 1)) if side else -2.0
        x0 = -2.0 if side else float(rng.uniform(0, width - 1))
        ang = (0.0 if side else math.pi / 2) + float(rng.normal(0, 0.35))
        vessels.append(
            (
                Streak(y0, x0, ang, float(math.hypot(height, width)), float(rng.uniform(1.5, 3.0)),
                       float(rng.uniform(-0.15, 0.15)), 0.0),
                float(rng.uniform(0.12, 0.3)),
            )
        )

    n_blobs = int(rng.integers(3, 5))
    bg_blobs = tuple(
        (
            float(rng.uniform(-0.2, 1.2) * height),
            float(rng.uniform(-0.2, 1.2) * width),
            float(rng.uniform(40.0, 80.0)),
            float(rng.uniform(30.0, 60.0) * background_scale),
        )
        for _ in range(n_blobs)
    )
    return Population(
        height=height,
        width=width,
        neurons=tuple(neurons),
        n_in_focus=n_cells,
        bg_blobs=bg_blobs,
        bg_base=float(rng.uniform(40.0, 55.0) * background_scale),
        neuropil_amp=float(rng.uniform(10.0, 16.0) * background_scale),
        spots=spots,
        vessels=tuple(vessels),
        field_seed=int(rng.integers(0, 2**31 - 1)),
    )
