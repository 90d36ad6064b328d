"""The cohort pipeline as one Dask graph: transients, clips, overlap and features per session.

For every ingested session the graph holds

* one *footprint* task: reads ``A`` 32 units at a time into a sparse matrix, computes
  centroids, shape features and sparse pairwise overlap;
* per batch of units (``units_per_task``): a *transient* task that reads those units'
  ``C_raw`` rows, and a *clip* task that reads only the movie frames around their peaks,
  writes the clips into the session's staging clip store and returns clip-based features;
* one *finalize* task: neighbour trace correlations, the ``cells`` rows, then the
  atomic publication of the clip store, the ``cells`` Parquet file and the ``sessions``
  Parquet file (in that order: a ``sessions`` row means the session is complete).

Sessions whose ``sessions`` row already matches their input hash, parameters and
pipeline version are skipped, so a re-run after a crash resumes where it stopped and,
since every session owns exactly one Parquet file per table that is replaced
atomically, never duplicates rows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.atomic import publish_dir, remove_tree_quietly, write_parquet_atomic
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.lock import run_lock
from cellsift.catalog.store import STATUS_INGESTED, Catalog, SessionRecord
from cellsift.schemas.errors import CellsiftError, LakeError
from cellsift.schemas.tables import CELLS_SCHEMA, FEATURE_COLUMNS, SESSIONS_SCHEMA

from cellsift.pipeline.stages.clips import ClipParams, crop_footprints, crop_neighbour_masks, extract_clips
from cellsift.pipeline.stages.features import SpatialParams, spatial_features
from cellsift.pipeline.stages.footprints import binarize, centroids, footprints_to_sparse, shape_features
from cellsift.pipeline.stages.overlap import OverlapParams, OverlapResult, compute_overlap, neighbour_trace_corr
from cellsift.pipeline.provenance import (
    host_info,
    new_run_id,
    package_versions,
    stable_hash,
    utc_now,
    write_json_atomic,
)
from cellsift.pipeline.stages.transients import TransientParams, TransientResult, detect_transients

logger = logging.getLogger(__name__)

__all__ = [
    "PIPELINE_VERSION",
    "PipelineParams",
    "SessionOutcome",
    "RunSummary",
    "run_pipeline",
    "plan_run",
    "session_graph",
]

#: Bump when a change alters any value in the ``cells`` table.
PIPELINE_VERSION = "1.0.0"

_FOOTPRINT_READ_UNITS = 32


@dataclass(frozen=True)
class PipelineParams:
    """Parameters of one pipeline run (all of them go into the provenance record).

    Parameters
    ----------
    transients
        Transient detection on ``C_raw``.
    clips
        Clip length (``n_before`` + 1 + ``n_after`` frames) and crop size (px).
    overlap
        Footprint binarisation and the overlap fraction above which a cell is flagged.
    units_per_task
        Units per clip-extraction task (one Dask task each).
    """

    transients: TransientParams = field(default_factory=TransientParams)
    clips: ClipParams = field(default_factory=ClipParams)
    overlap: OverlapParams = field(default_factory=OverlapParams)
    units_per_task: int = 64

    def __post_init__(self) -> None:
        if self.units_per_task < 1:
            raise ValueError("units_per_task must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-able data."""
        return dataclasses.asdict(self)

    def params_hash(self) -> str:
        """Hash of everything that changes the tables: parameters and pipeline version."""
        values = self.as_dict()
        values.pop("units_per_task")  # batching does not change results
        return stable_hash({"params": values, "pipeline_version": PIPELINE_VERSION})


@dataclass(frozen=True)
class SessionOutcome:
    """What happened to one session in a run: ``processed``, ``skipped`` or ``failed``."""

    cohort: str
    animal: str
    session: str
    status: str
    n_units: int = 0
    n_overlap_flagged: int = 0
    error: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class RunSummary:
    """The result of :func:`run_pipeline`."""

    run_id: str
    outcomes: tuple[SessionOutcome, ...]
    record_path: Path

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    def count(self, status: str) -> int:
        """Number of sessions with ``status``."""
        return sum(o.status == status for o in self.outcomes)


# ---------------------------------------------------------------------------
# planning


def _current_session_row(layout: LakeLayout, rec: SessionRecord) -> dict[str, Any] | None:
    path = layout.table_file("sessions", rec.cohort, rec.animal, rec.session)
    if not path.exists():
        return None
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowInvalid):
        logger.warning("unreadable sessions row %s: the session will be processed again", path)
        return None
    return rows[0] if rows else None


