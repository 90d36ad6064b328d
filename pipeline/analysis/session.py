"""One session's analysis: its inputs and key, and the phases that compute and write its tables.

:func:`analyse_session` runs, for one session:

1. ``_open_recording`` — frame times and units of the session store;
2. :func:`.behaviour.session_behaviour` — read and validate the events file, find the
   behaviour-to-imaging clock map (sync pulses, TTL column, declared offset) and align
   every event to frames by the Miniscope timestamps (:mod:`.clock`, :mod:`.events`);
   read freezing (``freezing.csv`` named by the catalog, or beside the events file; or
   ``freezing`` epochs of the events file) (:mod:`.behaviour`);
3. ``_plan_trials`` — trial windows and the circular shifts of each tone type;
4. ``_write_traces`` — for each batch of ``units_per_batch`` units: read ``C_raw``,
   ``S`` and ``A`` rows, compute ΔF/F (:mod:`.dff`), append the batch to the ``traces``
   file (one row group per batch, so memory is bounded by the batch, not the session),
   compute trial statistics and the circular-shift test (:mod:`.responses`,
   :mod:`.selectivity`);
5. build ``trial_responses``, ``events``, ``behaviour`` and ``cell_summary`` (which joins
   the ``cells`` table — overlap flags, classifier labels — and the ``labels`` table —
   truth, for evaluation only) and write every table atomically into
   ``LAKE/tables/<name>/<cohort>/<animal>/<session>/part-0.parquet``; ``cell_summary`` is
   written last and marks the session complete.

The good-cell rule of ``cell_summary.is_good`` is :func:`.store.good_cells`'s.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cellsift.catalog import LakeLayout, SessionRecord, staging_path, write_parquet_atomic
from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.analysis.behaviour import session_behaviour
from cellsift.pipeline.analysis.clock import frame_interval_s
from cellsift.pipeline.analysis.dff import (
    DffParams,
    compute_dff,
    movie_baseline_image,
    reference_fluorescence,
    robust_noise_sd_rows,
)
from cellsift.pipeline.analysis.events import TONE_EVENTS
from cellsift.pipeline.analysis.params import AnalysisParams
from cellsift.pipeline.analysis.responses import ResponseParams, trial_statistics, trial_windows
from cellsift.pipeline.analysis.selectivity import (
    circular_shift_test,
    draw_shifts,
    event_mask,
    summarise_cells,
)
from cellsift.pipeline.analysis.store import (
    arrow_table,
    behaviour_table,
    cell_summary_table,
    events_table,
    read_cells,
    stored_key,
    trial_responses_table,
    with_key,
)
from cellsift.pipeline.executor import PROCESSED, SessionOutcome
from cellsift.pipeline.provenance import stable_hash
from cellsift.schemas import ANALYSIS_TABLES, InputFormatError, LakeError, SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "ANALYZE_STAGE",
    "FREEZING_FILE",
    "SessionInputs",
    "session_inputs",
    "is_current",
    "analyse_session",
]

#: Stage name of the analysis in outcomes, error lines and Dask task keys.
ANALYZE_STAGE: Final = "analyze"
#: Freezing trace looked for beside the events file when the catalog names none.
FREEZING_FILE: Final = "freezing.csv"
#: The tables of one session, in the order they are published (``cell_summary`` last).
_TABLE_ORDER: Final = ("traces", "events", "trial_responses", "behaviour", "cell_summary")


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

    @property
    def session_key(self) -> SessionKey:
        """The session's full key."""
        rec = self.record
        return SessionKey(rec.cohort, rec.animal, rec.session)


# --------------------------------------------------------------------------- inputs


def _optional_digest(path: str | Path) -> str:
    """SHA-256 of a file, or ``""`` when no path is given or the file does not exist."""
    if not str(path) or not Path(path).is_file():
        return ""
    return file_sha256(path)


