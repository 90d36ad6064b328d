"""Artifacts of the simulated extraction that are wrong in kind or in shape.

``no_transients``
    ``silent_cell`` (a real soma that is silent this session) or ``ghost`` (a static
    bright spot of tissue); the trace is noise, background residue and motion blips.
``irregular_shape``
    ``dendrite`` (a real, active dendrite: a thin streak), ``fragment`` (a tiny piece
    of a real cell), ``large_blob`` (an active out-of-focus neuron: big and diffuse)
    and ``ragged`` (a multi-lobed patch between cells with their weak signals).

The ``*_units(ctx, n)`` functions (one per reason above) follow the contract of the
artifact families in :mod:`~cellsift.pipeline.sim.cells`.
"""

from __future__ import annotations

import math

import numpy as np

from cellsift.pipeline.sim.cells import ExtractionContext
from cellsift.pipeline.sim.footprints import Unit, perturb_footprint, render_blob
from cellsift.pipeline.sim.geometry import Blob

__all__ = ["no_transients_units", "irregular_shape_units"]


def no_transients_units(ctx: ExtractionContext, n: int) -> list[Unit]:
    """``n`` artifacts without transients, silent cells and ghosts (see the module docstring).

    The silent cells used are removed from ``ctx.silent``.
    """
    pop, scene, rng, silent, tv, sc = ctx.pop, ctx.scene, ctx.rng, ctx.silent, ctx.tv, ctx.scale
    shape = ctx.shape
    h, w = shape
    arts: list[Unit] = []
    for _ in range(n):
        use_silent = silent and rng.random() < 0.55
        tc: int | None
        src: int | None
        if use_silent:
            j = ctx.pick_one(silent)
            silent.remove(j)
            fp = perturb_footprint(ctx.eff_img(j), rng, shape)
            kind, tc, src = "silent_cell", j, j
        elif pop.spots and rng.random() < 0.7:
            blob, _ = pop.spots[int(rng.integers(len(pop.spots)))]
            b2 = Blob(
                blob.cy + scene.fov_offset[0] + rng.normal(0, 0.5),
                blob.cx + scene.fov_offset[1] + rng.normal(0, 0.5),
                blob.sigma_major,
                blob.sigma_minor,
                blob.angle,
                blob.irregularity,
                blob.shape_seed,
            )
            fp = perturb_footprint(render_blob(b2, h, w) * tv, rng, shape)
            kind, tc, src = "ghost", None, None
        else:
            y, x = rng.uniform(2, h - 3), rng.uniform(2, w - 3)
            fp = perturb_footprint(
                render_blob(ctx.soma_blob(y, x, rng.uniform(8 * sc, 14 * sc)), h, w) * tv, rng, shape
            )
            kind, tc, src = "ghost", None, None
        tr = ctx.kernel_like(src)
        arts.append(
            Unit(
                kind=kind,
                label="bad",
                reason="no_transients",
                footprint=fp,
                mixing=ctx.crosstalk(fp, (0.05, 0.3)),
                bg_weight=float(rng.uniform(0.03, 0.2)),
                motion_weight=float(rng.uniform(0.2, 0.8)),
                noise_factor=float(rng.uniform(1.0, 1.3)),
                tau_rise_s=tr[0],
                tau_decay_s=tr[1],
                true_cell=tc,
                source_cell=src,
            )
        )
    return arts


def _dendrite(ctx: ExtractionContext, with_dend: list[int]) -> Unit:
    """A good cell's dendrite as its own unit (the cell is removed from ``with_dend``)."""
    rng = ctx.rng
    j = ctx.pick_one(with_dend)
    with_dend.remove(j)
    fp = perturb_footprint(ctx.deff[j].toarray().ravel(), rng, ctx.shape, noise=0.15)
    return Unit(
        kind="dendrite",
        label="bad",
        reason="irregular_shape",
        footprint=fp,
        dendrite_mixing={j: float(rng.uniform(0.6, 1.0))},
        mixing=ctx.crosstalk(fp, (0.2, 0.6)),
        source_cell=j,
    )


def _large_blob(ctx: ExtractionContext, oof_active: list[int]) -> Unit:
    """An active out-of-focus neuron (removed from ``oof_active``): big and diffuse."""
    rng = ctx.rng
    j = ctx.pick_one(oof_active)
    oof_active.remove(j)
    fp = perturb_footprint(ctx.eff_img(j), rng, ctx.shape, noise=0.12)
    mix = ctx.crosstalk(fp, (0.2, 0.6), exclude=(j,))
    mix[j] = float(rng.uniform(0.7, 1.0))
    return Unit(
        kind="large_blob",
        label="bad",
        reason="irregular_shape",
        footprint=fp,
        mixing=mix,
        bg_weight=float(rng.uniform(0.1, 0.4)),
        true_cell=j,
        source_cell=j,
    )