def plan_run(
    catalog: Catalog, params: PipelineParams, *, force: bool = False
) -> tuple[list[SessionRecord], list[SessionRecord]]:
    """Split the catalog's ingested sessions into (to process, already up to date)."""
    todo, done = [], []
    params_hash = params.params_hash()
    for rec in catalog.records(status=STATUS_INGESTED):
        row = None if force else _current_session_row(catalog.layout, rec)
        current = (
            row is not None
            and row.get("input_hash") == rec.input_hash
            and row.get("params_hash") == params_hash
            and row.get("pipeline_version") == PIPELINE_VERSION
            and (catalog.layout.root / str(row.get("clips_path", ""))).exists()
            and catalog.layout.table_file("cells", rec.cohort, rec.animal, rec.session).exists()
        )
        (done if current else todo).append(rec)
    return todo, done


# ---------------------------------------------------------------------------
# tasks (run on Dask workers; arguments and results are small and picklable)


@dataclass(frozen=True)
class _Footprints:
    A: Any  # scipy.sparse.csr_matrix (K, H*W)
    masks: Any  # scipy.sparse.csr_matrix bool (K, H*W)
    dims: tuple[int, int]
    unit_ids: np.ndarray
    centroids: np.ndarray
    shape: dict[str, np.ndarray]
    overlap: OverlapResult


def _open_group(ds_path: str) -> Any:
    import zarr

    try:
        return zarr.open_group(ds_path, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise LakeError(
            f"session store cannot be opened ({type(exc).__name__})",
            path=ds_path,
            fix="re-ingest the session with 'cellsift ingest'",
        ) from None


def _footprints_task(ds_path: str, overlap_params: OverlapParams) -> _Footprints:
    import scipy.sparse as sp

    group = _open_group(ds_path)
    a = group["A"]
    n_units, height, width = a.shape
    blocks = [
        footprints_to_sparse(np.asarray(a[start : start + _FOOTPRINT_READ_UNITS]))
        for start in range(0, n_units, _FOOTPRINT_READ_UNITS)
    ]
    A = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, height * width))
    dims = (int(height), int(width))
    masks = binarize(A, rel_threshold=overlap_params.rel_threshold)
    return _Footprints(
        A=A,
        masks=masks,
        dims=dims,
        unit_ids=np.asarray(group["unit_id"][:], dtype=np.int64),
        centroids=centroids(A, dims),
        shape=shape_features(A, dims),
        overlap=compute_overlap(masks, params=overlap_params),
    )


def _transients_task(
    ds_path: str, start: int, stop: int, fps: float, params: TransientParams
) -> list[TransientResult]:
    c_raw = np.asarray(_open_group(ds_path)["C_raw"][start:stop], dtype=np.float64)
    return [detect_transients(trace, fps=fps, params=params) for trace in c_raw]


def _clip_store_arrays(n_units: int, k: int, n_frames: int, crop: int, chunk_units: int) -> dict:
    return {
        "clips": ((n_units, k, n_frames, crop, crop), (chunk_units, k, n_frames, crop, crop),
                  ("unit_id", "peak", "clip_frame", "y", "x")),
        "valid": ((n_units, k), (chunk_units, k), ("unit_id", "peak")),
        "peak_frame": ((n_units, k), (chunk_units, k), ("unit_id", "peak")),
        "footprint": ((n_units, crop, crop), (chunk_units, crop, crop), ("unit_id", "y", "x")),
        "neighbour_mask": ((n_units, crop, crop), (chunk_units, crop, crop), ("unit_id", "y", "x")),
    }


def _create_clip_store(
    staging: str, ds_path: str, fp: _Footprints, params: PipelineParams, attrs: dict[str, Any]
) -> str:
    import zarr

    movie = _open_group(ds_path).get("movie")
    movie_dtype = movie.dtype if movie is not None else np.dtype("float32")
    k = params.transients.k_peaks
    n_frames = params.clips.n_before + 1 + params.clips.n_after
    crop = params.clips.crop_px
    n_units = len(fp.unit_ids)
    chunk_units = max(1, min(params.units_per_task, max(n_units, 1)))
    group = zarr.open_group(staging, mode="w")
    dtypes = {
        "clips": movie_dtype,
        "valid": np.dtype(bool),
        "peak_frame": np.dtype("int64"),
        "footprint": np.dtype("float32"),
        "neighbour_mask": np.dtype(bool),
    }
    for name, (shape, chunks, dims) in _clip_store_arrays(
        n_units, k, n_frames, crop, chunk_units
    ).items():
        group.create_array(
            name, shape=shape, chunks=chunks, dtype=dtypes[name], dimension_names=dims, fill_value=0
        )
    uid = group.create_array(
        "unit_id", shape=(n_units,), chunks=(max(n_units, 1),), dtype="int64", dimension_names=("unit_id",)
    )
    uid[:] = fp.unit_ids
    group.attrs.update(attrs)
    return staging


