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
