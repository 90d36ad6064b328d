"""How the analysis reads the pipeline's tables and builds its own, one session at a time.

* :func:`arrow_table` builds an Arrow table of a schema from columns (scalars repeated,
  missing columns null); :func:`with_key` puts the analysis key into a schema's Parquet
  metadata and :func:`stored_key` reads it back from a file, so a table file says what
  it was computed from;
* :func:`read_cells` reads a session's ``cells`` table (overlap flags, classifier
  labels) and checks it belongs to the session's current ingest; :func:`read_truth`
  reads its ``labels`` table (ground truth, for evaluation only);
* :func:`trial_responses_table`, :func:`events_table`, :func:`behaviour_table` and
  :func:`cell_summary_table` build a session's tables from what
  :mod:`.session` computed.

Good cells by default (``cell_summary.is_good``, :func:`good_cells`): when a classifier
has labelled the session (``cells.label`` or ``cells.model_id`` not null),
``is_good = label == 'good'``; otherwise ``is_good = NOT overlap_flag``. ``good_rule``
says which rule applied. The ``labels`` table (ground truth or manual curation) is
joined as ``truth_label`` and never mixed into ``is_good``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog import LakeLayout, SessionRecord
from cellsift.pipeline.analysis.behaviour import FreezingIntervals, behaviour_rows
from cellsift.pipeline.analysis.clock import ClockMap
from cellsift.pipeline.analysis.params import ANALYSIS_VERSION
from cellsift.schemas import ANALYSIS_KEY, ANALYSIS_TABLES, LakeError

__all__ = [
    "arrow_table",
    "with_key",
    "stored_key",
    "read_cells",
    "read_truth",
    "good_cells",
    "trial_responses_table",
    "events_table",
    "behaviour_table",
    "cell_summary_table",
]

#: Columns of the ``cells`` table the analysis uses (missing ones are null).
_CELL_COLUMNS = [
    "unit_id",
    "overlap_flag",
    "label",
    "p_good",
    "model_id",
    "centroid_y",
    "centroid_x",
    "run_id",
]


def with_key(schema: pa.Schema, key: str) -> pa.Schema:
    """``schema`` with the analysis key ``key`` in its metadata (``cellsift.analysis_key``)."""
    return schema.with_metadata({**(schema.metadata or {}), ANALYSIS_KEY: key.encode()})


def stored_key(path: Path) -> str | None:
    """The analysis key a Parquet file carries, or ``None`` (no key, unreadable file)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = meta.get(ANALYSIS_KEY)
    return value.decode() if value else None


def arrow_table(columns: dict[str, Any], schema: pa.Schema, n: int) -> pa.Table:
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


def read_cells(
    cells_file: str | Path, rec: SessionRecord, unit_ids: np.ndarray, layout: LakeLayout
) -> pd.DataFrame:
    """The session's ``cells`` rows, indexed by ``unit_id`` in the order of ``unit_ids``.

    Parameters
    ----------
    cells_file
        The session's ``cells`` table file.
    rec
        The session's catalog record (its ``input_hash`` must match the ``sessions`` row).
    unit_ids
        Units of the session store.
    layout
        The lake.

    Returns
    -------
    pandas.DataFrame
        Columns ``overlap_flag``, ``label``, ``p_good``, ``model_id``, ``centroid_y``,
        ``centroid_x``, ``run_id`` (null where the table lacks them).

    Raises
    ------
    LakeError
        No ``cells`` table, one from an older ingest, or one that lacks units.
    """
    path = Path(cells_file)
    fix = "run 'cellsift run --lake LAKE' before 'cellsift analyze'"
    if not path.exists():
        raise LakeError("the session has no cells table yet", path=path, fix=fix)
    sessions = layout.table_file("sessions", rec.cohort, rec.animal, rec.session)
    if sessions.exists():
        rows = pq.read_table(sessions, columns=["input_hash"]).to_pylist()
        if rows and rows[0]["input_hash"] != rec.input_hash:
            raise LakeError("the cells table is from an older ingest of this session", path=path, fix=fix)
    table = pq.read_table(path)
    cols = [c for c in _CELL_COLUMNS if c in table.column_names]
    cells = table.select(cols).to_pandas()
    for c in _CELL_COLUMNS:
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