def _clips_task(
    store: str,
    ds_path: str,
    fp: _Footprints,
    transients: list[TransientResult],
    start: int,
    stop: int,
    params: PipelineParams,
) -> dict[str, np.ndarray]:
    import zarr

    group = _open_group(ds_path)
    k = params.transients.k_peaks
    units = np.arange(start, stop)
    peak_frames = np.full((len(units), k), -1, dtype=np.int64)
    for row, res in enumerate(transients):
        peaks = np.asarray(res.peak_frames[:k], dtype=np.int64)
        peak_frames[row, : len(peaks)] = peaks
    cents = fp.centroids[start:stop]
    fp_crops = crop_footprints(fp.A[start:stop], fp.dims, cents, crop_px=params.clips.crop_px)
    nb_masks = crop_neighbour_masks(
        fp.masks, fp.overlap.pairs, fp.centroids, fp.dims, params.clips.crop_px, units=units
    )
    out = zarr.open_group(store, mode="r+")
    if "movie" in group:
        requests = [(int(u - start), peak_frames[u - start][peak_frames[u - start] >= 0]) for u in units]
        clips, valid = extract_clips(group["movie"], requests, cents, params=params.clips, k_peaks=k)
        out["clips"][start:stop] = clips.astype(out["clips"].dtype, copy=False)
        feats = spatial_features(clips, valid, fp_crops, params=SpatialParams(n_before=params.clips.n_before))
    else:
        valid = np.zeros((len(units), k), dtype=bool)
        feats = {}
    out["valid"][start:stop] = valid
    out["peak_frame"][start:stop] = peak_frames
    out["footprint"][start:stop] = fp_crops
    out["neighbour_mask"][start:stop] = nb_masks
    feats["n_clips"] = valid.sum(axis=1).astype(np.int32)
    feats["peak_frames"] = [row[row >= 0].tolist() for row in peak_frames]
    return feats


def _neighbour_corr(c_raw: Any, pairs: np.ndarray, n_units: int) -> np.ndarray:
    """Max trace correlation with touching units, reading only the rows of touching units."""
    out = np.zeros(n_units, dtype=np.float64)
    if len(pairs) == 0:
        return out
    involved = np.unique(pairs[:, :2].astype(np.int64))
    rows = np.asarray(c_raw.get_orthogonal_selection((involved, slice(None))), dtype=np.float64)
    local = np.searchsorted(involved, pairs[:, :2].astype(np.int64))
    local_pairs = np.column_stack([local, pairs[:, 2]]) if pairs.shape[1] > 2 else local
    corr = neighbour_trace_corr(rows, local_pairs)
    out[involved] = corr
    return out


