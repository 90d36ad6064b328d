"""A CNMF-E-like extraction of the simulated session: real cells plus artifacts.

The simulator does not run CNMF-E; it writes what CNMF-E typically returns for such a
movie. Every unit has a footprint (unit L2 norm) and a raw trace ``C_raw`` mixing the
signals of the neurons under it, background residue, brain motion and camera noise
(the model is written out in :mod:`~cellsift.pipeline.sim.traces`). ``C`` and ``S`` are
then estimated from ``C_raw`` by a thresholded, non-negative matching-pursuit
deconvolution with the unit's AR(2) calcium kernel, so ``C`` holds false small events
on noise and misses weak real ones, as a real deconvolution does.

Artifacts (label ``bad``) come in the five reasons of :data:`ARTIFACT_REASONS`:
``no_transients`` and ``irregular_shape`` (:mod:`~cellsift.pipeline.sim.artifacts_shape`),
``borrowed_fluorescence``, ``overlap`` and ``background``
(:mod:`~cellsift.pipeline.sim.artifacts_signal`); each module describes its kinds.

Modules: :mod:`~cellsift.pipeline.sim.cells` (the real cells CNMF-E finds and the
state the phases share), :mod:`~cellsift.pipeline.sim.artifacts_shape` and
:mod:`~cellsift.pipeline.sim.artifacts_signal` (the artifact families),
:mod:`~cellsift.pipeline.sim.traces` (raw traces, footprint matrix),
:mod:`~cellsift.pipeline.sim.deconvolution` (``C`` and ``S``) and
:mod:`~cellsift.pipeline.sim.footprints` (the :class:`~cellsift.pipeline.sim.footprints.Unit`
record and footprint helpers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.artifacts_shape import irregular_shape_units, no_transients_units
from cellsift.pipeline.sim.artifacts_signal import background_units, borrowed_units, overlap_units
from cellsift.pipeline.sim.cells import find_cells, make_context
from cellsift.pipeline.sim.deconvolution import deconvolve
from cellsift.pipeline.sim.footprints import Unit
from cellsift.pipeline.sim.movie import Scene
from cellsift.pipeline.sim.population import Population
from cellsift.pipeline.sim.traces import column_major_footprints, raw_traces

__all__ = [
    "ARTIFACT_REASONS",
    "REASON_SHARE",
    "Extraction",
    "choose_counts",
    "extract_units",
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


def choose_counts(rng: np.random.Generator, n_art: int) -> dict[str, int]:
    """Number of artifacts per reason: at least one of each when possible, the rest multinomial.

    Parameters
    ----------
    rng
        Random generator of the extraction.
    n_art
        Total number of artifacts.

    Returns
    -------
    dict of str to int
        Artifacts per reason of :data:`REASON_SHARE` (in its order), summing to ``n_art``.
    """
    reasons = list(REASON_SHARE)
    share = np.array([REASON_SHARE[r] for r in reasons])
    counts = np.zeros(len(reasons), dtype=int)
    if n_art >= len(reasons):
        counts += 1
    rest = n_art - counts.sum()
    if rest > 0:
        counts += rng.multinomial(rest, share / share.sum())
    return dict(zip(reasons, counts.tolist(), strict=True))


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
    pop, scene, activity
        The animal's population, the session's spatial components and its activity.
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
    ctx = make_context(pop, scene, activity, rng)
    units = find_cells(ctx)
    f = min(max(artifact_fraction, 0.0), 0.9)
    n_art = int(round(len(ctx.good_cells) * f / (1.0 - f))) if f > 0 else 0
    counts = choose_counts(rng, n_art)
    arts = no_transients_units(ctx, counts["no_transients"])
    arts += irregular_shape_units(ctx, counts["irregular_shape"])
    arts += borrowed_units(ctx, counts["borrowed_fluorescence"])
    arts += overlap_units(ctx, counts["overlap"])
    arts += background_units(ctx, counts["background"])

    # an artifact drawn at the edge of the field of view can fall outside it: CNMF-E never
    # returns an empty component, so neither does the simulator
    all_units = [u for u in units + arts if u.values.size and np.any(u.values > 0)]
    order = rng.permutation(len(all_units))
    all_units = [all_units[i] for i in order]
    gaps = rng.choice([0] * 14 + [1, 1, 2, 4], size=len(all_units))  # deleted components
    ids = np.cumsum(1 + gaps).astype(np.int64)

    c_raw = raw_traces(all_units, ctx.sig, ctx.dsig, scene, activity, rng, pop)
    c, s = deconvolve(c_raw, [(u.tau_rise_s, u.tau_decay_s) for u in all_units], fps=fps)
    a_mat = column_major_footprints(all_units, scene.height, scene.width)
    log.debug("extraction: %d good, %d artifacts %s", len(units), len(arts), counts)
    return Extraction(units=all_units, ids=ids, A=a_mat, C=c, C_raw=c_raw, S=s)
