"""Build the analysis tables of a lake: ``traces``, ``events``, ``trial_responses``,
``cell_summary`` and ``behaviour`` (``cellsift analyze``).

Per session (one task each; a Dask task when a client is given):

1. read and validate the events file, find the behaviour-to-imaging clock map (sync
   pulses, TTL column, declared offset) and align every event to frames by the
   Miniscope timestamps (:mod:`.events`);
2. read freezing (``freezing.csv`` named by the catalog, or beside the events file; or
   ``freezing`` epochs of the events file) (:mod:`.behaviour`);
3. for each batch of ``units_per_batch`` units: read ``C_raw``, ``S`` and ``A`` rows,
   compute ΔF/F (:mod:`.dff`), append the batch to the ``traces`` file (one row group per
   batch, so memory is bounded by the batch, not the session), compute trial statistics
   and the circular-shift test (:mod:`.responses`);
4. join the ``cells`` table (overlap flags, classifier labels) and the ``labels`` table
   (truth, for evaluation only) into ``cell_summary``;
5. write every table atomically into ``LAKE/tables/<name>/cohort=…/animal=…/session=…/
   part-0.parquet``; ``cell_summary`` is written last and marks the session complete.

Then, per animal, the ``cell_registry`` (:func:`register_animal`) gives units of different
sessions that are the same neuron one ``cell_key``, so "was this day-3 cell selective on
day 1?" is a join. Its files carry their own key (the animal's sessions and the
registration parameters).

Every file carries in its Parquet metadata (``cellsift.analysis_key``) a hash of what
it was computed from: the session's input hash, the bytes of its ``cells`` file (so a
new pipeline run or new classifier labels count), its labels, events and freezing
files, the parameters and :data:`ANALYSIS_VERSION`. A session whose ``cell_summary``
carries the current key (and whose other tables exist) is skipped.

Good cells by default (``cell_summary.is_good``): when a classifier has labelled the
session (``cells.label`` or ``cells.model_id`` not null), ``is_good = label == 'good'``;
otherwise ``is_good = NOT overlap_flag``. ``good_rule`` says which rule applied. The
``labels`` table (ground truth or manual curation) is joined as ``truth_label`` and never
mixed into ``is_good``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.atomic import staging_path, write_parquet_atomic
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.lock import run_lock
from cellsift.catalog.store import STATUS_INGESTED, Catalog, SessionRecord
from cellsift.schemas.analysis_tables import (
    ANALYSIS_KEY,
    BEHAVIOUR_SCHEMA,
    CELL_REGISTRY_SCHEMA,
    CELL_SUMMARY_SCHEMA,
    EVENTS_SCHEMA,
    TRACES_SCHEMA,
    TRIAL_RESPONSES_SCHEMA,
)
from cellsift.schemas.errors import CellsiftError, InputFormatError, LakeError

from cellsift.pipeline.analysis.behaviour import FreezingIntervals, behaviour_rows, event_freezing_pct, freezing_intervals
from cellsift.pipeline.analysis.dff import DffParams, compute_dff, movie_baseline_image, reference_fluorescence, robust_noise_sd_rows
from cellsift.pipeline.analysis.events import (
    TONE_EVENTS,
    AlignParams,
    align_events,
    fit_clock,
    frame_interval_s,
    read_events,
    read_freezing,
    read_ttl_frames,
)
from cellsift.pipeline.stages.footprints import centroids, read_footprints_sparse
from cellsift.pipeline.provenance import new_run_id, package_versions, stable_hash, utc_now, write_json_atomic
from cellsift.pipeline.analysis.responses import (
    ResponseParams,
    circular_shift_test,
    draw_shifts,
    event_mask,
    summarise_cells,
    trial_statistics,
    trial_windows,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ANALYSIS_VERSION",
    "FREEZING_FILE",
    "AnalysisParams",
    "RegistrationParams",
    "AnalysisOutcome",
    "AnalysisSummary",
    "SessionInputs",
    "session_inputs",
    "analyse_session",
    "estimate_shift",
    "register_animal",
    "build_analysis_tables",
]

#: Bump when a change alters any value of the analysis tables.
ANALYSIS_VERSION: Final = "1.0.0"
#: Freezing trace looked for beside the events file when the catalog names none.
FREEZING_FILE: Final = "freezing.csv"
_TABLE_ORDER: Final = ("traces", "events", "trial_responses", "behaviour", "cell_summary")


@dataclass(frozen=True)
class RegistrationParams:
    """Parameters of the cross-session cell registry (:func:`register_animal`).

    Attributes
    ----------
    max_distance_px
        Largest distance (px) between the centroids of two units, after aligning the
        fields of view, for them to be the same cell.
    min_footprint_similarity
        Smallest cosine similarity of the aligned footprints of a match.
    max_shift_px
        Largest field-of-view shift (px) searched between sessions.
    highpass_sigma_px
        Gaussian (px) subtracted from the images before the phase correlation, so cells,
        not the vignetting, drive the alignment.
    """

    max_distance_px: float = 5.0
    min_footprint_similarity: float = 0.4
    max_shift_px: int = 30
    highpass_sigma_px: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_distance_px", "highpass_sigma_px"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputFormatError(f"must be > 0, got {value}", field=name)
        if not (0.0 <= self.min_footprint_similarity <= 1.0):
            raise InputFormatError(f"must be in [0, 1], got {self.min_footprint_similarity}",
                                   field="min_footprint_similarity")
        if isinstance(self.max_shift_px, bool) or self.max_shift_px < 0:
            raise InputFormatError(f"must be >= 0, got {self.max_shift_px}", field="max_shift_px")


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of :func:`build_analysis_tables` (all recorded in the run record).

    Attributes
    ----------
    dff
        ΔF/F baseline (:class:`~cellsift.pipeline.analysis.dff.DffParams`).
    responses
        Trial windows, tests and selectivity (:class:`~cellsift.pipeline.analysis.responses.ResponseParams`).
    align
        Event alignment (:class:`~cellsift.pipeline.analysis.events.AlignParams`).
    registration
        Cross-session cell registry (:class:`RegistrationParams`).
    units_per_batch
        Units read, processed and written at a time (memory only; not hashed).
    """

    dff: DffParams = field(default_factory=DffParams)
    responses: ResponseParams = field(default_factory=ResponseParams)
    align: AlignParams = field(default_factory=AlignParams)
    registration: RegistrationParams = field(default_factory=RegistrationParams)
    units_per_batch: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.units_per_batch, bool) or not isinstance(self.units_per_batch, int) or self.units_per_batch < 1:
            raise InputFormatError(f"must be a whole number >= 1, got {self.units_per_batch!r}", field="units_per_batch")

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON-able data."""
        return dataclasses.asdict(self)

    def params_hash(self) -> str:
        """Hash of everything that changes the tables: parameters and :data:`ANALYSIS_VERSION`."""
        values = self.as_dict()
        values.pop("units_per_batch")
        values.pop("registration")  # the registry has its own key
        return stable_hash({"params": values, "analysis_version": ANALYSIS_VERSION})


@dataclass(frozen=True)
class AnalysisOutcome:
    """What happened to one session: ``processed``, ``skipped`` or ``failed``."""

    cohort: str
    animal: str
    session: str
    status: str
    n_units: int = 0
    n_events: int = 0
    n_trials: int = 0
    n_good: int = 0
    n_cs_plus_selective: int = 0
    n_cs_minus_selective: int = 0
    has_behaviour: bool = False
    error: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class AnalysisSummary:
    """Result of :func:`build_analysis_tables`."""

    run_id: str
    outcomes: tuple[AnalysisOutcome, ...]
    record_path: Path
    registry: dict[str, str] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    def count(self, status: str) -> int:
        """Number of sessions with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    def __str__(self) -> str:
        return (
            f"analysis {self.run_id}: {self.count('processed')} processed, {self.count('skipped')} up to date, "
            f"{self.n_failed} failed"
        )


