"""The Dask graph of one session: footprints, transients, clips, then the published tables.

For every session :func:`session_graph` builds

* one *footprint* task: reads ``A`` 32 units at a time into a sparse matrix, computes
  centroids, shape features and sparse pairwise overlap;
* per batch of units (``units_per_task``): a *transient* task that reads those units'
  ``C_raw`` rows, and a *clip* task that reads only the movie frames around their peaks,
  writes the clips into the session's staging clip store and returns clip-based features;
* one *finalize* task: neighbour trace correlations, the ``cells`` rows, then the
  atomic publication of the clip store, the ``cells`` Parquet file and the ``sessions``
  Parquet file (in that order: a ``sessions`` row means the session is complete).

Task keys and the staging clip store's name come from the session's full
:class:`~cellsift.schemas.SessionKey`, so sessions of two cohorts that share animal and
session names never collide. Task arguments and results are small and picklable.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cellsift.catalog import LakeLayout, SessionRecord, publish_dir, remove_tree_quietly, write_parquet_atomic
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.executor import PROCESSED, SessionOutcome
from cellsift.pipeline.stages.clips import (
    ClipParams,
    crop_footprints,
    crop_neighbour_masks,
    extract_clips,
)
from cellsift.pipeline.stages.crops import session_crop_px
from cellsift.pipeline.stages.features import (
    SpatialParams,
    has_raw_trace,
    spatial_features,
    trace_features,
)
from cellsift.pipeline.stages.footprints import binarize, centroids, footprints_to_sparse, shape_features
from cellsift.pipeline.stages.overlap import (
    OverlapParams,
    OverlapResult,
    compute_overlap,
    neighbour_trace_corr,
)
from cellsift.pipeline.stages.params import PipelineParams
from cellsift.pipeline.stages.transients import TransientParams, TransientResult, detect_transients
from cellsift.schemas import (
    CELLS_SCHEMA,
    FEATURE_COLUMNS,
    PIPELINE_VERSION,
    SESSIONS_SCHEMA,
    LakeError,
    SessionKey,
)

__all__ = ["SessionFootprints", "open_session_group", "session_clip_params", "session_graph", "session_key"]

_FOOTPRINT_READ_UNITS = 32


def session_key(rec: SessionRecord) -> SessionKey:
    """The full key of a catalog record."""
    return SessionKey(rec.cohort, rec.animal, rec.session)


@dataclass(frozen=True)
class SessionFootprints:
    """One session's footprints, their masks, centroids, shape features and overlap."""

    A: Any  # scipy.sparse.csr_matrix (K, H*W)
    masks: Any  # scipy.sparse.csr_matrix bool (K, H*W)
    dims: tuple[int, int]
    unit_ids: np.ndarray
    centroids: np.ndarray
    shape: dict[str, np.ndarray]
    overlap: OverlapResult


def open_session_group(ds_path: str) -> Any:
    import zarr

    try:
        return zarr.open_group(ds_path, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise LakeError(
            f"session store cannot be opened ({type(exc).__name__})",
            path=ds_path,
            fix="re-ingest the session with 'cellsift ingest'",
        ) from None


def footprints_task(ds_path: str, overlap_params: OverlapParams) -> SessionFootprints:
    import scipy.sparse as sp

    group = open_session_group(ds_path)
    a = group["A"]
    n_units, height, width = a.shape
    blocks = [
        footprints_to_sparse(np.asarray(a[start : start + _FOOTPRINT_READ_UNITS]))
        for start in range(0, n_units, _FOOTPRINT_READ_UNITS)
    ]
    A = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, height * width))
    dims = (int(height), int(width))
    masks = binarize(A, rel_threshold=overlap_params.rel_threshold)
    return SessionFootprints(
        A=A,
        masks=masks,
        dims=dims,
        unit_ids=np.asarray(group["unit_id"][:], dtype=np.int64),
        centroids=centroids(A, dims),
        shape=shape_features(A, dims),
        overlap=compute_overlap(masks, params=overlap_params),
    )


def transients_task(
    ds_path: str, start: int, stop: int, fps: float, params: TransientParams
) -> list[TransientResult]:
    c_raw = np.asarray(open_session_group(ds_path)["C_raw"][start:stop], dtype=np.float64)
    return [detect_transients(trace, fps=fps, params=params) for trace in c_raw]


def session_clip_params(fp: SessionFootprints, params: PipelineParams) -> ClipParams:
    """The clip geometry of one session: the crop scaled to its median cell diameter."""
    from dataclasses import replace

    areas = np.asarray(fp.masks.sum(axis=1)).ravel()
    return replace(params.clips, crop_px=session_crop_px(areas, params.clips), scale_with_cells=False)


