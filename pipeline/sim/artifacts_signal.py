"""Artifacts of the simulated extraction whose signal is not their own.

``borrowed_fluorescence``
    A soma-like footprint touching an active cell where the movie has no cell; its
    trace is a scaled copy of the neighbour's signal plus its own noise.
``overlap``
    A near-duplicate (shifted 1-3 px, > 50 % overlap) of an active cell sharing its
    signal.
``background``
    A large diffuse footprint on the background whose trace is the slow background
    fluctuation (with the neuropil's population-activity bumps).

The ``*_units(ctx, n)`` functions (one per reason above) follow the contract of the
artifact families in :mod:`~cellsift.pipeline.sim.cells`.
"""

from __future__ import annotations

import math

import numpy as np

from cellsift.pipeline.sim.cells import ExtractionContext
from cellsift.pipeline.sim.footprints import Unit, overlap_fraction, perturb_footprint, render_blob
from cellsift.pipeline.sim.geometry import Blob

__all__ = ["borrowed_units", "overlap_units", "background_units"]


def _touching_footprint(ctx: ExtractionContext, j: int) -> np.ndarray | None:
    """A soma-like footprint touching cell ``j`` where there is no other cell, or None.

    Up to 30 tries; a place is kept when the new soma overlaps ``j`` a little
    (0-45 % of the smaller support) and comes no closer than 0.8 of the summed radii
    to any other in-focus cell.
    """
    rng, pop, tv, cy, cx, rad, sc = ctx.rng, ctx.pop, ctx.tv, ctx.cy, ctx.cx, ctx.rad, ctx.scale
    shape = ctx.shape
    h, w = shape
    ej = ctx.eff_img(j)
    for _try in range(30):
        d_new = rng.uniform(8.0 * sc, 14.0 * sc)
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
        img = render_blob(ctx.soma_blob(y, x, d_new), h, w)
        ov = overlap_fraction(img.reshape(shape), ej.reshape(shape))
        if 0.0 < ov < 0.45:
            return perturb_footprint(img * tv, rng, shape)
    return None


def borrowed_units(ctx: ExtractionContext, n: int) -> list[Unit]:
    """``n`` artifacts that borrow a neighbouring cell's fluorescence (see the module docstring)."""
    rng, tv, cy, cx = ctx.rng, ctx.tv, ctx.cy, ctx.cx
    shape = ctx.shape
    h, w = shape
    arts: list[Unit] = []
    for _ in range(n):
        j = ctx.pick(ctx.donors)
        fp = _touching_footprint(ctx, j) if j is not None else None
        if fp is None:  # no room: a soma-like blob anywhere, borrowing from the closest cell
            y, x = rng.uniform(2, h - 3), rng.uniform(2, w - 3)
            fp = perturb_footprint(
                render_blob(ctx.soma_blob(y, x, rng.uniform(8 * ctx.scale, 14 * ctx.scale)), h, w) * tv,
                rng,
                shape,
            )
            if ctx.good_cells:
                j = min(ctx.good_cells, key=lambda k: math.hypot(cy[k] - y, cx[k] - x))
        mix = ctx.crosstalk(fp, (0.1, 0.4), exclude=(j,) if j is not None else ())
        if j is not None:
            mix[j] = float(rng.uniform(0.25, 0.8))
        tr = ctx.kernel_like(j)
        arts.append(
            Unit(
                kind="neighbour_spill",
                label="bad",
                reason="borrowed_fluorescence",
                footprint=fp,
                mixing=mix,
                bg_weight=float(rng.uniform(0.05, 0.25)),
                noise_factor=float(rng.uniform(1.0, 1.3)),
                tau_rise_s=tr[0],
                tau_decay_s=tr[1],
                source_cell=j,
            )
        )
    return arts


def _duplicate_footprint(ctx: ExtractionContext, j: int) -> np.ndarray:
    """Cell ``j``'s soma shifted 1-3 px and rescaled, overlapping it by > 55 % (20 tries)."""
    rng, tv, cy, cx = ctx.rng, ctx.tv, ctx.cy, ctx.cx
    shape = ctx.shape
    h, w = shape
    nb = ctx.pop.neurons[j].blob
    ej = ctx.eff_img(j)
    for _try in range(20):
        sh = rng.uniform(1.0 * ctx.scale, 3.0 * ctx.scale)
        ang = rng.uniform(0, 2 * math.pi)
        sc_ = rng.uniform(0.8, 1.2)
        b2 = Blob(
            cy[j] + sh * math.sin(ang),
            cx[j] + sh * math.cos(ang),
            nb.sigma_major * sc_,
            nb.sigma_minor * sc_,
            nb.angle + rng.normal(0, 0.3),
            nb.irregularity,
            int(rng.integers(0, 2**31 - 1)),
        )
        img = render_blob(b2, h, w)
        if overlap_fraction(img.reshape(shape), ej.reshape(shape)) > 0.55:
            return perturb_footprint(img * tv, rng, shape)
    return perturb_footprint(ej, rng, shape, noise=0.15)