@dataclass(frozen=True)
class SessionInputs:
    """Everything one session's analysis reads (paths absolute) and the key of its result."""

    record: SessionRecord
    dataset: str
    cells_file: str
    labels_file: str
    events_file: str
    freezing_file: str
    event_offset_s: float | None
    key: str


# --------------------------------------------------------------------------- planning


def _file_digest(path: str | Path) -> str:
    p = Path(path)
    if not str(path) or not p.is_file():
        return ""
    h = hashlib.sha256()
    with p.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _optional_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputFormatError(f"'{value}' is not a number", field="event_offset_s",
                               fix="give the offset in seconds") from None
    return out if math.isfinite(out) else None


def _freezing_path(rec: SessionRecord) -> str:
    declared = str(getattr(rec, "freezing", "") or "")
    if declared:
        return declared
    if rec.events:
        beside = Path(rec.events).parent / FREEZING_FILE
        if beside.is_file():
            return str(beside.resolve())
    return ""


def session_inputs(layout: LakeLayout, rec: SessionRecord, params: AnalysisParams) -> SessionInputs:
    """Resolve one session's inputs and the hash key of its analysis tables.

    The freezing trace is the catalog's ``freezing`` path when the catalog has that
    column, else ``freezing.csv`` beside the events file if present; the clock offset
    is the catalog's ``event_offset_s`` when present, else ``params.align.event_offset_s``.
    """
    cells_file = layout.table_file("cells", rec.cohort, rec.animal, rec.session)
    labels_file = layout.table_file("labels", rec.cohort, rec.animal, rec.session)
    freezing = _freezing_path(rec)
    offset = _optional_float(getattr(rec, "event_offset_s", None))
    key = stable_hash(
        {
            "input_hash": rec.input_hash,
            "dataset": rec.dataset_path,
            "cells": _file_digest(cells_file),
            "labels": _file_digest(labels_file),
            "events": [rec.events, _file_digest(rec.events)],
            "freezing": [freezing, _file_digest(freezing)],
            "event_offset_s": offset,
            "params": params.params_hash(),
        },
        length=32,
    )
    return SessionInputs(
        record=rec,
        dataset=str(layout.root / rec.dataset_path),
        cells_file=str(cells_file),
        labels_file=str(labels_file),
        events_file=rec.events,
        freezing_file=freezing,
        event_offset_s=offset,
        key=key,
    )


