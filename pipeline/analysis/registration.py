"""The cross-day cell registry (table ``cell_registry``).

Per animal, :func:`register_animal` gives the units of different sessions that are the
same neuron one ``cell_key``, so "was this day-3 cell selective on day 1?" is a join.
Its files carry their own key (the animal's sessions and the registration parameters,
:func:`registry_plan`), so only animals whose sessions or parameters changed are
registered again (:func:`build_registry`, one task per animal).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.catalog import LakeLayout, SessionRecord, write_parquet_atomic
from cellsift.pipeline.analysis.params import ANALYSIS_VERSION, AnalysisParams, RegistrationParams
from cellsift.pipeline.analysis.store import arrow_table, stored_key, with_key
from cellsift.pipeline.executor import PROCESSED, SessionOutcome, run_sessions
from cellsift.pipeline.provenance import stable_hash
from cellsift.pipeline.stages import centroids, read_footprints_sparse
from cellsift.schemas import ANALYSIS_TABLES, SessionKey

logger = logging.getLogger(__name__)

__all__ = ["REGISTRY_STAGE", "estimate_shift", "register_animal", "registry_plan", "build_registry"]

#: Stage name of the registry in outcomes, error lines and Dask task keys.
REGISTRY_STAGE: Final = "registry"


def _registration_image(group: Any) -> np.ndarray:
    for name in ("max_proj", "Cn"):
        if name in group:
            return np.asarray(group[name][:], dtype=np.float64)
    a = group["A"]
    return np.asarray(
        sum(np.asarray(a[i : i + 32], dtype=np.float64).sum(axis=0) for i in range(0, a.shape[0], 32))
    )


def estimate_shift(
    reference: np.ndarray, image: np.ndarray, *, max_shift_px: int = 30, highpass_sigma_px: float = 5.0
) -> tuple[float, float]:
    """Field-of-view shift of ``image`` against ``reference`` by phase correlation.

    Parameters
    ----------
    reference, image
        2-D images (e.g. maximum projections) of two sessions; cropped to their common
        size if they differ.
    max_shift_px
        Largest shift searched (px).
    highpass_sigma_px
        A Gaussian of this SD (px) is subtracted from both images first.

    Returns
    -------
    tuple
        ``(dy, dx)`` in px (sub-pixel): a structure at ``(y, x)`` in ``reference`` is at
        ``(y + dy, x + dx)`` in ``image``.
    """
    from scipy import ndimage

    h = min(reference.shape[0], image.shape[0])
    w = min(reference.shape[1], image.shape[1])
    a = np.asarray(reference[:h, :w], dtype=np.float64)
    b = np.asarray(image[:h, :w], dtype=np.float64)
    a = a - ndimage.gaussian_filter(a, highpass_sigma_px)
    b = b - ndimage.gaussian_filter(b, highpass_sigma_px)
    win = np.outer(np.hanning(h), np.hanning(w))  # no wrap-around edges
    cross = np.fft.fft2(b * win) * np.conj(np.fft.fft2(a * win))
    corr = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
    dy = np.fft.fftfreq(h, 1.0 / h)
    dx = np.fft.fftfreq(w, 1.0 / w)
    allowed = (np.abs(dy)[:, None] <= max_shift_px) & (np.abs(dx)[None, :] <= max_shift_px)
    corr = np.where(allowed, corr, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        den = c_m - 2.0 * c_0 + c_p
        return 0.0 if not np.isfinite(den) or den >= 0 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))

    fy = refine(corr[(iy - 1) % h, ix], corr[iy, ix], corr[(iy + 1) % h, ix])
    fx = refine(corr[iy, (ix - 1) % w], corr[iy, ix], corr[iy, (ix + 1) % w])
    return float(dy[iy] + fy), float(dx[ix] + fx)


def _move_footprints(A: Any, dims: tuple[int, int], out_dims: tuple[int, int], shift: tuple[int, int]) -> Any:
    """Footprints ``(K, H*W)`` moved by ``-shift`` (integer px) into an ``out_dims`` frame."""
    import scipy.sparse as sp

    coo = A.tocoo()
    y, x = np.divmod(coo.col, dims[1])
    y = y - shift[0]
    x = x - shift[1]
    keep = (y >= 0) & (y < out_dims[0]) & (x >= 0) & (x < out_dims[1])
    return sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], y[keep] * out_dims[1] + x[keep])),
        shape=(A.shape[0], out_dims[0] * out_dims[1]),
    )


def _unit_rows(A: Any) -> Any:
    """Rows scaled to unit L2 norm (cosine similarity by a product)."""
    import scipy.sparse as sp

    norm = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
    inv = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-30), 0.0)
    return sp.diags(inv) @ A


@dataclass
class _Cells:
    """The distinct cells seen so far: centroids and footprints (reference frame), first session."""

    centroid: np.ndarray
    footprint: Any
    first: list[str]


def _match_units(
    cent: np.ndarray, moved: Any, seen: _Cells, params: RegistrationParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one match of a session's units to the cells seen so far.

    Returns ``(match, distance, similarity)`` per unit; ``match`` is ``-1`` (and the
    others NaN) for units that match no cell.
    """
    from scipy.optimize import linear_sum_assignment

    n = len(cent)
    match = np.full(n, -1, dtype=np.int64)
    dist_out = np.full(n, np.nan)
    sim_out = np.full(n, np.nan)
    t_cent = seen.centroid
    if n and len(t_cent):
        dist = np.hypot(cent[:, None, 0] - t_cent[None, :, 0], cent[:, None, 1] - t_cent[None, :, 1])
        sim = np.asarray((moved @ seen.footprint.T).todense())
        ok = (dist <= params.max_distance_px) & (sim >= params.min_footprint_similarity)
        if ok.any():
            cost = np.where(ok, dist / params.max_distance_px + (1.0 - sim), 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if ok[r, c]:
                    match[r], dist_out[r], sim_out[r] = c, dist[r, c], sim[r, c]
    return match, dist_out, sim_out


def register_animal(
    lake_root: str, records: list[SessionRecord], params: RegistrationParams, key: str
) -> list[str]:
    """Give the same ``cell_key`` to the units of one animal that are the same neuron.

    Sessions are taken in day order; the first is the *reference*. Each session's field
    of view is aligned to the reference by phase correlation of the maximum projections
    (:func:`estimate_shift`), its footprints are moved into the reference frame, and its
    units are matched one-to-one (Hungarian assignment on centroid distance) to the
    cells seen so far: a match needs a centroid distance <= ``max_distance_px`` and a
    footprint cosine similarity >= ``min_footprint_similarity``. Unmatched units start a
    new ``cell_key``, so a cell first seen on day 2 is still followed to day 3.

    Parameters
    ----------
    lake_root
        The lake folder.
    records
        The animal's sessions.
    params
        Registration parameters.
    key
        The key the files carry (:func:`registry_plan`).

    Returns
    -------
    list of str
        The sessions whose ``cell_registry`` file was written.
    """
    import scipy.sparse as sp
    import zarr

    layout = LakeLayout(Path(lake_root))
    records = sorted(records, key=lambda r: (r.day, r.session))
    ref = records[0]
    ref_group: Any = zarr.open_group(str(layout.root / ref.dataset_path), mode="r")
    ref_img = _registration_image(ref_group)
    ref_dims = (int(ref_group["A"].shape[1]), int(ref_group["A"].shape[2]))
    seen = _Cells(np.zeros((0, 2)), sp.csr_matrix((0, ref_dims[0] * ref_dims[1])), [])
    written = []
    schema = with_key(ANALYSIS_TABLES["cell_registry"], key)
    for rec in records:
        group: Any = (
            ref_group if rec is ref else zarr.open_group(str(layout.root / rec.dataset_path), mode="r")
        )
        dims = (int(group["A"].shape[1]), int(group["A"].shape[2]))
        unit_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
        A = read_footprints_sparse(group["A"]).astype(np.float64)
        if rec is ref:
            shift = (0.0, 0.0)
        else:
            shift = estimate_shift(
                ref_img,
                _registration_image(group),
                max_shift_px=params.max_shift_px,
                highpass_sigma_px=params.highpass_sigma_px,
            )
        cent = centroids(A, dims) - np.asarray(shift)[None, :] if len(unit_ids) else np.zeros((0, 2))
        moved = _unit_rows(_move_footprints(A, dims, ref_dims, (int(round(shift[0])), int(round(shift[1])))))
        n = len(unit_ids)
        match, dist_out, sim_out = _match_units(cent, moved, seen, params)
        new = np.flatnonzero(match < 0)
        match[new] = len(seen.centroid) + np.arange(new.size)
        if new.size:
            seen.centroid = np.vstack([seen.centroid, cent[new]])
            seen.footprint = sp.vstack([seen.footprint, moved[new]], format="csr")
            seen.first.extend([rec.session] * new.size)
        columns = {
            "cohort": rec.cohort,
            "animal": rec.animal,
            "session": rec.session,
            "stage": rec.stage,
            "day": int(rec.day),
            "unit_id": unit_ids,
            "cell_key": np.array([f"{rec.animal}/c{m:04d}" for m in match], dtype=object),
            "first_session": np.array([seen.first[m] for m in match], dtype=object),
            "reference_session": ref.session,
            "shift_y_px": float(shift[0]),
            "shift_x_px": float(shift[1]),
            "match_distance_px": dist_out,
            "footprint_similarity": sim_out,
        }
        path = layout.table_file("cell_registry", rec.cohort, rec.animal, rec.session)
        write_parquet_atomic(arrow_table(columns, schema, n), path, tmp_root=layout.tmp)
        written.append(rec.session)
        logger.debug(
            "registry %s/%s/%s: shift (%.1f, %.1f) px, %d of %d units matched earlier cells",
            rec.cohort,
            rec.animal,
            rec.session,
            shift[0],
            shift[1],
            n - new.size,
            n,
        )
    logger.info(
        "registered %d session(s) of %s/%s: %d distinct cells",
        len(written),
        ref.cohort,
        ref.animal,
        len(seen.centroid),
    )
    return written


def registry_plan(
    layout: LakeLayout, records: Sequence[SessionRecord], params: AnalysisParams, force: bool
) -> list[tuple[list[SessionRecord], str]]:
    """Animals whose registry is missing or stale, with the key their files will carry.

    Returns
    -------
    list
        ``(sessions of the animal, key)`` per animal to register, in animal order.
    """
    by_animal: dict[tuple[str, str], list[SessionRecord]] = {}
    for rec in records:
        by_animal.setdefault((rec.cohort, rec.animal), []).append(rec)
    todo = []
    for (_cohort, _animal), recs in sorted(by_animal.items()):
        key = stable_hash(
            {
                "sessions": sorted((r.session, r.day, r.input_hash, r.dataset_path) for r in recs),
                "params": dataclasses.asdict(params.registration),
                "version": ANALYSIS_VERSION,
            },
            length=32,
        )
        paths = [layout.table_file("cell_registry", r.cohort, r.animal, r.session) for r in recs]
        if force or not all(p.exists() and stored_key(p) == key for p in paths):
            todo.append((recs, key))
    return todo


def _register_task(
    _context: None, payload: tuple[str, list[SessionRecord], RegistrationParams, str]
) -> SessionOutcome:
    written = register_animal(*payload)
    first = min(payload[1], key=lambda r: (r.day, r.session))
    return SessionOutcome(
        first.cohort,
        first.animal,
        first.session,
        status=PROCESSED,
        stage=REGISTRY_STAGE,
        details={"n_sessions": len(written)},
        value=written,
    )


def build_registry(
    layout: LakeLayout,
    records: Sequence[SessionRecord],
    params: AnalysisParams,
    *,
    run_id: str,
    client: Any,
    force: bool,
) -> tuple[dict[str, str], list[SessionOutcome]]:
    """Bring every animal's ``cell_registry`` up to date, one task per animal.

    Each animal's task is keyed by its reference (first) session. One animal that fails
    does not stop the others.

    Returns
    -------
    tuple
        A status line per animal (``"cohort/animal"``: ``"up to date"``,
        ``"registered N session(s)"`` or ``"failed: ..."``) and the outcome of each task.
    """
    plan = registry_plan(layout, records, params, force)
    status = {f"{r.cohort}/{r.animal}": "up to date" for r in records}
    if not plan:
        return status, []
    items = []
    for recs, key in plan:
        ref = min(recs, key=lambda r: (r.day, r.session))
        items.append(
            (
                SessionKey(ref.cohort, ref.animal, ref.session),
                (str(layout.root), recs, params.registration, key),
            )
        )
    outcomes = run_sessions(items, _register_task, stage=REGISTRY_STAGE, run_id=run_id, client=client)
    for (recs, _key), outcome in zip(plan, outcomes, strict=True):
        name = f"{recs[0].cohort}/{recs[0].animal}"
        if outcome.failed:
            status[name] = f"failed: {outcome.error}"
        else:
            status[name] = f"registered {outcome.detail('n_sessions')} session(s)"
    return status, outcomes
