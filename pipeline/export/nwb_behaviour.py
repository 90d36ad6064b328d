"""The behaviour and cross-day parts of an exported NWB file.

From the lake's analysis tables of one session (``cellsift analyze``):

* ``events``: the tones (CS+ / CS-) become the file's ``trials`` table; shocks an
  ``EventsTable`` named ``shocks`` (a shock may be a point event, which a time interval
  cannot hold: its ``duration`` is then NaN); ``freezing`` epochs of an events file the
  ``TimeIntervals`` ``freezing_epochs``. All times are on the imaging clock.
* ``behaviour``: the freezing summary per trial type as a ``DynamicTable``
  ``freezing_summary`` in the ``behavior`` module, and the per-sample freezing trace the
  table names (``freezing_file``) as ``BehavioralTimeSeries/freezing``, its times mapped
  to the imaging clock with the session's clock fit (``events.clock_offset_s``/``clock_scale``).
* ``cell_registry``: the session's rows as a ``DynamicTable`` ``cell_registry`` in the
  ``ophys`` module, with a ``roi`` column referencing the ``PlaneSegmentation``; the same
  ``cell_key`` in two files is the same neuron.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.export.nwb_ophys import FrameClock
from cellsift.schemas import CellsiftError

logger = logging.getLogger(__name__)

__all__ = ["add_events", "add_freezing", "add_cell_registry"]

_EVENT_COLUMNS: Final[dict[str, str]] = {
    "trial": "1-based trial number within the trial type (0 for other events)",
    "onset_frame": "first imaging frame at or after the onset",
    "offset_frame": "first imaging frame at or after the offset (exclusive end)",
    "n_frames": "imaging frames recorded within the event",
    "n_dropped": "imaging frames missing within the event (timestamp gaps)",
    "freezing_pct": "percent of the event spent freezing (NaN without freezing data)",
    "onset_s_source": "onset as logged, on the behaviour clock (s)",
    "offset_s_source": "offset as logged, on the behaviour clock (s)",
    "onset_lag_s": "time of onset_frame minus the onset (s)",
}

_SUMMARY_COLUMNS: Final[dict[str, str]] = {
    "trial_type": "CS+, CS-, pre_tone (recording start to first tone) or iti (between tones)",
    "n_trials": "tones of that type (1 for pre_tone and iti)",
    "freezing_pct": "mean over trials of percent time freezing",
    "freezing_pct_sd": "SD over trials of percent time freezing (NaN for fewer than 2 trials)",
    "freezing_s": "total time frozen in those periods (s)",
    "duration_s": "total time of those periods (s)",
    "source": "freezing from a per-sample 'trace' or from 'epochs' of the events file",
}

_REGISTRY_COLUMNS: Final[dict[str, str]] = {
    "cell_key": "the same neuron across the animal's sessions, e.g. 'm01/c0007'",
    "first_session": "session where this cell_key first appeared",
    "reference_session": "the animal's session all others are aligned to",
    "shift_y_px": "field-of-view shift of this session vs the reference, rows (px)",
    "shift_x_px": "field-of-view shift of this session vs the reference, columns (px)",
    "match_distance_px": "centroid distance to the matched cell (px; NaN if new)",
    "footprint_similarity": "cosine similarity of aligned footprints (NaN if new)",
}


def _values(frame: pd.DataFrame, name: str) -> Any:
    """A column for HDF5: floats with NaN, whole numbers as int64, text with ''."""
    values = frame[name]
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        if values.notna().all() and pd.api.types.is_integer_dtype(values.dtype):
            return values.to_numpy().astype(np.int64)
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def _table(
    cls: Any, name: str, description: str, frame: pd.DataFrame, docs: dict[str, str], **extra: Any
) -> Any:
    """A ``DynamicTable`` (or subclass) from the columns ``docs`` names that ``frame`` has."""
    from hdmf.common import VectorData

    columns = [
        VectorData(name=col, description=doc, data=_values(frame, col))
        for col, doc in docs.items()
        if col in frame
    ]
    return cls(name=name, description=description, columns=columns, **extra)


def _clock_text(events: pd.DataFrame) -> str:
    first = events.iloc[0]
    return (
        f"Times are on the imaging clock (s from the first frame); behaviour-clock times were mapped with "
        f"method '{first.get('clock_method', 'none')}', offset {float(first.get('clock_offset_s', 0.0)):g} s, "
        f"scale {float(first.get('clock_scale', 1.0)):g}. Events file: {first.get('events_file', '')}."
    )


def add_events(nwbfile: Any, events: pd.DataFrame) -> None:
    """Add the session's tones (``trials``), shocks (``events/shocks``) and freezing epochs."""
    from pynwb.epoch import TimeIntervals

    from cellsift.pipeline.analysis import TONE_EVENTS

    if events.empty:
        return
    events = events.sort_values(["onset_s", "event_index"], kind="stable").reset_index(drop=True)
    clock = _clock_text(events)
    tones = events[events["event"].isin(TONE_EVENTS)]
    if len(tones):
        frame = tones.assign(
            start_time=tones["onset_s"], stop_time=tones["offset_s"], trial_type=tones["event"]
        )
        docs = {
            "start_time": "tone onset (s)",
            "stop_time": "tone offset (s)",
            "trial_type": "tone: CS+ (paired with shock) or CS-",
            **_EVENT_COLUMNS,
        }
        nwbfile.trials = _table(
            TimeIntervals, "trials", "Conditioned-stimulus tones (CS+ and CS-). " + clock, frame, docs
        )
    shocks = events[events["event"] == "shock"]
    if len(shocks):
        nwbfile.add_events_table(_shocks(shocks, "Footshocks. " + clock))
    epochs = events[events["event"] == "freezing"]
    if len(epochs):
        frame = epochs.assign(start_time=epochs["onset_s"], stop_time=epochs["offset_s"])
        docs = {"start_time": "freezing onset (s)", "stop_time": "freezing offset (s)"}
        docs.update({k: v for k, v in _EVENT_COLUMNS.items() if k not in ("trial", "freezing_pct")})
        nwbfile.add_time_intervals(
            _table(
                TimeIntervals,
                "freezing_epochs",
                "Freezing epochs from the events file. " + clock,
                frame,
                docs,
            )
        )