def _optional_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputFormatError(
            f"'{value}' is not a number", field="event_offset_s", fix="give the offset in seconds"
        ) from None
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
    The key hashes the session's input hash, the bytes of its ``cells`` file (so a new
    pipeline run or new classifier labels count), its labels, events and freezing files,
    the parameters and :data:`~cellsift.pipeline.analysis.params.ANALYSIS_VERSION`.

    Raises
    ------
    InputFormatError
        If the catalog's ``event_offset_s`` is not a number.
    """
    cells_file = layout.table_file("cells", rec.cohort, rec.animal, rec.session)
    labels_file = layout.table_file("labels", rec.cohort, rec.animal, rec.session)
    freezing = _freezing_path(rec)
    offset = _optional_float(getattr(rec, "event_offset_s", None))
    key = stable_hash(
        {
            "input_hash": rec.input_hash,
            "dataset": rec.dataset_path,
            "cells": _optional_digest(cells_file),
            "labels": _optional_digest(labels_file),
            "events": [rec.events, _optional_digest(rec.events)],
            "freezing": [freezing, _optional_digest(freezing)],
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


def is_current(layout: LakeLayout, inputs: SessionInputs) -> bool:
    """Whether every table of the session exists and its ``cell_summary`` carries ``inputs.key``."""
    rec = inputs.record
    for name in _TABLE_ORDER:
        path = layout.table_file(name, rec.cohort, rec.animal, rec.session)
        if not path.exists():
            return False
    summary = layout.table_file("cell_summary", rec.cohort, rec.animal, rec.session)
    return stored_key(summary) == inputs.key


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class _Recording:
    """The session store and its frame times (s), units and frame rate (Hz)."""

    group: Any
    time_s: np.ndarray
    unit_ids: np.ndarray
    fps: float
    end_s: float


@dataclass(frozen=True)
class _TrialPlan:
    """Trial windows, the trials of each tone type, their circular shifts and the null mask."""

    windows: pd.DataFrame
    by_tone: dict[str, np.ndarray]
    shifts: dict[str, np.ndarray]
    null_exclude: np.ndarray | None


@dataclass
class _UnitStats:
    """Per-batch results, concatenated over batches when the tables are built."""

    trials: list[dict[str, np.ndarray]] = field(default_factory=list)
    tones: dict[str, list[dict[str, np.ndarray]]] = field(
        default_factory=lambda: {t: [] for t in TONE_EVENTS}
    )
    dff_method: list[str] = field(default_factory=list)
    dff_f_ref: list[float] = field(default_factory=list)
    dff_noise: list[float] = field(default_factory=list)


def _open_recording(inputs: SessionInputs) -> _Recording:
    import zarr

    rec = inputs.record
    try:
        group: Any = zarr.open_group(inputs.dataset, mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise LakeError(
            f"session store cannot be opened ({type(exc).__name__})",
            path=inputs.dataset,
            fix="re-ingest the session with 'cellsift ingest'",
        ) from None
    time_s = np.asarray(group["time_s"][:], dtype=np.float64)
    unit_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
    fps = float(rec.fps or group.attrs.get("fps", 0.0) or 1.0 / frame_interval_s(time_s))
    if time_s.size < 2 or np.any(np.diff(time_s) <= 0):
        raise InputFormatError(
            "frame times are not increasing",
            path=inputs.dataset,
            field="time_s",
            fix="re-ingest; check the Miniscope timeStamps.csv",
        )
    dt = frame_interval_s(time_s)
    return _Recording(group=group, time_s=time_s, unit_ids=unit_ids, fps=fps, end_s=float(time_s[-1] + dt))


def _seed(params: ResponseParams, rec: SessionRecord, tone: str) -> np.random.Generator:
    digest = int(stable_hash([rec.cohort, rec.animal, rec.session, tone], length=12), 16)
    return np.random.default_rng([params.seed, digest])


def _plan_trials(
    aligned: pd.DataFrame, recording: _Recording, rec: SessionRecord, params: ResponseParams
) -> _TrialPlan:
    time_s = recording.time_s
    windows = trial_windows(aligned, time_s=time_s, params=params)
    by_tone = {tone: np.flatnonzero((windows["trial_type"] == tone).to_numpy()) for tone in TONE_EVENTS}
    min_shift = max(1, int(round(params.min_shift_s * recording.fps)))
    shifts = {
        tone: draw_shifts(
            time_s.size, n_shuffles=params.n_shuffles, min_shift=min_shift, rng=_seed(params, rec, tone)
        )
        for tone in TONE_EVENTS
    }
    null_exclude = event_mask(aligned, time_s=time_s, tail_s=params.null_tail_s) if params.mask_null else None
    return _TrialPlan(windows=windows, by_tone=by_tone, shifts=shifts, null_exclude=null_exclude)


def _resting_image(group: Any, params: DffParams) -> tuple[np.ndarray | None, str]:
    if "movie" in group:
        image = movie_baseline_image(
            group["movie"], q=params.image_percentile, max_chunks=params.max_movie_chunks
        )
        return image, "movie_p10"
    if "max_proj" in group:
        return np.asarray(group["max_proj"][:], dtype=np.float64), "max_proj"
    return None, "c_raw_range"


def _batch_stats(
    dff: np.ndarray,
    noise: np.ndarray,
    time_s: np.ndarray,
    plan: _TrialPlan,
    params: ResponseParams,
    out: _UnitStats,
) -> None:
    """Trial statistics and the circular-shift test of one batch of units, appended to ``out``."""
    m = dff.shape[0]
    st = trial_statistics(dff, time_s=time_s, windows=plan.windows, noise_sd=noise)
    out.trials.append(st)
    for tone, idx in plan.by_tone.items():
        wt = plan.windows.iloc[idx]
        obs, p_two, _p_up = circular_shift_test(
            dff, windows=wt, shifts=plan.shifts[tone], exclude=plan.null_exclude
        )
        sig = (st["p_value"][:, idx] < params.trial_alpha) & (
            np.sign(st["delta"][:, idx]) == np.sign(obs)[:, None]
        )
        with np.errstate(invalid="ignore"):
            out.tones[tone].append(
                {
                    "response": obs,
                    "p": p_two,
                    "zscore": np.nanmean(st["zscore"][:, idx], axis=1) if idx.size else np.full(m, np.nan),
                    "auc": np.nanmean(st["auc"][:, idx], axis=1) if idx.size else np.full(m, np.nan),
                    "n_trials_sig": sig.sum(axis=1),
                }
            )


def _write_traces(
    layout: LakeLayout, inputs: SessionInputs, recording: _Recording, plan: _TrialPlan, params: AnalysisParams
) -> _UnitStats:
    """ΔF/F and statistics batch by batch; ``traces`` is written as it goes (one row group a batch)."""
    rec = inputs.record
    group, time_s, unit_ids = recording.group, recording.time_s, recording.unit_ids
    n_units, n_frames = unit_ids.size, time_s.size
    image, image_method = _resting_image(group, params.dff)
    out = _UnitStats()
    traces_final = layout.table_file("traces", rec.cohort, rec.animal, rec.session)
    traces_schema = with_key(ANALYSIS_TABLES["traces"], inputs.key)
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
                dff, _f0, denom, methods = compute_dff(
                    c_raw, fps=recording.fps, f_ref=f_ref, method=image_method, params=params.dff
                )
                noise = robust_noise_sd_rows(dff)
                out.dff_method.extend(methods)
                out.dff_f_ref.extend(denom.tolist())
                out.dff_noise.extend(noise.tolist())
                m = stop - start
                columns = {
                    "cohort": rec.cohort,
                    "animal": rec.animal,
                    "session": rec.session,
                    "unit_id": np.repeat(unit_ids[start:stop], n_frames),
                    "frame": np.tile(frames, m),
                    "time_s": np.tile(time_s, m),
                    "dff": dff.ravel(),
                    "deconvolved": spikes.ravel(),
                }
                writer.write_table(arrow_table(columns, traces_schema, m * n_frames))
                _batch_stats(dff, noise, time_s, plan, params.responses, out)
        traces_final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, traces_final)
    return out


def _tone_summaries(plan: _TrialPlan, stats: _UnitStats) -> dict[str, dict[str, Any]]:
    """Per tone type: the batches' per-unit results concatenated, and the number of trials."""
    per_tone: dict[str, dict[str, Any]] = {}
    for tone in TONE_EVENTS:
        parts = stats.tones[tone]
        if parts:
            per_tone[tone] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            per_tone[tone] = {k: np.zeros(0) for k in ("response", "p", "zscore", "auc", "n_trials_sig")}
        per_tone[tone]["n_trials"] = int(plan.by_tone[tone].size)
    return per_tone