def _fragment(ctx: ExtractionContext) -> Unit:
    """A tiny piece of a donor cell (or of nothing, when there is no donor)."""
    rng, tv, cy, cx, rad, sc = ctx.rng, ctx.tv, ctx.cy, ctx.cx, ctx.rad, ctx.scale
    h, w = ctx.shape
    j = ctx.pick(ctx.donors) if ctx.donors else None
    if j is None:
        y, x, r0 = rng.uniform(2, h - 3), rng.uniform(2, w - 3), 4.0 * sc
    else:
        ang = rng.uniform(0, 2 * math.pi)
        r0 = rad[j] * rng.uniform(0.4, 0.8)
        y, x = cy[j] + r0 * math.sin(ang), cx[j] + r0 * math.cos(ang)
    small = Blob(
        y,
        x,
        rng.uniform(0.8 * sc, 1.4 * sc),
        rng.uniform(0.5 * sc, 0.9 * sc),
        rng.uniform(0, math.pi),
        0.2,
        int(rng.integers(0, 2**31 - 1)),
    )
    img = render_blob(small, h, w)
    if j is not None:
        img = img * (0.3 + ctx.eff_img(j) / max(ctx.eff_img(j).max(), 1e-12))
    fp = perturb_footprint(img * tv, rng, ctx.shape, noise=0.15)
    mix = ctx.crosstalk(fp, (0.5, 1.0))
    return Unit(
        kind="fragment",
        label="bad",
        reason="irregular_shape",
        footprint=fp,
        mixing=mix,
        noise_factor=float(rng.uniform(1.1, 1.5)),
        source_cell=j,
    )


def _ragged(ctx: ExtractionContext) -> Unit:
    """Several lobes around a point between cells, with their weak signals."""
    rng, tv, cy, cx, rad, sc = ctx.rng, ctx.tv, ctx.cy, ctx.cx, ctx.rad, ctx.scale
    h, w = ctx.shape
    j = ctx.pick(ctx.donors) if ctx.donors else None
    if j is None:
        y, x = rng.uniform(4, h - 5), rng.uniform(4, w - 5)
    else:
        ang = rng.uniform(0, 2 * math.pi)
        y, x = cy[j] + 1.1 * rad[j] * math.sin(ang), cx[j] + 1.1 * rad[j] * math.cos(ang)
    img = np.zeros(h * w)
    for _k in range(int(rng.integers(3, 6))):
        lobe = Blob(
            y + rng.normal(0, 3.5 * sc),
            x + rng.normal(0, 3.5 * sc),
            rng.uniform(1.2 * sc, 2.8 * sc),
            rng.uniform(0.7 * sc, 1.5 * sc),
            rng.uniform(0, math.pi),
            0.3,
            int(rng.integers(0, 2**31 - 1)),
        )
        img = np.maximum(img, render_blob(lobe, h, w) * rng.uniform(0.5, 1.0))
    fp = perturb_footprint(img * tv, rng, ctx.shape, noise=0.2)
    return Unit(
        kind="ragged",
        label="bad",
        reason="irregular_shape",
        footprint=fp,
        mixing=ctx.crosstalk(fp, (0.4, 1.0)),
        bg_weight=float(rng.uniform(0.1, 0.5)),
        noise_factor=float(rng.uniform(1.1, 1.4)),
        source_cell=j,
    )


def irregular_shape_units(ctx: ExtractionContext, n: int) -> list[Unit]:
    """``n`` artifacts of irregular shape (see the module docstring).

    Each artifact's kind is drawn among those possible (dendrites and large blobs
    twice as likely as fragments and ragged patches, when there are any left).
    """
    pop, rng, n_spk = ctx.pop, ctx.rng, ctx.n_spk
    n_neurons = len(pop.neurons)
    with_dend = [j for j in ctx.good_cells if pop.neurons[j].dendrite is not None and ctx.deff_norm[j] > 0]
    oof_active = [int(j) for j in range(pop.n_in_focus, n_neurons) if n_spk[j] > 0 and ctx.eff_norm[j] > 0]
    arts: list[Unit] = []
    for _ in range(n):
        options = ["fragment", "ragged"]
        if with_dend:
            options += ["dendrite", "dendrite"]
        if oof_active:
            options += ["large_blob", "large_blob"]
        kind = options[int(rng.integers(len(options)))]
        if kind == "dendrite":
            u = _dendrite(ctx, with_dend)
        elif kind == "large_blob":
            u = _large_blob(ctx, oof_active)
        elif kind == "fragment":
            u = _fragment(ctx)
        else:
            u = _ragged(ctx)
        u.tau_rise_s, u.tau_decay_s = ctx.kernel_like(u.source_cell)
        arts.append(u)
    return arts