def _clip_store_arrays(n_units: int, k: int, n_frames: int, crop: int, chunk_units: int) -> dict:
    return {
        "clips": (
            (n_units, k, n_frames, crop, crop),
            (chunk_units, k, n_frames, crop, crop),
            ("unit_id", "peak", "clip_frame", "y", "x"),
        ),
        "valid": ((n_units, k), (chunk_units, k), ("unit_id", "peak")),
        "peak_frame": ((n_units, k), (chunk_units, k), ("unit_id", "peak")),
        "footprint": ((n_units, crop, crop), (chunk_units, crop, crop), ("unit_id", "y", "x")),
        "neighbour_mask": ((n_units, crop, crop), (chunk_units, crop, crop), ("unit_id", "y", "x")),
    }


def create_clip_store(
    staging: str, ds_path: str, fp: SessionFootprints, params: PipelineParams, attrs: dict[str, Any]
) -> str:
    import zarr

    movie = open_session_group(ds_path).get("movie")
    movie_dtype = movie.dtype if movie is not None else np.dtype("float32")
    k = params.transients.k_peaks
    n_frames = params.clips.n_before + 1 + params.clips.n_after
    crop = session_clip_params(fp, params).crop_px
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
    for name, (shape, chunks, dims) in _clip_store_arrays(n_units, k, n_frames, crop, chunk_units).items():
        group.create_array(
            name, shape=shape, chunks=chunks, dtype=dtypes[name], dimension_names=dims, fill_value=0
        )
    uid = group.create_array(
        "unit_id", shape=(n_units,), chunks=(max(n_units, 1),), dtype="int64", dimension_names=("unit_id",)
    )
    uid[:] = fp.unit_ids
    group.attrs.update({**attrs, "crop_scale": crop / params.clips.crop_px})
    return staging


def clips_task(
    store: str,
    ds_path: str,
    fp: SessionFootprints,
    transients: list[TransientResult],
    start: int,
    stop: int,
    params: PipelineParams,
) -> dict[str, np.ndarray]:
    import zarr

    group = open_session_group(ds_path)
    k = params.transients.k_peaks
    units = np.arange(start, stop)
    peak_frames = np.full((len(units), k), -1, dtype=np.int64)
    for row, res in enumerate(transients):
        peaks = np.asarray(res.peak_frames[:k], dtype=np.int64)
        peak_frames[row, : len(peaks)] = peaks
    cents = fp.centroids[start:stop]
    clip_params = session_clip_params(fp, params)
    fp_crops = crop_footprints(fp.A[start:stop], fp.dims, cents, crop_px=clip_params.crop_px)
    nb_masks = crop_neighbour_masks(
        fp.masks, fp.overlap.pairs, fp.centroids, fp.dims, clip_params.crop_px, units=units
    )
    out: Any = zarr.open_group(store, mode="r+")
    if "movie" in group:
        requests = [(int(u - start), peak_frames[u - start][peak_frames[u - start] >= 0]) for u in units]
        clips, valid = extract_clips(group["movie"], requests, cents, params=clip_params, k_peaks=k)
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


def neighbour_corr(c_raw: Any, pairs: np.ndarray, n_units: int) -> np.ndarray:
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


def cells_table(
    rec: SessionRecord,
    fp: SessionFootprints,
    transients: list[TransientResult],
    batch_features: list[dict[str, Any]],
    nb_corr: np.ndarray,
    *,
    n_frames: int,
    run_id: str,
    raw_trace: bool = True,
) -> pa.Table:
    """The session's ``cells`` rows from its footprints, transients and clip features.

    ``raw_trace=False`` (``C_raw`` is the denoised ``C``) leaves the trace-noise features
    (:data:`~cellsift.pipeline.stages.features.RAW_TRACE_FEATURES`) NaN.
    """
    n_units = len(fp.unit_ids)
    cols: dict[str, Any] = {name: list(fp.shape[name]) for name in fp.shape}
    features = trace_features(transients, n_frames=n_frames, fps=rec.fps, raw_trace=raw_trace)
    cols.update({name: values.tolist() for name, values in features.items()})
    for key in batch_features[0] if batch_features else []:
        cols[key] = [v for part in batch_features for v in part[key]]
    for key in ("spatial_corr", "spatial_corr_min", "peak_contrast"):
        cols.setdefault(key, [float("nan")] * n_units)
    cols["neighbour_trace_corr"] = list(nb_corr)
    ov = fp.overlap
    cols["n_neighbours"] = [int(v) for v in ov.n_neighbours]
    cols["max_overlap_frac"] = list(ov.max_overlap_frac)
    cols["overlap_partner"] = [int(fp.unit_ids[p]) if p >= 0 else None for p in ov.partner_index]
    cols["overlap_flag"] = [bool(v) for v in ov.flagged]
    cols["centroid_y"] = list(fp.centroids[:, 0])
    cols["centroid_x"] = list(fp.centroids[:, 1])
    for key, value in _constant_columns(rec, run_id).items():
        cols[key] = [value] * n_units
    cols["unit_id"] = [int(u) for u in fp.unit_ids]
    missing = [c for c in FEATURE_COLUMNS if c not in cols]
    if missing:
        raise LakeError(f"pipeline produced no column(s) {missing}", fix="report this as a bug")
    return pa.Table.from_pydict(
        {name: cols.get(name, [None] * n_units) for name in CELLS_SCHEMA.names}, schema=CELLS_SCHEMA
    )