def _finalize_task(
    lake_root: str,
    rec: SessionRecord,
    ds_path: str,
    store: str,
    fp: _Footprints,
    transients: list[list[TransientResult]],
    batch_features: list[dict[str, Any]],
    params: PipelineParams,
    run_id: str,
    started: float,
) -> SessionOutcome:
    layout = LakeLayout(Path(lake_root))
    flat = [t for part in transients for t in part]
    n_units = len(fp.unit_ids)
    c_raw = _open_group(ds_path)["C_raw"]
    nb_corr = _neighbour_corr(c_raw, fp.overlap.pairs, n_units)
    n_frames = int(c_raw.shape[1])
    duration_min = n_frames / max(rec.fps, 1e-9) / 60.0

    cols: dict[str, Any] = {name: list(fp.shape[name]) for name in fp.shape}
    cols["peak_to_noise"] = [t.peak_to_noise for t in flat]
    cols["n_transients"] = [int(t.n_transients) for t in flat]
    cols["transient_rate_per_min"] = [t.n_transients / duration_min if duration_min else 0.0 for t in flat]
    cols["skewness"] = [t.skewness for t in flat]
    cols["noise_sd"] = [t.noise_sd for t in flat]
    for key in batch_features[0] if batch_features else []:
        cols[key] = [v for part in batch_features for v in part[key]]
    for key in ("spatial_corr", "spatial_corr_min", "peak_contrast"):
        cols.setdefault(key, [float("nan")] * n_units)
    cols["neighbour_trace_corr"] = list(nb_corr)
    ov = fp.overlap
    cols["n_neighbours"] = [int(v) for v in ov.n_neighbours]
    cols["max_overlap_frac"] = list(ov.max_overlap_frac)
    cols["overlap_partner"] = [
        int(fp.unit_ids[p]) if p >= 0 else None for p in ov.partner_index
    ]
    cols["overlap_flag"] = [bool(v) for v in ov.flagged]
    cols["centroid_y"] = list(fp.centroids[:, 0])
    cols["centroid_x"] = list(fp.centroids[:, 1])
    const = {
        "cohort": rec.cohort,
        "animal": rec.animal,
        "session": rec.session,
        "stage": rec.stage,
        "day": rec.day,
        "pipeline_version": PIPELINE_VERSION,
        "run_id": run_id,
    }
    for key, value in const.items():
        cols[key] = [value] * n_units
    cols["unit_id"] = [int(u) for u in fp.unit_ids]
    missing = [c for c in FEATURE_COLUMNS if c not in cols]
    if missing:
        raise LakeError(f"pipeline produced no column(s) {missing}", fix="report this as a bug")
    cells = pa.Table.from_pydict(
        {name: cols.get(name, [None] * n_units) for name in CELLS_SCHEMA.names}, schema=CELLS_SCHEMA
    )

    params_hash = params.params_hash()
    clips_final = layout.clips_dir(rec.cohort, rec.animal, rec.session) / (
        f"{params_hash}-{rec.input_hash[:12]}.zarr"
    )
    import zarr

    import warnings

    with warnings.catch_warnings():  # consolidated metadata is a zarr-python extension in v3
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(store)
    publish_dir(Path(store), clips_final)
    for sibling in clips_final.parent.glob("*.zarr"):
        if sibling != clips_final:
            remove_tree_quietly(sibling)
    write_parquet_atomic(
        cells, layout.table_file("cells", rec.cohort, rec.animal, rec.session), tmp_root=layout.tmp
    )
    duration = time.time() - started
    flagged = int(np.sum(ov.flagged))
    session_row = {
        **{k: const[k] for k in ("cohort", "animal", "session", "stage", "day", "pipeline_version", "run_id")},
        "n_frames": n_frames,
        "height": fp.dims[0],
        "width": fp.dims[1],
        "fps": rec.fps,
        "n_units": n_units,
        "n_overlap_flagged": flagged,
        "input_hash": rec.input_hash,
        "params_hash": params_hash,
        "dataset_path": rec.dataset_path,
        "clips_path": layout.relative(clips_final),
        "processed_at": utc_now(),
        "duration_s": duration,
    }
    sessions = pa.Table.from_pylist([session_row], schema=SESSIONS_SCHEMA)
    write_parquet_atomic(
        sessions, layout.table_file("sessions", rec.cohort, rec.animal, rec.session), tmp_root=layout.tmp
    )
    return SessionOutcome(
        rec.cohort, rec.animal, rec.session, "processed", n_units=n_units,
        n_overlap_flagged=flagged, duration_s=duration,
    )


# ---------------------------------------------------------------------------
# graph


def _key(prefix: str, rec: SessionRecord, *extra: object) -> str:
    parts = [prefix, rec.cohort, rec.animal, rec.session, *map(str, extra)]
    return "-".join(parts)


def session_graph(
    layout: LakeLayout, rec: SessionRecord, params: PipelineParams, *, run_id: str, n_units: int
) -> Any:
    """Return the Dask ``Delayed`` that processes one session and yields a :class:`SessionOutcome`."""
    from dask import delayed

    ds_path = str(layout.root / rec.dataset_path)
    staging = str(layout.tmp / f"clips-{run_id}-{rec.animal}-{rec.session}.zarr")
    started = time.time()
    fp = delayed(_footprints_task, pure=True)(ds_path, params.overlap, dask_key_name=_key("footprints", rec))
    attrs = {
        "cohort": rec.cohort,
        "animal": rec.animal,
        "session": rec.session,
        "run_id": run_id,
        "pipeline_version": PIPELINE_VERSION,
        "params": params.as_dict(),
        "input_hash": rec.input_hash,
    }
    store = delayed(_create_clip_store, pure=True)(
        staging, ds_path, fp, params, attrs, dask_key_name=_key("clipstore", rec)
    )
    batch = params.units_per_task
    transient_parts, feature_parts = [], []
    for start in range(0, n_units, batch):
        stop = min(start + batch, n_units)
        tr = delayed(_transients_task, pure=True)(
            ds_path, start, stop, rec.fps, params.transients, dask_key_name=_key("transients", rec, start)
        )
        feats = delayed(_clips_task, pure=True)(
            store, ds_path, fp, tr, start, stop, params, dask_key_name=_key("clips", rec, start)
        )
        transient_parts.append(tr)
        feature_parts.append(feats)
    return delayed(_finalize_task, pure=True)(
        str(layout.root), rec, ds_path, store, fp, transient_parts, feature_parts, params, run_id,
        started, dask_key_name=_key("finalize", rec),
    )