# --------------------------------------------------------------------------- one session


def analyse_session(lake_root: str, inputs: SessionInputs, params: AnalysisParams) -> SessionOutcome:
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
    SessionOutcome
        ``processed``, stage ``"analyze"``, with ``n_units`` and the counts ``n_events``,
        ``n_trials``, ``n_good``, ``n_cs_plus_selective``, ``n_cs_minus_selective`` (good
        cells) and ``has_behaviour`` in ``details`` (errors are raised, not returned).

    Raises
    ------
    CellsiftError
        Bad events or freezing files, events outside the recording, a missing or stale
        ``cells`` table, an unreadable session store.
    """
    t0 = time.perf_counter()
    layout = LakeLayout(Path(lake_root))
    rec = inputs.record
    recording = _open_recording(inputs)
    unit_ids = recording.unit_ids
    cells = read_cells(inputs.cells_file, rec, unit_ids, layout)
    beh = session_behaviour(
        inputs.events_file,
        time_s=recording.time_s,
        video=rec.video,
        event_offset_s=inputs.event_offset_s,
        freezing_file=inputs.freezing_file,
        params=params.align,
    )
    plan = _plan_trials(beh.aligned, recording, rec, params.responses)
    stats = _write_traces(layout, inputs, recording, plan, params)
    key = inputs.key
    trials_table = trial_responses_table(rec, key, unit_ids, plan.windows, stats.trials)
    events = events_table(rec, key, beh.aligned, beh.clock, inputs.events_file)
    behaviour = behaviour_table(
        rec,
        key,
        beh.aligned,
        beh.freezing,
        recording_end_s=recording.end_s,
        source_file=inputs.freezing_file or inputs.events_file,
    )
    summary_cols = summarise_cells(
        _tone_summaries(plan, stats), n_units=unit_ids.size, params=params.responses
    )
    dff_cols = {
        "dff_method": np.asarray(stats.dff_method, dtype=object),
        "dff_f_ref": np.asarray(stats.dff_f_ref, dtype=np.float64),
        "dff_noise_sd": np.asarray(stats.dff_noise, dtype=np.float64),
    }
    summary, is_good = cell_summary_table(
        rec, key, unit_ids, cells, summary_cols, dff_cols, labels_file=inputs.labels_file
    )
    # publish (cell_summary last: it marks the session complete)
    for name, table in (
        ("events", events),
        ("trial_responses", trials_table),
        ("behaviour", behaviour),
        ("cell_summary", summary),
    ):
        write_parquet_atomic(
            table, layout.table_file(name, rec.cohort, rec.animal, rec.session), tmp_root=layout.tmp
        )
    details = {
        "n_events": len(beh.aligned),
        "n_trials": len(plan.windows),
        "n_good": int(is_good.sum()),
        "n_cs_plus_selective": int((np.asarray(summary_cols["cs_plus_selective"]) & is_good).sum()),
        "n_cs_minus_selective": int((np.asarray(summary_cols["cs_minus_selective"]) & is_good).sum()),
        "has_behaviour": beh.freezing is not None,
    }
    duration = time.perf_counter() - t0
    logger.info(
        "analysed %s: %d units (%d good), %d events, %d trials, %d CS+ / %d CS- selective good cells, "
        "clock %s, %.1f s",
        inputs.session_key.label,
        unit_ids.size,
        details["n_good"],
        details["n_events"],
        details["n_trials"],
        details["n_cs_plus_selective"],
        details["n_cs_minus_selective"],
        beh.clock.method,
        duration,
    )
    return SessionOutcome(
        rec.cohort,
        rec.animal,
        rec.session,
        status=PROCESSED,
        stage=ANALYZE_STAGE,
        n_units=int(unit_ids.size),
        duration_s=duration,
        details=details,
    )
