"""The simulated extraction made by a CNMF-style factorisation, labelled against the truth.

:func:`extract_cnmf` runs :func:`~cellsift.pipeline.sim.cnmf.factorise` on the reduced
movie a :class:`~cellsift.pipeline.sim.cnmf_movie.MovieCollector` gathered while the
session was rendered, brings the footprints back to full resolution, unmixes the raw
traces from the full movie and estimates them as CNMF does (:func:`temporal_update`):
non-negative traces by HALS, and ``C_raw = C + YrA``, each component's own projection
of the data minus its neighbours' non-negative traces; the simulator's deconvolution
then gives ``C`` and ``S`` from ``C_raw``.

Each component is then labelled against the simulator's truth (:func:`label_components`)
from footprint IoU and cosine with every neuron's true image and from the correlation
of its raw trace with every neuron's true signal. Good: it is the best match (IoU > 0.5
or cosine >= 0.8, trace correlation >= 0.5) of one active in-focus neuron. Bad, with a kind and the reason
the models know (:data:`KIND_REASON`):

``duplicate`` (reason ``overlap``)
    on a neuron another component already matches better;
``merge`` (``irregular_shape``)
    covers two or more active neurons and carries their signals;
``fragment``, ``dendrite``, ``out_of_focus`` (``irregular_shape``)
    part of a cell (or too large for it), a dendrite, an out-of-focus neuron;
``neighbour_residual`` (``borrowed_fluorescence``)
    off any cell, its trace is a neighbour's signal;
``silent_cell``, ``poor_trace`` (``no_transients``)
    on a real cell that is silent, or whose trace does not follow it;
``noise`` (``no_transients``), ``background`` (``background``)
    no neuron: a small noise component, or a large or neuropil-driven one.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy import ndimage

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.cells import ExtractionContext, make_context
from cellsift.pipeline.sim.cnmf import CnmfParams, factorise
from cellsift.pipeline.sim.cnmf_movie import MovieCollector, project_full
from cellsift.pipeline.sim.deconvolution import deconvolve
from cellsift.pipeline.sim.extract import Extraction
from cellsift.pipeline.sim.footprints import Unit
from cellsift.pipeline.sim.movie import Scene
from cellsift.pipeline.sim.population import Population
from cellsift.pipeline.sim.traces import column_major_footprints

__all__ = [
    "GOOD_CORR",
    "GOOD_COS",
    "GOOD_IOU",
    "KIND_REASON",
    "extract_cnmf",
    "label_components",
    "temporal_update",
]

log = logging.getLogger(__name__)

#: Reason (one of :data:`~cellsift.pipeline.sim.extract.ARTIFACT_REASONS`) of each kind of bad component.
KIND_REASON: Final = {
    "duplicate": "overlap",
    "merge": "irregular_shape",
    "fragment": "irregular_shape",
    "dendrite": "irregular_shape",
    "out_of_focus": "irregular_shape",
    "neighbour_residual": "borrowed_fluorescence",
    "silent_cell": "no_transients",
    "poor_trace": "no_transients",
    "noise": "no_transients",
    "background": "background",
}
#: A good component overlaps its neuron's support by more than this IoU (or its
#: footprint's cosine with the neuron's image is at least :data:`GOOD_COS`) ...
GOOD_IOU: Final = 0.5
GOOD_COS: Final = 0.8
#: ... and its raw trace correlates with the neuron's true signal at least this much.
GOOD_CORR: Final = 0.5
#: Supports of footprints and true images: pixels above this fraction of the peak.
_SUPPORT: Final = 0.2


def _upsample(a_red: np.ndarray, ssub: int, shape: tuple[int, int]) -> np.ndarray:
    """Footprints ``(K, h', w')`` at full resolution ``(K, h, w)``, trimmed, unit L2 norm.

    As CNMF-E's post-processing, pixels below 0.1 of the peak are dropped and only the
    connected piece holding the peak is kept.
    """
    k = a_red.shape[0]
    out = np.zeros((k, *shape))
    for i in range(k):
        img = a_red[i] if ssub == 1 else ndimage.zoom(a_red[i], ssub, order=1, grid_mode=True, mode="nearest")
        img = np.maximum(img[: shape[0], : shape[1]], 0.0)
        keep = img >= 0.1 * max(float(img.max()), 1e-12)
        lab, _ = ndimage.label(keep)
        peak = lab.flat[int(np.argmax(img))]
        out[i, : img.shape[0], : img.shape[1]] = np.where(lab == peak, img, 0.0) if peak else img
    n = np.linalg.norm(out.reshape(k, -1), axis=1)
    return out / np.maximum(n, 1e-12)[:, None, None]


def _baseline(c_raw: np.ndarray, fps: float, window_s: float = 30.0) -> np.ndarray:
    """Each trace's slow baseline: medians of ``window_s`` windows, interpolated."""
    k, t = c_raw.shape
    win = max(10, int(round(window_s * fps)))
    n_win = max(1, t // win)
    edges = np.linspace(0, t, n_win + 1).astype(int)
    centres = 0.5 * (edges[:-1] + edges[1:])
    med = np.stack(
        [np.median(c_raw[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1
    )
    frames = np.arange(t)
    return np.stack([np.interp(frames, centres, m) for m in med]) if k else np.zeros((0, t))


def temporal_update(gram: np.ndarray, rhs: np.ndarray, *, fps: float, sweeps: int = 6) -> np.ndarray:
    """CNMF's ``C_raw = C + YrA`` from the normal equations ``M c = r`` of the traces.

    The least-squares traces give each component's slow baseline; without it, ``C``
    (non-negative) comes from HALS sweeps over the components, and ``YrA`` is each
    component's residual ``(r - M C) / diag(M)``: a duplicate's raw trace shows the cell
    it shares, as in a real extraction, rather than the least-squares split of it.

    Parameters
    ----------
    gram
        ``M = A L(A)^T`` ``(K, K)``.
    rhs
        ``r = A L(Y)`` ``(K, n_frames)``.
    fps
        Frame rate (Hz) (the baseline window is 30 s).
    sweeps
        HALS sweeps.

    Returns
    -------
    numpy.ndarray
        ``C_raw`` ``(K, n_frames)`` float64, baseline near 0.
    """
    k = gram.shape[0]
    if k == 0:
        return np.zeros_like(rhs)
    c_ls = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), rhs)
    base = _baseline(c_ls, fps)
    r0 = rhs - gram @ base
    c = np.maximum(c_ls - base, 0.0)
    diag = np.maximum(np.diag(gram), 1e-12)
    nbrs = [np.flatnonzero(gram[j]) for j in range(k)]
    for _ in range(sweeps):
        for j in range(k):
            nb = nbrs[j]
            c[j] = np.maximum(0.0, c[j] + (r0[j] - gram[j, nb] @ c[nb]) / diag[j])
    return c + (r0 - gram @ c) / diag[:, None]


def _decay_s(trace: np.ndarray, fps: float) -> float:
    """Decay time (s) from the lag-2 / lag-1 autocovariance ratio, clipped to 0.25-2 s."""
    x = trace - trace.mean()
    a1, a2 = float(x[1:] @ x[:-1]), float(x[2:] @ x[:-2])
    if a1 <= 0 or a2 <= 0:
        return 0.7
    g = min(max(a2 / a1, 0.05), 0.995)
    return float(np.clip(-1.0 / (fps * math.log(g)), 0.25, 2.0))


def _standardise(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit L2 norm (zero rows stay zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _supports(rows: sp.csr_matrix | np.ndarray) -> sp.csr_matrix:
    """Binary supports (above :data:`_SUPPORT` of each row's peak) as CSR float."""
    m = sp.csr_matrix(rows)
    peak = np.asarray(m.max(axis=1).todense()).ravel()
    m = m.multiply(sp.csr_matrix(1.0 / np.maximum(peak, 1e-12)).T).tocsr()
    m.data = (m.data > _SUPPORT).astype(np.float64)
    m.eliminate_zeros()
    return m


def _measures(
    a: np.ndarray, c_raw: np.ndarray, ctx: ExtractionContext, activity: Activity
) -> dict[str, np.ndarray]:
    """Footprint IoU, cover and cosine and trace correlation of each component with each neuron."""
    s_comp, s_true = _supports(a), _supports(ctx.eff)
    inter = np.asarray((s_comp @ s_true.T).todense())
    n_c = np.asarray(s_comp.sum(axis=1)).ravel()
    n_t = np.asarray(s_true.sum(axis=1)).ravel()
    union = n_c[:, None] + n_t[None, :] - inter
    an = np.linalg.norm(a, axis=1)
    cos = np.asarray((ctx.eff @ a.T).T) / (an[:, None] * np.maximum(ctx.eff_norm, 1e-12)[None, :])
    dcos = np.asarray((ctx.deff @ a.T).T) / (an[:, None] * np.maximum(ctx.deff_norm, 1e-12)[None, :])
    zc = _standardise(c_raw)
    return {
        "iou": np.divide(inter, union, out=np.zeros_like(inter), where=union > 0),
        "cover": inter / np.maximum(n_t, 1)[None, :],
        "cos": cos,
        "dcos": dcos,
        "corr": zc @ _standardise(ctx.sig).T,
        "bg_corr": zc @ _standardise(activity.bg_temporal[-1:]).ravel(),
        "area": n_c,
        "true_area": n_t,
    }


def _assign_good(m: dict[str, np.ndarray], ctx: ExtractionContext) -> dict[int, int]:
    """Component -> neuron of the good matches (greedy by footprint cosine, one component per neuron)."""
    nf = ctx.pop.n_in_focus
    active = ctx.n_spk[:nf] > 0
    shape_ok = (m["iou"][:, :nf] > GOOD_IOU) | (m["cos"][:, :nf] >= GOOD_COS)
    ok = shape_ok & (m["corr"][:, :nf] >= GOOD_CORR) & active[None, :]
    pairs = sorted(zip(*np.nonzero(ok), strict=True), key=lambda p: -m["cos"][p[0], p[1]])
    comp_to: dict[int, int] = {}
    taken: set[int] = set()
    for k, j in pairs:
        if int(k) not in comp_to and int(j) not in taken:
            comp_to[int(k)] = int(j)
            taken.add(int(j))
    return comp_to


def _kind(
    k: int, m: dict[str, np.ndarray], ctx: ExtractionContext, good: dict[int, int]
) -> tuple[str, int | None, int | None]:
    """``(kind, true_cell, source_cell)`` of component ``k`` (see the module notes)."""
    nf = ctx.pop.n_in_focus
    active = ctx.n_spk[:nf] > 0
    carried = np.flatnonzero((m["cover"][k, :nf] >= 0.5) & (m["corr"][k, :nf] >= 0.3) & active)
    if carried.size >= 2:
        return "merge", None, int(carried[np.argmax(m["corr"][k, carried])])
    if k in good:
        return "cell", good[k], good[k]
    cos_in = m["cos"][k, :nf]
    j = int(np.argmax(cos_in)) if nf else -1
    if j >= 0 and (cos_in[j] >= 0.5 or m["iou"][k, j] >= 0.3):
        if j in good.values():
            return "duplicate", None, j
        if m["corr"][k, j] < GOOD_CORR:
            return ("poor_trace" if active[j] else "silent_cell"), j, j
        return "fragment", None, j
    if nf and m["dcos"][k, :nf].max() >= 0.5:
        jd = int(np.argmax(m["dcos"][k, :nf]))
        return "dendrite", None, jd
    if m["cos"].shape[1] > nf and m["cos"][k, nf:].max() >= 0.5:
        jo = nf + int(np.argmax(m["cos"][k, nf:]))
        return "out_of_focus", jo, jo
    near = np.flatnonzero(m["cos"][k, :nf] > 0.02)
    if near.size and m["corr"][k, near].max() >= 0.4:
        return "neighbour_residual", None, int(near[np.argmax(m["corr"][k, near])])
    big = m["area"][k] >= 2.0 * float(np.median(m["true_area"][:nf])) if nf else False
    if big or m["bg_corr"][k] >= 0.3:
        return "background", None, None
    return "noise", None, None


def label_components(
    a: np.ndarray, c_raw: np.ndarray, ctx: ExtractionContext, activity: Activity
) -> list[Unit]:
    """Label components against the truth (see the module notes).

    Parameters
    ----------
    a
        Footprints ``(K, n_pixels)`` (row-major, unit L2 norm).
    c_raw
        Raw traces ``(K, n_frames)``.
    ctx
        The session's extraction context (true images and signals).
    activity
        The session's activity.

    Returns
    -------
    list of Unit
        One unit per component, in order, with ``info`` holding the match measures.
    """
    if a.shape[0] == 0:
        return []
    m = _measures(a, c_raw, ctx, activity)
    good = _assign_good(m, ctx)
    units: list[Unit] = []
    for k in range(a.shape[0]):
        kind, tc, src = _kind(k, m, ctx, good)
        j = src if src is not None else int(np.argmax(m["cos"][k]))
        units.append(
            Unit(
                kind=kind,
                label="good" if kind == "cell" else "bad",
                reason="" if kind == "cell" else KIND_REASON[kind],
                footprint=a[k],
                true_cell=tc,
                source_cell=src,
                info={
                    "source": "cnmf",
                    "iou": round(float(m["iou"][k, j]), 4),
                    "footprint_cos": round(float(m["cos"][k, j]), 4),
                    "trace_corr": round(float(m["corr"][k, j]), 4),
                },
            )
        )
    return units


def extract_cnmf(
    collector: MovieCollector,
    pop: Population,
    scene: Scene,
    activity: Activity,
    rng: np.random.Generator,
    *,
    fps: float,
    params: CnmfParams | None = None,
) -> Extraction:
    """The CNMF-style extraction of one session, labelled against the truth.

    Parameters
    ----------
    collector
        The movie collected while rendering (reduced movie, full-resolution blocks).
    pop, scene, activity
        The animal's population, the session's spatial components and its activity.
    rng
        Random generator of the extraction (only the deleted-id gaps are drawn).
    fps
        Frame rate (Hz).
    params
        Factorisation settings; default: CNMF-E-like ones for the plan's cell size.

    Returns
    -------
    Extraction
        Components in seeding order, footprints unit-norm, traces in counts.
    """
    plan = collector.plan
    border = int(math.ceil(float(np.abs(collector.shifts).max(initial=0.0)) / plan.ssub)) + 1
    prm = params or CnmfParams(diameter=plan.reduced_diameter, border=border)
    a_red, _ = factorise(collector.reduced_movie(), prm)
    collector.reduced = np.zeros((0, 0, 0), dtype=np.float32)
    shape = (plan.height, plan.width)
    a_full = _upsample(a_red, plan.ssub, shape)
    gram, rhs = project_full(a_full, collector.full_blocks(), sigma_bg=plan.sigma_bg, n_frames=plan.n_frames)
    collector.release()
    c_raw = temporal_update(gram, rhs, fps=fps)
    a_flat = a_full.reshape(a_full.shape[0], -1)
    units = label_components(a_flat, c_raw, make_context(pop, scene, activity, rng), activity)
    taus = [(0.07, _decay_s(c, fps)) for c in c_raw]
    for u, (tr, td) in zip(units, taus, strict=True):
        u.tau_rise_s, u.tau_decay_s = tr, td
    c, s = deconvolve(c_raw, taus, fps=fps)
    gaps = rng.choice([0] * 14 + [1, 1, 2, 4], size=len(units))  # deleted components
    ids = np.cumsum(1 + gaps).astype(np.int64)
    a_mat = column_major_footprints(units, plan.height, plan.width)
    kinds = {kd: sum(u.kind == kd for u in units) for kd in ("cell", *KIND_REASON)}
    log.debug("cnmf extraction: %s", {kd: n for kd, n in kinds.items() if n})
    return Extraction(units=units, ids=ids, A=a_mat, C=c, C_raw=c_raw, S=s)