def run_pipeline(
    lake: Path,
    *,
    client: Any,
    params: PipelineParams | None = None,
    force: bool = False,
    progress: Callable[[Sequence[Any]], None] | None = None,
) -> RunSummary:
    """Process every ingested session of ``lake`` that is not up to date.

    Parameters
    ----------
    lake
        The lake folder.
    client
        A connected ``distributed.Client`` (local cluster or remote scheduler). Workers
        must see the lake at the same path (a shared file system on a cluster).
    params
        Pipeline parameters; defaults if ``None``.
    force
        Process every session even if its results are current.
    progress
        Called with the list of futures once submitted (e.g. ``distributed.progress``);
        it may block until they finish.

    Returns
    -------
    RunSummary
        Per-session outcomes and the path of the provenance record ``runs/<run_id>.json``.
    """
    params = params or PipelineParams()
    catalog = Catalog(lake)
    layout = catalog.layout
    layout.ensure()
    run_id = new_run_id()
    with run_lock(layout.root, run_id=run_id):
        for stale in layout.tmp.glob("clips-*"):
            # staging left by a killed run; the lock guarantees no run is using it
            remove_tree_quietly(stale)
        return _run_locked(catalog, client=client, params=params, force=force, run_id=run_id,
                           progress=progress)


def _run_locked(
    catalog: Catalog,
    *,
    client: Any,
    params: PipelineParams,
    force: bool,
    run_id: str,
    progress: Callable[[Sequence[Any]], None] | None,
) -> RunSummary:
    layout = catalog.layout
    todo, done = plan_run(catalog, params, force=force)
    started_at = utc_now()
    record: dict[str, Any] = {
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "pipeline_version": PIPELINE_VERSION,
        "params": params.as_dict(),
        "params_hash": params.params_hash(),
        "versions": package_versions(),
        "host": host_info(),
        "scheduler": getattr(getattr(client, "scheduler", None), "address", None),
        "inputs": {f"{r.cohort}/{r.animal}/{r.session}": r.input_hash for r in todo + done},
        "status": "running",
    }
    record_path = layout.runs / f"{run_id}.json"
    write_json_atomic(record, record_path)
    logger.info("run %s: %d session(s) to process, %d up to date", run_id, len(todo), len(done))

    outcomes: list[SessionOutcome] = [
        SessionOutcome(r.cohort, r.animal, r.session, "skipped", n_units=r.n_units) for r in done
    ]
    graphs, recs = [], []
    for rec in todo:
        graphs.append(session_graph(layout, rec, params, run_id=run_id, n_units=rec.n_units))
        recs.append(rec)
    futures = client.compute(graphs) if graphs else []
    if progress is not None and futures:
        progress(futures)
    from distributed import wait

    wait(futures)
    for rec, fut in zip(recs, futures, strict=True):
        if fut.status == "finished":
            outcomes.append(fut.result())
            continue
        exc = fut.exception()
        message = exc.one_line() if isinstance(exc, CellsiftError) else f"{type(exc).__name__}: {exc}"
        logger.error("%s/%s/%s failed: %s", rec.cohort, rec.animal, rec.session, message)
        outcomes.append(SessionOutcome(rec.cohort, rec.animal, rec.session, "failed", error=message))
    for leftover in layout.tmp.glob(f"clips-{run_id}-*"):
        remove_tree_quietly(leftover)
    outcomes.sort(key=lambda o: (o.cohort, o.animal, o.session))
    record.update(
        finished_at=utc_now().isoformat(),
        status="failed" if any(o.status == "failed" for o in outcomes) else "finished",
        sessions=[dataclasses.asdict(o) for o in outcomes],
    )
    write_json_atomic(record, record_path)
    return RunSummary(run_id=run_id, outcomes=tuple(outcomes), record_path=record_path)