def read_truth(labels_file: str | Path, unit_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Truth label and its source per unit from the ``labels`` table (``None`` where unlabelled).

    Returns
    -------
    tuple
        ``(label, source)``, each ``(len(unit_ids),)`` object arrays.
    """
    label = np.full(unit_ids.size, None, dtype=object)
    source = np.full(unit_ids.size, None, dtype=object)
    path = Path(labels_file)
    if not path.exists():
        return label, source
    lab = pq.read_table(path).to_pandas().drop_duplicates("unit_id").set_index("unit_id")
    common = np.isin(unit_ids, lab.index.to_numpy())
    if common.any():
        sel = lab.loc[unit_ids[common]]
        label[common] = sel["label"].to_numpy(dtype=object)
        source[common] = sel["source"].to_numpy(dtype=object) if "source" in sel else None
    return label, source


# --------------------------------------------------------------------------- a session's tables


def _session_columns(rec: SessionRecord) -> dict[str, Any]:
    return {"cohort": rec.cohort, "animal": rec.animal, "session": rec.session}


def _stage_columns(rec: SessionRecord) -> dict[str, Any]:
    return {"stage": rec.stage, "day": int(rec.day)}


def trial_responses_table(
    rec: SessionRecord,
    key: str,
    unit_ids: np.ndarray,
    windows: pd.DataFrame,
    trial_stats: Sequence[dict[str, np.ndarray]],
) -> pa.Table:
    """The ``trial_responses`` table: one row per unit and tone trial.

    Parameters
    ----------
    rec
        The session.
    key
        Its analysis key.
    unit_ids
        ``(n_units,)`` units, in the order of the batches.
    windows
        Trial windows (:func:`~cellsift.pipeline.analysis.responses.trial_windows`).
    trial_stats
        :func:`~cellsift.pipeline.analysis.responses.trial_statistics` of each batch of units.
    """
    schema = with_key(ANALYSIS_TABLES["trial_responses"], key)
    n_units, n_trials = unit_ids.size, len(windows)
    if not (n_units and n_trials):
        return schema.empty_table()
    stacked = {
        k: np.concatenate([p[k] for p in trial_stats], axis=0)
        for k in trial_stats[0]
        if k not in ("n_baseline_frames", "n_response_frames")
    }
    columns: dict[str, Any] = {
        **_session_columns(rec),
        **_stage_columns(rec),
        "unit_id": np.repeat(unit_ids, n_trials),
        "trial_type": np.tile(windows["trial_type"].to_numpy(dtype=object), n_units),
        "trial": np.tile(windows["trial"].to_numpy(np.int64), n_units),
        "event_index": np.tile(windows["event_index"].to_numpy(np.int64), n_units),
        "onset_frame": np.tile(windows["onset_frame"].to_numpy(np.int64), n_units),
        "onset_s": np.tile(windows["onset_s"].to_numpy(np.float64), n_units),
        "n_baseline_frames": np.tile(trial_stats[0]["n_baseline_frames"], n_units),
        "n_response_frames": np.tile(trial_stats[0]["n_response_frames"], n_units),
    }
    for k, v in stacked.items():
        columns[k] = v.ravel()
    return arrow_table(columns, schema, n_units * n_trials)


def events_table(
    rec: SessionRecord, key: str, aligned: pd.DataFrame, clock: ClockMap, events_file: str
) -> pa.Table:
    """The ``events`` table: the aligned events (:func:`.events.align_events`) and the clock map."""
    schema = with_key(ANALYSIS_TABLES["events"], key)
    columns = {
        **_session_columns(rec),
        **_stage_columns(rec),
        **{c: aligned[c].to_numpy() for c in aligned.columns if c in schema.names},
        "clock_method": clock.method,
        "clock_offset_s": clock.offset_s,
        "clock_scale": clock.scale,
        "events_file": events_file or None,
    }
    return arrow_table(columns, schema, len(aligned))


def behaviour_table(
    rec: SessionRecord,
    key: str,
    aligned: pd.DataFrame,
    freezing: FreezingIntervals | None,
    *,
    recording_end_s: float,
    source_file: str,
) -> pa.Table:
    """The ``behaviour`` table: freezing per trial type (empty without freezing data).

    Parameters
    ----------
    recording_end_s
        End of the recording on the imaging clock (s).
    source_file
        The file the freezing came from (a freezing trace, or the events file).
    """
    schema = with_key(ANALYSIS_TABLES["behaviour"], key)
    if freezing is None:
        return schema.empty_table()
    rows = behaviour_rows(aligned, freezing, recording_end_s=recording_end_s)
    columns = {
        **_session_columns(rec),
        **_stage_columns(rec),
        **{c: rows[c].to_numpy() for c in rows.columns},
        "source": freezing.source,
        "freezing_file": source_file,
    }
    return arrow_table(columns, schema, len(rows))


def good_cells(cells: pd.DataFrame) -> tuple[np.ndarray, str, np.ndarray, bool]:
    """The default analysis set (see the module notes).

    Returns
    -------
    tuple
        ``(is_good, good_rule, label_source, classified)``: ``(n_units,)`` bool, the rule
        applied, ``(n_units,)`` object (``"classifier"`` or ``None``) and whether a
        classifier has labelled the session.
    """
    label = cells["label"].to_numpy(dtype=object)
    classified = bool(cells["label"].notna().any() or cells["model_id"].notna().any())
    if classified:
        is_good = np.array([v == "good" for v in label], dtype=bool)
        label_source = np.full(len(label), None, dtype=object)
        label_source[pd.notna(label)] = "classifier"
        return is_good, "classifier", label_source, True
    overlap = cells["overlap_flag"].fillna(False).to_numpy(dtype=bool)
    return ~overlap, "not_overlap_flagged", np.full(len(cells), None, dtype=object), False


def cell_summary_table(
    rec: SessionRecord,
    key: str,
    unit_ids: np.ndarray,
    cells: pd.DataFrame,
    summary_cols: dict[str, np.ndarray],
    dff_cols: dict[str, np.ndarray],
    *,
    labels_file: str | Path,
) -> tuple[pa.Table, np.ndarray]:
    """The ``cell_summary`` table and ``is_good`` per unit.

    Parameters
    ----------
    rec, key
        The session and its analysis key.
    unit_ids
        ``(n_units,)`` units.
    cells
        :func:`read_cells`.
    summary_cols
        :func:`~cellsift.pipeline.analysis.selectivity.summarise_cells`.
    dff_cols
        ``dff_method``, ``dff_f_ref``, ``dff_noise_sd`` per unit.
    labels_file
        The session's ``labels`` table (joined as ``truth_label``).
    """
    n_units = unit_ids.size
    is_good, rule, label_source, classified = good_cells(cells)
    truth_label, truth_source = read_truth(labels_file, unit_ids)
    run_ids = cells["run_id"].dropna()
    columns = {
        **_session_columns(rec),
        **_stage_columns(rec),
        "unit_id": unit_ids,
        "is_good": is_good,
        "good_rule": rule,
        "curation_label": cells["label"].to_numpy(dtype=object)
        if classified
        else np.full(n_units, None, dtype=object),
        "label_source": label_source,
        "p_good": cells["p_good"].to_numpy(dtype=np.float64, na_value=np.nan),
        "model_id": cells["model_id"].to_numpy(dtype=object),
        "overlap_flag": cells["overlap_flag"].fillna(False).to_numpy(dtype=bool),
        "truth_label": truth_label,
        "truth_source": truth_source,
        "centroid_y": cells["centroid_y"].to_numpy(dtype=np.float64, na_value=np.nan),
        "centroid_x": cells["centroid_x"].to_numpy(dtype=np.float64, na_value=np.nan),
        **dff_cols,
        **summary_cols,
        "cells_run_id": str(run_ids.iloc[0]) if len(run_ids) else None,
        "analysis_version": ANALYSIS_VERSION,
    }
    return arrow_table(columns, with_key(ANALYSIS_TABLES["cell_summary"], key), n_units), is_good