def overlap_units(ctx: ExtractionContext, n: int) -> list[Unit]:
    """Up to ``n`` near-duplicates of donor cells (see the module docstring).

    Each donor is used once while possible; there are none without donors. The
    duplicated cell's own unit gives up part of its signal to the duplicate (its mixing
    weight in ``ctx.cell_units`` is lowered).
    """
    rng, donors = ctx.rng, ctx.donors
    used_dup: set[int] = set()
    arts: list[Unit] = []
    for _ in range(n):
        cands = [j for j in donors if j not in used_dup] or donors
        j = ctx.pick(cands)
        if j is None:
            break
        used_dup.add(j)
        fp = _duplicate_footprint(ctx, j)
        beta = float(rng.uniform(0.3, 0.9))
        mix = ctx.crosstalk(fp, (0.05, 0.2), exclude=(j,))
        mix[j] = beta
        for u in ctx.cell_units:
            if u.true_cell == j:  # the original gives up part of its signal
                u.mixing[j] *= 1.0 - 0.3 * beta
        tr = ctx.kernel_like(j)
        arts.append(
            Unit(
                kind="duplicate",
                label="bad",
                reason="overlap",
                footprint=fp,
                mixing=mix,
                bg_weight=float(rng.uniform(0.03, 0.2)),
                noise_factor=float(rng.uniform(1.1, 1.5)),
                tau_rise_s=tr[0],
                tau_decay_s=tr[1],
                source_cell=j,
            )
        )
    return arts


def _climb(npil: np.ndarray, y: float, x: float) -> tuple[float, float]:
    """Climb from ``(y, x)`` to a nearby local maximum of ``npil`` (7 x 7 steps, at most 30)."""
    h, w = npil.shape
    for _step in range(30):
        iy, ix = int(round(y)), int(round(x))
        y0, y1, x0, x1 = max(0, iy - 3), min(h, iy + 4), max(0, ix - 3), min(w, ix + 4)
        win = npil[y0:y1, x0:x1]
        my, mx = np.unravel_index(int(np.argmax(win)), win.shape)
        if (my + y0, mx + x0) == (iy, ix):
            break
        y, x = float(my + y0), float(mx + x0)
    return y, x


def background_units(ctx: ExtractionContext, n: int) -> list[Unit]:
    """``n`` large diffuse units at local maxima of the neuropil (see the module docstring)."""
    rng, tv = ctx.rng, ctx.tv
    shape = ctx.shape
    h, w = shape
    npil = ctx.scene.bg_images[-1].reshape(shape).astype(np.float64)
    bg_at: list[tuple[float, float]] = []
    arts: list[Unit] = []
    for _ in range(n):
        y_start, x_start = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        # climb to a nearby local maximum of the neuropil field (unless one is taken)
        y, x = _climb(npil, y_start, x_start)
        if any(math.hypot(y - by, x - bx) < 12.0 * ctx.scale for by, bx in bg_at):
            y, x = y_start, x_start
        bg_at.append((y, x))
        sig_px = rng.uniform(4.5 * ctx.scale, 14.0 * ctx.scale)
        blob = Blob(
            y,
            x,
            sig_px * rng.uniform(1.0, 1.5),
            sig_px / rng.uniform(1.0, 1.3),
            rng.uniform(0, math.pi),
            float(rng.uniform(0.2, 0.45)),
            int(rng.integers(0, 2**31 - 1)),
        )
        img = render_blob(blob, h, w) * (npil.ravel() / npil.mean()) ** 2
        fp = perturb_footprint(img * tv, rng, shape, noise=0.15)
        arts.append(
            Unit(
                kind="background",
                label="bad",
                reason="background",
                footprint=fp,
                mixing=ctx.crosstalk(fp, (0.05, 0.35)),
                bg_weight=float(rng.uniform(0.15, 0.5)),
                motion_weight=float(rng.uniform(0.2, 0.6)),
                noise_factor=float(rng.uniform(0.9, 1.2)),
                tau_rise_s=float(rng.uniform(0.08, 0.2)),
                tau_decay_s=float(rng.uniform(0.8, 2.0)),
            )
        )
    return arts
