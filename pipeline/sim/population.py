"""Neurons and tissue of one animal's field of view for the simulated cohort.

One *population* is drawn per animal; the same neurons are imaged every day. Images
are row-major ``(height, width)``, flattened as ``y * width + x``; intensities are
camera counts. The shapes (:class:`~cellsift.pipeline.sim.geometry.Blob`,
:class:`~cellsift.pipeline.sim.geometry.Streak`) live in
:mod:`cellsift.pipeline.sim.geometry`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from cellsift.pipeline.sim.config import DEFAULT_CELL_DIAMETER_PX
from cellsift.pipeline.sim.geometry import SIGMA_PER_DIAMETER, Blob, Streak

__all__ = [
    "CLASS_SHARE",
    "Neuron",
    "Population",
    "make_population",
]

log = logging.getLogger(__name__)

#: Share of each firing class among neurons (mPFC: mostly regular/adapting spiking).
CLASS_SHARE: Final = {"tonic": 0.25, "adapting": 0.35, "bursting": 0.22, "irregular": 0.18}


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
    cell_scale
        Size of a cell relative to the default population (1: median diameter 11.5 px);
        tissue structures (neuropil, texture, vessels, background blobs) and the
        simulated extraction's artifact footprints scale with it.
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
    cell_scale: float = 1.0


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
    sigma = diameter * SIGMA_PER_DIAMETER
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


def _draw_assemblies(rng: np.random.Generator, centres: list[tuple[float, float]]) -> np.ndarray:
    """Co-active assemblies: mostly spatial neighbours (shared local input).

    Returns the assembly index of each in-focus cell, ``(n_cells,)`` int, -1 if none.
    """
    n_cells = len(centres)
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
            members = np.concatenate(
                [[seed_cell], rng.choice(free[free != seed_cell], size - 1, replace=False)]
            )
        assembly[members] = k
    return assembly


def _draw_common(
    rng: np.random.Generator, idx: int, in_focus: bool, blob: Blob, brightness: float
) -> dict[str, Any]:
    """Keyword arguments of :class:`Neuron` shared by in-focus and out-of-focus neurons."""
    classes = list(CLASS_SHARE)
    share = np.array([CLASS_SHARE[c] for c in classes])
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


def _in_focus_neurons(
    rng: np.random.Generator,
    centres: list[tuple[float, float]],
    diam: np.ndarray,
    assembly: np.ndarray,
    scale: float = 1.0,
) -> list[Neuron]:
    """The in-focus neurons (somata of ``diam`` px at ``centres``), some with a dendrite.

    Dendrite lengths and widths are multiplied by ``scale`` (the cell size relative to
    the default population).
    """
    neurons: list[Neuron] = []
    for i, (cy, cx) in enumerate(centres):
        blob = _random_blob(rng, cy, cx, diam[i])
        bright = float(np.clip(rng.lognormal(np.log(20.0), 0.5), 5.0, 60.0))
        kw = _draw_common(rng, i, True, blob, bright)
        dend = None
        dend_b = 0.0
        if rng.random() < 0.22:
            ang = float(rng.uniform(0, 2 * math.pi))
            r0 = 0.8 * blob.diameter_px / 2.0
            dend = Streak(
                y0=cy + r0 * math.sin(ang),
                x0=cx + r0 * math.cos(ang),
                angle=ang + float(rng.normal(0, 0.3)),
                length=float(rng.uniform(12.0 * scale, 30.0 * scale)),
                width=float(rng.uniform(0.7 * scale, 1.2 * scale)),
                curvature=float(rng.uniform(-0.25, 0.25)),
                fade=float(rng.uniform(0.3, 1.2)),
            )
            dend_b = bright * float(rng.uniform(0.5, 0.9))
        neurons.append(Neuron(**kw, assembly=int(assembly[i]), dendrite=dend, dendrite_brightness=dend_b))
    return neurons


def _out_of_focus_neurons(
    rng: np.random.Generator, first_index: int, n_oof: int, height: int, width: int, scale: float = 1.0
) -> list[Neuron]:
    """``n_oof`` large, dim out-of-focus neurons, indexed from ``first_index`` (sizes times ``scale``)."""
    neurons: list[Neuron] = []
    for j in range(n_oof):
        cy = rng.uniform(0, height - 1)
        cx = rng.uniform(0, width - 1)
        sig = float(rng.uniform(5.0 * scale, 8.5 * scale))
        blob = Blob(
            cy, cx, sig * 1.1, sig / 1.1, float(rng.uniform(0, math.pi)), 0.1, int(rng.integers(0, 2**31 - 1))
        )
        bright = float(np.clip(rng.lognormal(np.log(6.0), 0.35), 2.5, 14.0))
        kw = _draw_common(rng, first_index + j, False, blob, bright)
        neurons.append(Neuron(**kw, assembly=-1))
    return neurons


def _draw_spots(
    rng: np.random.Generator,
    centres: list[tuple[float, float]],
    diam: np.ndarray,
    height: int,
    width: int,
    scale: float = 1.0,
) -> tuple[tuple[Blob, float], ...]:
    """Static spots of tissue away from cells (candidates for 'no_transients' ghosts), sizes times ``scale``."""
    n_spots = max(2, int(round(0.15 * len(centres))))
    spot_d = rng.uniform(8.0 * scale, 13.0 * scale, n_spots)
    spot_c = _place_blobs(
        rng,
        spot_d / 2.0,
        height,
        width,
        touch_prob=0.0,
        avoid=[(c[0], c[1], d / 2.0) for c, d in zip(centres, diam, strict=True)],
    )
    return tuple(
        (_random_blob(rng, y, x, d), float(rng.uniform(2.0, 6.0)))
        for (y, x), d in zip(spot_c, spot_d, strict=True)
    )


def _draw_vessels(
    rng: np.random.Generator, height: int, width: int, scale: float = 1.0
) -> tuple[tuple[Streak, float], ...]:
    """0-2 blood vessels crossing the field of view, with their darkening fraction (widths times ``scale``)."""
    vessels = []
    for _ in range(int(rng.integers(0, 3))):
        side = rng.random() < 0.5
        y0 = float(rng.uniform(0, height - 1)) if side else -2.0
        x0 = -2.0 if side else float(rng.uniform(0, width - 1))
        ang = (0.0 if side else math.pi / 2) + float(rng.normal(0, 0.35))
        vessels.append(
            (
                Streak(
                    y0,
                    x0,
                    ang,
                    float(math.hypot(height, width)),
                    float(rng.uniform(1.5 * scale, 3.0 * scale)),
                    float(rng.uniform(-0.15, 0.15)),
                    0.0,
                ),
                float(rng.uniform(0.12, 0.3)),
            )
        )
    return tuple(vessels)


def make_population(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    cell_density: float,
    background_scale: float = 1.0,
    cell_diameter_px: float | None = None,
) -> Population:
    """Draw one animal's neurons, background and tissue.

    Parameters
    ----------
    rng
        The animal's random generator.
    height, width
        Frame size (px).
    cell_density
        Mean number of in-focus neurons per 10,000 px at the default cell size (varies
        +-10 % by animal); scaled by ``(11.5 / cell_diameter_px) ** 2`` when that is set.
    background_scale
        Multiplier of the out-of-focus background and neuropil intensity.
    cell_diameter_px
        Median soma diameter (px); diameters are uniform in ``[0.7, 1.3]`` times it.
        None: uniform in 8-15 px (the original population).

    Returns
    -------
    Population
        The animal's field of view.
    """
    scale = 1.0 if cell_diameter_px is None else cell_diameter_px / DEFAULT_CELL_DIAMETER_PX
    area = height * width / scale**2  # in default-size pixels: a density per cell area
    n_cells = max(1, int(round(cell_density * area / 1e4 * rng.uniform(0.9, 1.1))))
    if cell_diameter_px is None:
        diam = rng.uniform(8.0, 15.0, n_cells)
    else:
        diam = rng.uniform(0.7 * cell_diameter_px, 1.3 * cell_diameter_px, n_cells)
    centres = _place_blobs(rng, diam / 2.0, height, width)
    n_oof = max(1, int(round(0.2 * n_cells)))
    assembly = _draw_assemblies(rng, centres)
    neurons = _in_focus_neurons(rng, centres, diam, assembly, scale)
    neurons += _out_of_focus_neurons(rng, n_cells, n_oof, height, width, scale)
    spots = _draw_spots(rng, centres, diam, height, width, scale)
    vessels = _draw_vessels(rng, height, width, scale)
    n_blobs = int(rng.integers(3, 5))
    bg_blobs = tuple(
        (
            float(rng.uniform(-0.2, 1.2) * height),
            float(rng.uniform(-0.2, 1.2) * width),
            float(rng.uniform(40.0 * scale, 80.0 * scale)),
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
        vessels=vessels,
        field_seed=int(rng.integers(0, 2**31 - 1)),
        cell_scale=scale,
    )