def _stored_key(path: Path) -> str | None:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = meta.get(ANALYSIS_KEY)
    return value.decode() if value else None


def _is_current(layout: LakeLayout, inputs: SessionInputs) -> bool:
    rec = inputs.record
    for name in _TABLE_ORDER:
        path = layout.table_file(name, rec.cohort, rec.animal, rec.session)
        if not path.exists():
            return False
    summary = layout.table_file("cell_summary", rec.cohort, rec.animal, rec.session)
    return _stored_key(summary) == inputs.key


# --------------------------------------------------------------------------- one session


def _with_key(schema: pa.Schema, key: str) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), ANALYSIS_KEY: key.encode()})


def _table(columns: dict[str, Any], schema: pa.Schema, n: int) -> pa.Table:
    """A table of ``schema`` with ``n`` rows: scalars are repeated, missing columns are null."""
    arrays = []
    for fld in schema:
        value = columns.get(fld.name)
        if value is None:
            arrays.append(pa.nulls(n, type=fld.type))
        elif np.ndim(value) == 0:
            arrays.append(pa.repeat(pa.scalar(value, type=fld.type), n))
        elif isinstance(value, np.ndarray) and value.dtype == object:
            arrays.append(pa.array(value.tolist(), type=fld.type, from_pandas=True))
        else:
            arrays.append(pa.array(value, type=fld.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_cells(inputs: SessionInputs, unit_ids: np.ndarray, layout: LakeLayout) -> pd.DataFrame:
    rec = inputs.record
    path = Path(inputs.cells_file)
    fix = "run 'cellsift run --lake LAKE' before 'cellsift analyze'"
    if not path.exists():
        raise LakeError("the session has no cells table yet", path=path, fix=fix)
    sessions = layout.table_file("sessions", rec.cohort, rec.animal, rec.session)
    if sessions.exists():
        rows = pq.read_table(sessions, columns=["input_hash"]).to_pylist()
        if rows and rows[0]["input_hash"] != rec.input_hash:
            raise LakeError("the cells table is from an older ingest of this session", path=path, fix=fix)
    wanted = ["unit_id", "overlap_flag", "label", "p_good", "model_id", "centroid_y", "centroid_x", "run_id"]
    table = pq.read_table(path)
    cols = [c for c in wanted if c in table.column_names]
    cells = table.select(cols).to_pandas()
    for c in wanted:
        if c not in cells.columns:
            cells[c] = None
    cells = cells.drop_duplicates("unit_id").set_index("unit_id")
    missing = np.setdiff1d(unit_ids, cells.index.to_numpy())
    if missing.size:
        raise LakeError(
            f"the cells table lacks {missing.size} unit(s) of the session store (e.g. {int(missing[0])})",
            path=path,
            fix=fix,
        )
    return cells.loc[unit_ids]


def _read_truth(inputs: SessionInputs, unit_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label = np.full(unit_ids.size, None, dtype=object)
    source = np.full(unit_ids.size, None, dtype=object)
    path = Path(inputs.labels_file)
    if not path.exists():
        return label, source
    lab = pq.read_table(path).to_pandas().drop_duplicates("unit_id").set_index("unit_id")
    common = np.isin(unit_ids, lab.index.to_numpy())
    if common.any():
        sel = lab.loc[unit_ids[common]]
        label[common] = sel["label"].to_numpy(dtype=object)
        source[common] = sel["source"].to_numpy(dtype=object) if "source" in sel else None
    return label, source


def _resting_image(group: Any, params: DffParams) -> tuple[np.ndarray | None, str]:
    if "movie" in group:
        return movie_baseline_image(group["movie"], q=params.image_percentile, max_chunks=params.max_movie_chunks), "movie_p10"
    if "max_proj" in group:
        return np.asarray(group["max_proj"][:], dtype=np.float64), "max_proj"
    return None, "c_raw_range"


def _seed(params: ResponseParams, rec: SessionRecord, tone: str) -> np.random.Generator:
    digest = int(stable_hash([rec.cohort, rec.animal, rec.session, tone], length=12), 16)
    return np.random.default_rng([params.seed, digest])


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event": pd.Series(dtype=object),
            "onset_s": pd.Series(dtype=float),
            "offset_s": pd.Series(dtype=float),
            "frame": pd.Series(dtype="Int64"),
            "line": pd.Series(dtype="int64"),
        }
    )


def analyse_session(lake_root: str, inputs: SessionInputs, params: AnalysisParams) -> AnalysisOutcome:
    """Compute and write the analysis tables of one session (see the module notes).

    Parameters
    ----------
    lake_root
        The lake folder.
    inputs
        From :func:`session_inputs`.
    params
        Analysis parameters.

    Returns
    -------
    AnalysisOutcome
        ``processed`` with counts (errors are raised, not returned).

    Raises
    ------
    CellsiftError
        Bad events or freezing files, events outside the recording, a missing or stale
        ``cells`` table, an unreadable session store.
    """
    import zarr

    t0 = time.perf_counter()
    layout = LakeLayout(Path(lake_root))
    rec = inputs.record
    try:
        group = zarr.open_group(inputs.dataset, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise LakeError(
            f"session store cannot be opened ({type(exc).__name__})",
            path=inputs.dataset,
            fix="re-ingest the session with 'cellsift ingest'",
        ) from None
    time_s = np.asarray(group["time_s"][:], dtype=np.float64)
    unit_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
    n_units, n_frames = unit_ids.size, time_s.size
    fps = float(rec.fps or group.attrs.get("fps", 0.0) or 1.0 / frame_interval_s(time_s))
    if n_frames < 2 or np.any(np.diff(time_s) <= 0):
        raise InputFormatError("frame times are not increasing", path=inputs.dataset, field="time_s",
                               fix="re-ingest; check the Miniscope timeStamps.csv")
    dt = frame_interval_s(time_s)
    end_s = float(time_s[-1] + dt)
    cells = _read_cells(inputs, unit_ids, layout)

    # ---- events and clock
    events = read_events(inputs.events_file) if inputs.events_file else _empty_events()
    ttl = read_ttl_frames(rec.video) if rec.video else None
    clock = fit_clock(events, time_s=time_s, ttl_frames=ttl, event_offset_s=inputs.event_offset_s,
                      params=params.align, path=inputs.events_file or None)
    aligned = align_events(events, time_s=time_s, clock=clock, params=params.align, path=inputs.events_file or None)
    aligned["event_index"] = np.arange(len(aligned), dtype=np.int64)

    # ---- freezing (a trace file wins over freezing epochs of the events file)
    iv: FreezingIntervals | None = None
    if inputs.freezing_file:
        iv = freezing_intervals(read_freezing(inputs.freezing_file), clock=clock)
    elif (events["event"] == "freezing").any():
        iv = freezing_intervals(events, clock=clock)
    aligned["freezing_pct"] = event_freezing_pct(aligned, iv)

    # ---- traces, trial statistics and tests, in unit batches
    windows = trial_windows(aligned, time_s=time_s, params=params.responses)
    by_tone = {tone: np.flatnonzero((windows["trial_type"] == tone).to_numpy()) for tone in TONE_EVENTS}
    min_shift = max(1, int(round(params.responses.min_shift_s * fps)))
    shifts = {
        tone: draw_shifts(n_frames, n_shuffles=params.responses.n_shuffles, min_shift=min_shift,
                          rng=_seed(params.responses, rec, tone))
        for tone in TONE_EVENTS
    }
    null_exclude = (event_mask(aligned, time_s=time_s, tail_s=params.responses.null_tail_s)
                    if params.responses.mask_null else None)
    image, image_method = _resting_image(group, params.dff)
    stat_parts: list[dict[str, np.ndarray]] = []
    tone_parts: dict[str, list[dict[str, np.ndarray]]] = {tone: [] for tone in TONE_EVENTS}
    dff_meta: dict[str, list[Any]] = {"method": [], "f_ref": [], "noise": []}
    keys = {"cohort": rec.cohort, "animal": rec.animal, "session": rec.session}
    traces_final = layout.table_file("traces", rec.cohort, rec.animal, rec.session)
    traces_schema = _with_key(TRACES_SCHEMA, inputs.key)
    frames = np.arange(n_frames, dtype=np.int64)
    batch = params.units_per_batch
    with staging_path(layout.tmp, suffix=".parquet") as staged:
        with pq.ParquetWriter(staged, traces_schema, compression="zstd") as writer:
            if n_units == 0:
                writer.write_table(traces_schema.empty_table())
            for start in range(0, n_units, batch):
                stop = min(start + batch, n_units)
                c_raw = np.asarray(group["C_raw"][start:stop], dtype=np.float64)
                spikes = np.asarray(group["S"][start:stop], dtype=np.float32)
                f_ref = None
                if image is not None:
                    f_ref = reference_fluorescence(np.asarray(group["A"][start:stop]), image)
                dff, _f0, denom, methods = compute_dff(c_raw, fps=fps, f_ref=f_ref, method=image_method,
                                                       params=params.dff)
                noise = robust_noise_sd_rows(dff)
                dff_meta["method"].extend(methods)
                dff_meta["f_ref"].extend(denom.tolist())
                dff_meta["noise"].extend(noise.tolist())
                m = stop - start
                writer.write_table(
                    _table(
                        {
                            **keys,
                            "unit_id": np.repeat(unit_ids[start:stop], n_frames),
                            "frame": np.tile(frames, m),
                            "time_s": np.tile(time_s, m),
                            "dff": dff.ravel(),
                            "deconvolved": spikes.ravel(),
                        },
                        traces_schema,
                        m * n_frames,
                    )
                )
                st = trial_statistics(dff, time_s=time_s, windows=windows, noise_sd=noise)
                stat_parts.append(st)
                for tone, idx in by_tone.items():
                    wt = windows.iloc[idx]
                    obs, p_two, _p_up = circular_shift_test(dff, windows=wt, shifts=shifts[tone], exclude=null_exclude)
                    sig = (st["p_value"][:, idx] < params.responses.trial_alpha) & (
                        np.sign(st["delta"][:, idx]) == np.sign(obs)[:, None])
                    with np.errstate(invalid="ignore"):
                        tone_parts[tone].append(
                            {
                                "response": obs,
                                "p": p_two,
                                "zscore": np.nanmean(st["zscore"][:, idx], axis=1) if idx.size else np.full(m, np.nan),
                                "auc": np.nanmean(st["auc"][:, idx], axis=1) if idx.size else np.full(m, np.nan),
                                "n_trials_sig": sig.sum(axis=1),
                            }
                        )
        traces_final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, traces_final)

    # ---- trial_responses
    n_trials = len(windows)
    stage_cols = {"stage": rec.stage, "day": int(rec.day)}
    if n_units and n_trials:
        stacked = {k: np.concatenate([p[k] for p in stat_parts], axis=0) for k in stat_parts[0] if k not in
                   ("n_baseline_frames", "n_response_frames")}
        n_rows = n_units * n_trials
        trial_cols: dict[str, Any] = {
            **keys,
            **stage_cols,
            "unit_id": np.repeat(unit_ids, n_trials),
            "trial_type": np.tile(windows["trial_type"].to_numpy(dtype=object), n_units),
            "trial": np.tile(windows["trial"].to_numpy(np.int64), n_units),
            "event_index": np.tile(windows["event_index"].to_numpy(np.int64), n_units),
            "onset_frame": np.tile(windows["onset_frame"].to_numpy(np.int64), n_units),
            "onset_s": np.tile(windows["onset_s"].to_numpy(np.float64), n_units),
            "n_baseline_frames": np.tile(stat_parts[0]["n_baseline_frames"], n_units),
            "n_response_frames": np.tile(stat_parts[0]["n_response_frames"], n_units),
        }
        for k, v in stacked.items():
            trial_cols[k] = v.ravel()
    else:
        n_rows, trial_cols = 0, {}
    trials_schema = _with_key(TRIAL_RESPONSES_SCHEMA, inputs.key)
    trials_table = _table(trial_cols, trials_schema, n_rows) if n_rows else trials_schema.empty_table()

    # ---- events
    n_events = len(aligned)
    events_table = _table(
        {
            **keys,
            **stage_cols,
            **{c: aligned[c].to_numpy() for c in aligned.columns if c in EVENTS_SCHEMA.names},
            "clock_method": clock.method,
            "clock_offset_s": clock.offset_s,
            "clock_scale": clock.scale,
            "events_file": inputs.events_file or None,
        },
        _with_key(EVENTS_SCHEMA, inputs.key),
        n_events,
    )

    # ---- behaviour
    behaviour_schema = _with_key(BEHAVIOUR_SCHEMA, inputs.key)
    if iv is not None:
        beh = behaviour_rows(aligned, iv, recording_end_s=end_s)
        behaviour_table = _table(
            {
                **keys,
                **stage_cols,
                **{c: beh[c].to_numpy() for c in beh.columns},
                "source": iv.source,
                "freezing_file": inputs.freezing_file or inputs.events_file,
            },
            behaviour_schema,
            len(beh),
        )
    else:
        behaviour_table = behaviour_schema.empty_table()

    # ---- cell_summary
    per_tone: dict[str, dict[str, Any]] = {}
    for tone in TONE_EVENTS:
        parts = tone_parts[tone]
        if parts:
            per_tone[tone] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            per_tone[tone] = {k: np.zeros(0) for k in ("response", "p", "zscore", "auc", "n_trials_sig")}
        per_tone[tone]["n_trials"] = int(by_tone[tone].size)
    summary_cols = summarise_cells(per_tone, n_units=n_units, params=params.responses)
    label = cells["label"].to_numpy(dtype=object)
    classified = bool(cells["label"].notna().any() or cells["model_id"].notna().any())
    overlap = cells["overlap_flag"].fillna(False).to_numpy(dtype=bool)
    if classified:
        is_good = np.array([v == "good" for v in label], dtype=bool)
        rule = "classifier"
        label_source = np.where(pd.notna(label), "classifier", None).astype(object)
    else:
        is_good = ~overlap
        rule = "not_overlap_flagged"
        label_source = np.full(n_units, None, dtype=object)
    truth_label, truth_source = _read_truth(inputs, unit_ids)
    run_ids = cells["run_id"].dropna()
    summary_table = _table(
        {
            **keys,
            **stage_cols,
            "unit_id": unit_ids,
            "is_good": is_good,
            "good_rule": rule,
            "curation_label": label if classified else np.full(n_units, None, dtype=object),
            "label_source": label_source,
            "p_good": cells["p_good"].to_numpy(dtype=np.float64, na_value=np.nan),
            "model_id": cells["model_id"].to_numpy(dtype=object),
            "overlap_flag": overlap,
            "truth_label": truth_label,
            "truth_source": truth_source,
            "centroid_y": cells["centroid_y"].to_numpy(dtype=np.float64, na_value=np.nan),
            "centroid_x": cells["centroid_x"].to_numpy(dtype=np.float64, na_value=np.nan),
            "dff_method": np.asarray(dff_meta["method"], dtype=object),
            "dff_f_ref": np.asarray(dff_meta["f_ref"], dtype=np.float64),
            "dff_noise_sd": np.asarray(dff_meta["noise"], dtype=np.float64),
            **summary_cols,
            "cells_run_id": str(run_ids.iloc[0]) if len(run_ids) else None,
            "analysis_version": ANALYSIS_VERSION,
        },
        _with_key(CELL_SUMMARY_SCHEMA, inputs.key),
        n_units,
    )

    # ---- publish (cell_summary last: it marks the session complete)
    for name, table in (("events", events_table), ("trial_responses", trials_table),
                        ("behaviour", behaviour_table), ("cell_summary", summary_table)):
        write_parquet_atomic(table, layout.table_file(name, rec.cohort, rec.animal, rec.session), tmp_root=layout.tmp)
    duration = time.perf_counter() - t0
    good_sel = np.asarray(summary_cols["cs_plus_selective"]) & is_good
    outcome = AnalysisOutcome(
        rec.cohort, rec.animal, rec.session, "processed",
        n_units=n_units,
        n_events=n_events,
        n_trials=n_trials,
        n_good=int(is_good.sum()),
        n_cs_plus_selective=int(good_sel.sum()),
        n_cs_minus_selective=int((np.asarray(summary_cols["cs_minus_selective"]) & is_good).sum()),
        has_behaviour=iv is not None,
        duration_s=duration,
    )
    logger.info(
        "analysed %s/%s/%s: %d units (%d good), %d events, %d trials, %d CS+ / %d CS- selective good cells, "
        "clock %s, %.1f s",
        rec.cohort, rec.animal, rec.session, n_units, outcome.n_good, n_events, n_trials,
        outcome.n_cs_plus_selective, outcome.n_cs_minus_selective, clock.method, duration,
    )
    return outcome


# --------------------------------------------------------------------------- cell registry


def _registration_image(group: Any) -> np.ndarray:
    for name in ("max_proj", "Cn"):
        if name in group:
            return np.asarray(group[name][:], dtype=np.float64)
    a = group["A"]
    return np.asarray(sum(np.asarray(a[i : i + 32], dtype=np.float64).sum(axis=0) for i in range(0, a.shape[0], 32)))


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
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], y[keep] * out_dims[1] + x[keep])),
                         shape=(A.shape[0], out_dims[0] * out_dims[1]))