def _shocks(shocks: pd.DataFrame, description: str) -> Any:
    """Shocks as an ``EventsTable`` (``duration`` NaN for point events)."""
    from pynwb.event import EventsTable

    table = EventsTable(name="shocks", description=description)
    extra = [c for c in _EVENT_COLUMNS if c in shocks and c != "trial"]
    columns = {c: _values(shocks, c) for c in extra}
    for col in extra:
        table.add_column(name=col, description=_EVENT_COLUMNS[col])
    for i, (onset, offset) in enumerate(zip(shocks["onset_s"], shocks["offset_s"], strict=True)):
        duration = float(offset) - float(onset)
        table.add_event(
            timestamp=float(onset),
            duration=duration if duration > 0 else float("nan"),
            **{c: columns[c][i] for c in extra},
        )
    return table


def _behavior_module(nwbfile: Any) -> Any:
    if "behavior" in nwbfile.processing:
        return nwbfile.processing["behavior"]
    return nwbfile.create_processing_module(
        name="behavior", description="Freezing behaviour (cellsift analyze)."
    )


def _freezing_trace(
    behaviour: pd.DataFrame, events: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, str] | str:
    """Times on the imaging clock, 0/1 values and file of the freezing trace, or why there is none."""
    from cellsift.pipeline.analysis import ClockMap, read_freezing

    traced = behaviour[behaviour["source"] == "trace"]
    path = str(traced["freezing_file"].iloc[0]) if len(traced) else ""
    if not path:
        return ""
    if events.empty:
        return "freezing trace not exported: no events table rows to place it on the imaging clock"
    if not Path(path).is_file():
        return f"freezing trace not exported: {path} is gone"
    try:
        trace = read_freezing(path)
    except CellsiftError as exc:
        return f"freezing trace not exported: {exc.one_line()}"
    first = events.iloc[0]
    scale = float(first["clock_scale"]) if pd.notna(first["clock_scale"]) else 1.0
    offset = float(first["clock_offset_s"]) if pd.notna(first["clock_offset_s"]) else 0.0
    times = ClockMap(intercept_s=-offset * scale, scale=scale).to_frame_clock(trace.time_s)
    return times, trace.freezing.astype(np.uint8), path


def add_freezing(nwbfile: Any, behaviour: pd.DataFrame, events: pd.DataFrame) -> list[str]:
    """Add the freezing summary and trace to the ``behavior`` module; return warnings."""
    from hdmf.common import DynamicTable
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries

    if behaviour.empty:
        return []
    module = _behavior_module(nwbfile)
    summary = behaviour.reset_index(drop=True)
    module.add(
        _table(
            DynamicTable,
            "freezing_summary",
            f"Freezing per trial type (cellsift behaviour table); freezing file: {summary['freezing_file'].iloc[0]}.",
            summary,
            _SUMMARY_COLUMNS,
        )
    )
    found = _freezing_trace(behaviour, events)
    if isinstance(found, str):
        return [found] if found else []
    times, values, path = found
    series = TimeSeries(
        name="freezing",
        data=values,
        unit="n.a.",
        continuity="step",
        description=f"1 while the animal froze, 0 otherwise (per behaviour sample of {path}); times on the "
        "imaging clock.",
        **FrameClock(times, 0.0).kwargs(),
    )
    module.add(BehavioralTimeSeries(name="BehavioralTimeSeries", time_series=[series]))
    return []


def add_cell_registry(module: Any, ps: Any, registry: pd.DataFrame, unit_ids: np.ndarray) -> None:
    """Add the session's ``cell_registry`` rows (those of units in ``ps``) as a ``DynamicTable``."""
    from hdmf.common import DynamicTable

    if registry.empty:
        return
    position = {int(u): i for i, u in enumerate(unit_ids)}
    rows = registry[registry["unit_id"].astype(np.int64).isin(list(position))].drop_duplicates("unit_id")
    if rows.empty:
        return
    rows = rows.reset_index(drop=True)
    table = _table(
        DynamicTable,
        "cell_registry",
        "Cross-session cell registry (cellsift analyze): the same cell_key in another session's file is the "
        "same neuron.",
        rows,
        _REGISTRY_COLUMNS,
        id=rows["unit_id"].to_numpy(dtype=np.int64),
    )
    table.add_column(
        name="roi",
        description="the ROI (row of PlaneSegmentation) of this unit",
        data=[position[int(u)] for u in rows["unit_id"]],
        table=ps,
    )
    module.add(table)