def _constant_columns(rec: SessionRecord, run_id: str) -> dict[str, Any]:
    return {
        "cohort": rec.cohort,
        "animal": rec.animal,
        "session": rec.session,
        "stage": rec.stage,
        "day": rec.day,
        "pipeline_version": PIPELINE_VERSION,
        "run_id": run_id,
    }


def publish_clip_store(layout: LakeLayout, rec: SessionRecord, store: str, params_hash: str) -> Path:
    """Consolidate the staging clip store and rename it into place; drop older stores."""
    import zarr

    clips_final = layout.clips_dir(rec.cohort, rec.animal, rec.session) / (
        f"{params_hash}-{rec.input_hash[:12]}.zarr"
    )
    with warnings.catch_warnings():  # consolidated metadata is a zarr-python extension in v3
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(store)
    publish_dir(Path(store), clips_final)
    for sibling in clips_final.parent.glob("*.zarr"):
        if sibling != clips_final:
            remove_tree_quietly(sibling)
    return clips_final


def finalize_task(
    lake_root: str,
    rec: SessionRecord,
    ds_path: str,
    store: str,
    fp: SessionFootprints,
    transients: list[list[TransientResult]],
    batch_features: list[dict[str, Any]],
    params: PipelineParams,
    run_id: str,
    started: float,
) -> SessionOutcome:
    """Write the session's results: clip store, then ``cells``, then ``sessions`` (the marker)."""
    layout = LakeLayout(Path(lake_root))
    flat = [t for part in transients for t in part]
    n_units = len(fp.unit_ids)
    group = open_session_group(ds_path)
    c_raw = group["C_raw"]
    nb_corr = neighbour_corr(c_raw, fp.overlap.pairs, n_units)
    n_frames = int(c_raw.shape[1])
    raw_trace = has_raw_trace(str(group.attrs.get("c_raw_source", "C_raw")))
    cells = cells_table(
        rec, fp, flat, batch_features, nb_corr, n_frames=n_frames, run_id=run_id, raw_trace=raw_trace
    )
    params_hash = params.params_hash()
    clips_final = publish_clip_store(layout, rec, store, params_hash)
    write_parquet_atomic(
        cells, layout.table_file("cells", rec.cohort, rec.animal, rec.session), tmp_root=layout.tmp
    )
    duration = time.time() - started
    flagged = int(np.sum(fp.overlap.flagged))
    session_row = {
        **_constant_columns(rec, run_id),
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
        rec.cohort,
        rec.animal,
        rec.session,
        status=PROCESSED,
        stage="run",
        n_units=n_units,
        duration_s=duration,
        details={"n_overlap_flagged": flagged},
    )


def session_graph(
    layout: LakeLayout, rec: SessionRecord, params: PipelineParams, *, run_id: str, n_units: int
) -> Any:
    """Return the Dask ``Delayed`` that processes one session and yields a :class:`SessionOutcome`."""
    from dask import delayed

    ds_path = str(layout.root / rec.dataset_path)
    key = session_key(rec)
    staging = str(layout.tmp / key.staging_name("clips", run_id, suffix=".zarr"))
    started = time.time()
    fp = delayed(footprints_task, pure=True)(
        ds_path, params.overlap, dask_key_name=key.task_key("footprints", run_id)
    )
    attrs = {
        "cohort": rec.cohort,
        "animal": rec.animal,
        "session": rec.session,
        "run_id": run_id,
        "pipeline_version": PIPELINE_VERSION,
        "params": params.as_dict(),
        "input_hash": rec.input_hash,
    }
    store = delayed(create_clip_store, pure=True)(
        staging, ds_path, fp, params, attrs, dask_key_name=key.task_key("clipstore", run_id)
    )
    batch = params.units_per_task
    transient_parts, feature_parts = [], []
    for start in range(0, n_units, batch):
        stop = min(start + batch, n_units)
        tr = delayed(transients_task, pure=True)(
            ds_path,
            start,
            stop,
            rec.fps,
            params.transients,
            dask_key_name=key.task_key("transients", run_id, start),
        )
        feats = delayed(clips_task, pure=True)(
            store, ds_path, fp, tr, start, stop, params, dask_key_name=key.task_key("clips", run_id, start)
        )
        transient_parts.append(tr)
        feature_parts.append(feats)
    return delayed(finalize_task, pure=True)(
        str(layout.root),
        rec,
        ds_path,
        store,
        fp,
        transient_parts,
        feature_parts,
        params,
        run_id,
        started,
        dask_key_name=key.task_key("finalize", run_id),
    )