def _unit_rows(A: Any) -> Any:
    """Rows scaled to unit L2 norm (cosine similarity by a product)."""
    import scipy.sparse as sp

    norm = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
    inv = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-30), 0.0)
    return sp.diags(inv) @ A


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

    Returns
    -------
    list of str
        The sessions whose ``cell_registry`` file was written.
    """
    import scipy.sparse as sp
    import zarr
    from scipy.optimize import linear_sum_assignment

    layout = LakeLayout(Path(lake_root))
    records = sorted(records, key=lambda r: (r.day, r.session))
    ref = records[0]
    ref_group = zarr.open_group(str(layout.root / ref.dataset_path), mode="r")
    ref_img = _registration_image(ref_group)
    ref_dims = (int(ref_group["A"].shape[1]), int(ref_group["A"].shape[2]))
    t_cent = np.zeros((0, 2))
    t_fp = sp.csr_matrix((0, ref_dims[0] * ref_dims[1]))
    t_first: list[str] = []
    written = []
    schema = _with_key(CELL_REGISTRY_SCHEMA, key)
    for rec in records:
        group = ref_group if rec is ref else zarr.open_group(str(layout.root / rec.dataset_path), mode="r")
        dims = (int(group["A"].shape[1]), int(group["A"].shape[2]))
        unit_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
        A = read_footprints_sparse(group["A"]).astype(np.float64)
        if rec is ref:
            shift = (0.0, 0.0)
        else:
            shift = estimate_shift(ref_img, _registration_image(group), max_shift_px=params.max_shift_px,
                                   highpass_sigma_px=params.highpass_sigma_px)
        cent = centroids(A, dims) - np.asarray(shift)[None, :] if len(unit_ids) else np.zeros((0, 2))
        moved = _unit_rows(_move_footprints(A, dims, ref_dims, (int(round(shift[0])), int(round(shift[1])))))
        n = len(unit_ids)
        match = np.full(n, -1, dtype=np.int64)
        dist_out = np.full(n, np.nan)
        sim_out = np.full(n, np.nan)
        if n and len(t_cent):
            dist = np.hypot(cent[:, None, 0] - t_cent[None, :, 0], cent[:, None, 1] - t_cent[None, :, 1])
            sim = np.asarray((moved @ t_fp.T).todense())
            ok = (dist <= params.max_distance_px) & (sim >= params.min_footprint_similarity)
            if ok.any():
                cost = np.where(ok, dist / params.max_distance_px + (1.0 - sim), 1e6)
                rows, cols = linear_sum_assignment(cost)
                for r, c in zip(rows, cols):
                    if ok[r, c]:
                        match[r], dist_out[r], sim_out[r] = c, dist[r, c], sim[r, c]
        new = np.flatnonzero(match < 0)
        match[new] = len(t_cent) + np.arange(new.size)
        if new.size:
            t_cent = np.vstack([t_cent, cent[new]])
            t_fp = sp.vstack([t_fp, moved[new]], format="csr")
            t_first.extend([rec.session] * new.size)
        table = _table(
            {
                "cohort": rec.cohort, "animal": rec.animal, "session": rec.session,
                "stage": rec.stage, "day": int(rec.day),
                "unit_id": unit_ids,
                "cell_key": np.array([f"{rec.animal}/c{m:04d}" for m in match], dtype=object),
                "first_session": np.array([t_first[m] for m in match], dtype=object),
                "reference_session": ref.session,
                "shift_y_px": float(shift[0]), "shift_x_px": float(shift[1]),
                "match_distance_px": dist_out, "footprint_similarity": sim_out,
            },
            schema,
            n,
        )
        write_parquet_atomic(table, layout.table_file("cell_registry", rec.cohort, rec.animal, rec.session),
                             tmp_root=layout.tmp)
        written.append(rec.session)
        logger.debug("registry %s/%s/%s: shift (%.1f, %.1f) px, %d of %d units matched earlier cells",
                     rec.cohort, rec.animal, rec.session, shift[0], shift[1], n - new.size, n)
    logger.info("registered %d session(s) of %s/%s: %d distinct cells", len(written), ref.cohort, ref.animal,
                len(t_cent))
    return written


def _registry_plan(layout: LakeLayout, records: list[SessionRecord], params: AnalysisParams,
                   force: bool) -> list[tuple[list[SessionRecord], str]]:
    """Animals whose registry is missing or stale, with the key their files will carry."""
    by_animal: dict[tuple[str, str], list[SessionRecord]] = {}
    for rec in records:
        by_animal.setdefault((rec.cohort, rec.animal), []).append(rec)
    todo = []
    for (_cohort, _animal), recs in sorted(by_animal.items()):
        key = stable_hash({"sessions": sorted((r.session, r.day, r.input_hash, r.dataset_path) for r in recs),
                           "params": dataclasses.asdict(params.registration), "version": ANALYSIS_VERSION},
                          length=32)
        paths = [layout.table_file("cell_registry", r.cohort, r.animal, r.session) for r in recs]
        if force or not all(p.exists() and _stored_key(p) == key for p in paths):
            todo.append((recs, key))
    return todo


# --------------------------------------------------------------------------- cohort


def _build_registry(layout: LakeLayout, records: list[SessionRecord], params: AnalysisParams, *, client: Any,
                    force: bool) -> dict[str, str]:
    """Bring every animal's ``cell_registry`` up to date; return a status line per animal."""
    plan = _registry_plan(layout, records, params, force)
    status = {f"{r.cohort}/{r.animal}": "up to date" for r in records}
    if not plan:
        return status
    if client is None:
        results: list[Any] = []
        for recs, key in plan:
            try:
                results.append(register_animal(str(layout.root), recs, params.registration, key))
            except Exception as exc:  # one animal must not stop the others
                results.append(exc)
    else:
        from distributed import wait

        futures = [client.submit(register_animal, str(layout.root), recs, params.registration, key, pure=False,
                                 key=f"register-{recs[0].cohort}-{recs[0].animal}-{key[:8]}")
                   for recs, key in plan]
        wait(futures)
        results = [f.result() if f.status == "finished" else f.exception() for f in futures]
    for (recs, _key), res in zip(plan, results, strict=True):
        name = f"{recs[0].cohort}/{recs[0].animal}"
        if isinstance(res, BaseException):
            message = res.one_line() if isinstance(res, CellsiftError) else f"{type(res).__name__}: {res}"
            logger.error("cell registry of %s failed: %s", name, message)
            status[name] = f"failed: {message}"
        else:
            status[name] = f"registered {len(res)} session(s)"
    return status


