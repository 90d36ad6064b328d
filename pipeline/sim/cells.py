"""Real-cell components of the simulated extraction and the state its phases share.

:func:`make_context` computes what every phase of
:func:`~cellsift.pipeline.sim.extract.extract_units` needs (each neuron's image as
the camera sees it and its signal as its own unit would carry it);
:func:`find_cells` then decides which active in-focus cells CNMF-E finds and builds
their (good) units.

The artifact families (:mod:`~cellsift.pipeline.sim.artifacts_shape`,
:mod:`~cellsift.pipeline.sim.artifacts_signal`) have one function per artifact reason,
``*_units(ctx, n)``: it takes the :class:`ExtractionContext` (after
:func:`find_cells`) and the number ``n`` of artifacts wanted, and returns them as a list
of :class:`~cellsift.pipeline.sim.footprints.Unit` (label ``bad``, that reason). Every
phase draws from the context's generator in a fixed order, so a seed always gives the
same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.footprints import Unit, perturb_footprint
from cellsift.pipeline.sim.geometry import SUPPORT_FRAC, Blob
from cellsift.pipeline.sim.movie import Scene
from cellsift.pipeline.sim.population import Population

__all__ = ["ExtractionContext", "make_context", "find_cells"]


@dataclass
class ExtractionContext:
    """What the phases of one session's extraction share.

    Attributes
    ----------
    pop
        The animal's population.
    scene
        The session's spatial components.
    rng
        Random generator of the extraction (every phase draws from it, in order).
    tv
        Vessel transmission times vignette, ``(n_pixels,)`` float64.
    eff, deff
        Soma and dendrite images as the camera sees them (times ``tv``),
        ``(n_neurons, n_pixels)`` CSR.
    eff_norm, deff_norm
        L2 norms of the rows of ``eff`` and ``deff``, ``(n_neurons,)``.
    sig, dsig
        Soma and dendrite signal of each neuron as its own unit would carry it,
        ``(n_neurons, n_frames)`` float64 (counts x unit-norm footprint).
    n_spk
        Spikes per neuron this session, ``(n_neurons,)``.
    cy, cx, rad
        Soma centre (px, in this session's field of view) and radius (px), ``(n_neurons,)``.
    silent
        In-focus neurons with a visible soma and no spike this session (artifact
        phases take from this list).
    good_cells
        Neurons CNMF-E finds (set by :func:`find_cells`).
    cell_units
        Their units, in the order of ``good_cells`` (the overlap phase lowers their
        mixing weights).
    donors
        The brightest good cells, the usual sources of borrowed and duplicated signal.
    """

    pop: Population
    scene: Scene
    rng: np.random.Generator
    tv: np.ndarray
    eff: sp.csr_matrix
    deff: sp.csr_matrix
    eff_norm: np.ndarray
    deff_norm: np.ndarray
    sig: np.ndarray
    dsig: np.ndarray
    n_spk: np.ndarray
    cy: np.ndarray
    cx: np.ndarray
    rad: np.ndarray
    silent: list[int]
    good_cells: list[int] = field(default_factory=list)
    cell_units: list[Unit] = field(default_factory=list)
    donors: list[int] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """Cell size relative to the default population (artifact sizes in px scale with it)."""
        return self.pop.cell_scale

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size ``(height, width)`` (px)."""
        return self.scene.height, self.scene.width

    def eff_img(self, j: int) -> np.ndarray:
        """Effective soma image of neuron ``j``, dense row-major ``(n_pixels,)``."""
        return self.eff[j].toarray().ravel()

    def soma_blob(self, y: float, x: float, diameter: float) -> Blob:
        """A random soma-like blob of ``diameter`` px centred at ``(y, x)``."""
        rng = self.rng
        sigma = diameter / (2.0 * math.sqrt(2.0 * math.log(1.0 / SUPPORT_FRAC)))
        aspect = float(np.clip(1.0 + abs(rng.normal(0.0, 0.2)), 1.0, 1.9))
        return Blob(
            y,
            x,
            sigma * math.sqrt(aspect),
            sigma / math.sqrt(aspect),
            float(rng.uniform(0, math.pi)),
            float(rng.uniform(0.05, 0.25)),
            int(rng.integers(0, 2**31 - 1)),
        )

    def kernel_like(self, j: int | None) -> tuple[float, float]:
        """``(tau_rise_s, tau_decay_s)`` CNMF-E would fit: neuron ``j``'s, jittered, or random."""
        rng = self.rng
        if j is None:
            return float(rng.uniform(0.05, 0.1)), float(rng.uniform(0.4, 1.0))
        nr = self.pop.neurons[j]
        return nr.tau_rise_s * float(rng.uniform(0.85, 1.15)), nr.tau_decay_s * float(rng.uniform(0.85, 1.15))

    def crosstalk(
        self, fp: np.ndarray, scale: tuple[float, float], exclude: tuple[int, ...] = ()
    ) -> dict[int, float]:
        """Neighbour signal picked up under ``fp`` (cosine overlap x random factor)."""
        proj = self.eff @ fp  # (n_neurons,)
        out: dict[int, float] = {}
        for j in np.nonzero(proj > 0)[0]:
            if int(j) in exclude or self.eff_norm[j] == 0:
                continue
            cos = float(proj[j] / self.eff_norm[j])
            if cos > 0.05:
                out[int(j)] = cos * float(self.rng.uniform(*scale))
        return out

    def pick(self, seq: list[int]) -> int | None:
        """A random element of ``seq``, None (and no draw) if it is empty."""
        return self.pick_one(seq) if seq else None

    def pick_one(self, seq: list[int]) -> int:
        """A random element of the non-empty ``seq``."""
        return int(seq[int(self.rng.integers(len(seq)))])


def make_context(
    pop: Population, scene: Scene, activity: Activity, rng: np.random.Generator
) -> ExtractionContext:
    """Effective images, signals and geometry of a session (no random draws).

    Parameters
    ----------
    pop, scene, activity
        The animal's population, the session's spatial components and its activity.
    rng
        Random generator of the extraction, kept for the later phases.

    Returns
    -------
    ExtractionContext
        The context, with no good cells yet (see :func:`find_cells`).
    """
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
    n_spk = activity.spikes.sum(axis=1)
    in_focus = np.arange(pop.n_in_focus)
    silent = [int(j) for j in in_focus if n_spk[j] == 0 and eff_norm[j] > 0]
    return ExtractionContext(
        pop=pop,
        scene=scene,
        rng=rng,
        tv=tv,
        eff=eff,
        deff=deff,
        eff_norm=eff_norm,
        deff_norm=deff_norm,
        sig=sig,
        dsig=dsig,
        n_spk=n_spk,
        cy=np.array([nr.blob.cy + scene.fov_offset[0] for nr in pop.neurons]),
        cx=np.array([nr.blob.cx + scene.fov_offset[1] for nr in pop.neurons]),
        rad=np.array([nr.blob.diameter_px / 2.0 for nr in pop.neurons]),
        silent=silent,
    )


def find_cells(ctx: ExtractionContext) -> list[Unit]:
    """Choose the cells CNMF-E finds and build their good units.

    CNMF-E misses some dim or nearly silent active cells; each found cell gets a
    perturbed estimate of its effective soma image and its own signal. Sets
    ``ctx.good_cells``, ``ctx.cell_units`` and ``ctx.donors``.

    Parameters
    ----------
    ctx
        The session's extraction context.

    Returns
    -------
    list of Unit
        ``ctx.cell_units``.
    """
    pop, rng, n_spk = ctx.pop, ctx.rng, ctx.n_spk
    in_focus = np.arange(pop.n_in_focus)
    active = [int(j) for j in in_focus if n_spk[j] > 0 and ctx.eff_norm[j] > 0]
    good_cells: list[int] = []
    for j in active:
        nr = pop.neurons[j]
        p_miss = 0.03 + (0.25 if nr.brightness < 6.0 else 0.0) + (0.15 if n_spk[j] < 3 else 0.0)
        if rng.random() < p_miss:
            continue
        good_cells.append(j)
    units: list[Unit] = []
    for j in good_cells:
        nr = pop.neurons[j]
        fp = perturb_footprint(ctx.eff_img(j), rng, ctx.shape)
        mix = {j: float(rng.uniform(0.85, 1.1))}
        units.append(
            Unit(
                kind="cell",
                label="good",
                reason="",
                footprint=fp,
                mixing=mix,
                bg_weight=float(rng.uniform(0.03, 0.15)),
                motion_weight=float(rng.uniform(0.1, 0.4)),
                noise_factor=float(rng.uniform(1.0, 1.25)),
                tau_rise_s=nr.tau_rise_s * float(rng.uniform(0.85, 1.15)),
                tau_decay_s=nr.tau_decay_s * float(rng.uniform(0.85, 1.15)),
                true_cell=j,
                source_cell=j,
            )
        )
    # brightest / most active cells are the usual victims of borrowing and duplication
    donors = sorted(good_cells, key=lambda j: -float(ctx.sig[j].max()))
    ctx.donors = donors[: max(3, int(0.7 * len(donors)))] if donors else []
    ctx.good_cells = good_cells
    ctx.cell_units = units
    return units