def _failure(rec: SessionRecord, exc: BaseException) -> AnalysisOutcome:
    message = exc.one_line() if isinstance(exc, CellsiftError) else f"{type(exc).__name__}: {exc}"
    logger.error("%s/%s/%s failed: %s", rec.cohort, rec.animal, rec.session, message)
    return AnalysisOutcome(rec.cohort, rec.animal, rec.session, "failed", error=message)


def build_analysis_tables(
    lake: Path,
    *,
    client: Any = None,
    params: AnalysisParams = AnalysisParams(),
    force: bool = False,
) -> AnalysisSummary:
    """Build (or bring up to date) the analysis tables of every ingested session.

    Parameters
    ----------
    lake
        The lake folder; ``cellsift run`` must have written the ``cells`` table.
    client
        A connected ``distributed.Client``: one task per session on its workers (which
        must see the lake at the same path). ``None`` runs the sessions one after the
        other in this process.
    params
        Analysis parameters.
    force
        Recompute sessions whose tables are up to date.

    Returns
    -------
    AnalysisSummary
        Outcome per session and the path of the run record
        ``LAKE/runs/analysis-<run_id>.json``. A session that fails (bad events file,
        events outside the recording, no cells table) is reported with a one-line error;
        the others proceed.

    Raises
    ------
    LakeError
        If there is no lake at ``lake`` or another run holds its lock.
    """
    catalog = Catalog(lake)
    layout = catalog.layout
    layout.ensure()
    run_id = new_run_id()
    with run_lock(layout.root, run_id=run_id):
        started = utc_now()
        todo: list[SessionInputs] = []
        outcomes: list[AnalysisOutcome] = []
        for rec in catalog.records(status=STATUS_INGESTED):
            try:
                inputs = session_inputs(layout, rec, params)
            except CellsiftError as exc:
                outcomes.append(_failure(rec, exc))
                continue
            if not force and _is_current(layout, inputs):
                outcomes.append(AnalysisOutcome(rec.cohort, rec.animal, rec.session, "skipped", n_units=rec.n_units))
            else:
                todo.append(inputs)
        logger.info("analysis %s: %d session(s) to process, %d up to date", run_id, len(todo),
                    sum(o.status == "skipped" for o in outcomes))
        if client is None:
            for inputs in todo:
                try:
                    outcomes.append(analyse_session(str(layout.root), inputs, params))
                except Exception as exc:  # one bad session must not stop the cohort
                    outcomes.append(_failure(inputs.record, exc))
        elif todo:
            from distributed import wait

            futures = [
                client.submit(analyse_session, str(layout.root), inputs, params, pure=False,
                              key=f"analyse-{inputs.record.cohort}-{inputs.record.animal}-{inputs.record.session}-{run_id}")
                for inputs in todo
            ]
            wait(futures)
            for inputs, fut in zip(todo, futures, strict=True):
                if fut.status == "finished":
                    outcomes.append(fut.result())
                else:
                    outcomes.append(_failure(inputs.record, fut.exception()))
        outcomes.sort(key=lambda o: (o.cohort, o.animal, o.session))
        registry = _build_registry(layout, catalog.records(status=STATUS_INGESTED), params, client=client,
                                   force=force)
        record = {
            "run_id": run_id,
            "kind": "analysis",
            "started_at": started.isoformat(),
            "finished_at": utc_now().isoformat(),
            "analysis_version": ANALYSIS_VERSION,
            "params": params.as_dict(),
            "params_hash": params.params_hash(),
            "versions": package_versions(),
            "scheduler": getattr(getattr(client, "scheduler", None), "address", None),
            "status": "failed" if any(o.status == "failed" for o in outcomes) else "finished",
            "sessions": [dataclasses.asdict(o) for o in outcomes],
            "registry": registry,
        }
        record_path = layout.runs / f"analysis-{run_id}.json"
        write_json_atomic(record, record_path)
    summary = AnalysisSummary(run_id=run_id, outcomes=tuple(outcomes), record_path=record_path, registry=registry)
    logger.info("%s", summary)
    return summary
