"""Freezing per trial and per trial type (table ``behaviour``).

Freezing comes either as a per-sample trace (``freezing.csv``: each sample counts for
the time until the next sample) or as ``freezing`` epochs in the events file. Both are
turned into freezing *intervals* on the imaging clock (:func:`freezing_intervals`), and
the freezing percentage of any period is the time covered by those intervals over the
period's length — by time, so dropped imaging frames do not bias it.

Periods of a session (``trial_type`` of the ``behaviour`` table):

* ``CS+`` / ``CS-``: each tone ``[onset, offset)``; ``freezing_pct`` is the mean over
  trials of each trial's percentage (``freezing_pct_sd`` their SD);
* ``pre_tone``: from the start of the recording to the first tone onset;
* ``iti``: after the first tone onset, outside every tone.

:func:`session_behaviour` brings one session's behaviour onto the imaging clock: its
events (read, clock-fitted and aligned to frames by :mod:`.events` and :mod:`.clock`)
and its freezing (``freezing.csv`` named by the catalog or beside the events file, else
``freezing`` epochs of the events file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellsift.pipeline.analysis.clock import AlignParams, ClockMap, fit_clock, read_ttl_frames
from cellsift.pipeline.analysis.events import (
    TONE_EVENTS,
    FreezingTrace,
    align_events,
    read_events,
    read_freezing,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FreezingIntervals",
    "SessionBehaviour",
    "freezing_intervals",
    "freezing_pct",
    "behaviour_rows",
    "event_freezing_pct",
    "session_behaviour",
]


@dataclass(frozen=True)
class FreezingIntervals:
    """Freezing intervals on the imaging clock.

    Attributes
    ----------
    start, stop
        Interval bounds (s since the first imaging frame), sorted, non-overlapping.
    source
        ``"trace"`` or ``"epochs"``.
    """

    start: np.ndarray
    stop: np.ndarray
    source: str


def _merge(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if start.size == 0:
        return start, stop
    order = np.argsort(start, kind="stable")
    start, stop = start[order], stop[order]
    out_s, out_e = [float(start[0])], [float(stop[0])]
    for a, b in zip(start[1:], stop[1:], strict=True):
        if a <= out_e[-1]:
            out_e[-1] = max(out_e[-1], float(b))
        else:
            out_s.append(float(a))
            out_e.append(float(b))
    return np.asarray(out_s), np.asarray(out_e)


def freezing_intervals(source: FreezingTrace | pd.DataFrame, *, clock: ClockMap) -> FreezingIntervals:
    """Freezing as intervals on the imaging clock.

    Parameters
    ----------
    source
        A :class:`~cellsift.pipeline.analysis.events.FreezingTrace` (behaviour clock) or the
        session's events (rows with ``event == "freezing"``, behaviour clock).
    clock
        Behaviour-to-imaging clock map.

    Returns
    -------
    FreezingIntervals
    """
    if isinstance(source, FreezingTrace):
        t = clock.to_frame_clock(source.time_s)
        if t.size == 0:
            return FreezingIntervals(np.zeros(0), np.zeros(0), "trace")
        dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
        ends = np.append(t[1:], t[-1] + dt)
        f = np.asarray(source.freezing, dtype=bool)
        start, stop = _merge(t[f], ends[f])
        return FreezingIntervals(start, stop, "trace")
    ep = source[source["event"] == "freezing"]
    start = clock.to_frame_clock(ep["onset_s"].to_numpy(dtype=np.float64))
    stop = clock.to_frame_clock(ep["offset_s"].to_numpy(dtype=np.float64))
    start, stop = _merge(start, stop)
    return FreezingIntervals(start, stop, "epochs")


def _covered(iv: FreezingIntervals, a: float, b: float) -> float:
    """Seconds of ``[a, b)`` covered by freezing intervals."""
    if b <= a or iv.start.size == 0:
        return 0.0
    return float(np.clip(np.minimum(iv.stop, b) - np.maximum(iv.start, a), 0.0, None).sum())


def freezing_pct(iv: FreezingIntervals, a: float, b: float) -> float:
    """Percentage of ``[a, b)`` (imaging clock, s) spent freezing; NaN for an empty period."""
    return 100.0 * _covered(iv, a, b) / (b - a) if b > a else float("nan")


def event_freezing_pct(events: pd.DataFrame, iv: FreezingIntervals | None) -> np.ndarray:
    """Freezing percentage during each event of an aligned events frame (NaN without freezing data)."""
    if iv is None:
        return np.full(len(events), np.nan)
    return np.array(
        [
            freezing_pct(iv, float(a), float(b))
            for a, b in zip(events["onset_s"], events["offset_s"], strict=True)
        ],
        dtype=np.float64,
    )


def behaviour_rows(
    events: pd.DataFrame,
    iv: FreezingIntervals,
    *,
    recording_end_s: float,
) -> pd.DataFrame:
    """Freezing per trial type of one session.

    Parameters
    ----------
    events
        Aligned events (imaging clock: ``event``, ``onset_s``, ``offset_s``).
    iv
        Freezing intervals.
    recording_end_s
        End of the recording on the imaging clock (s).

    Returns
    -------
    pandas.DataFrame
        Columns ``trial_type``, ``n_trials``, ``freezing_pct``, ``freezing_pct_sd``,
        ``freezing_s``, ``duration_s``; one row per tone type with trials, plus
        ``pre_tone`` and ``iti`` when they have any duration.
    """
    rows = []
    tones = events[events["event"].isin(TONE_EVENTS)].sort_values("onset_s")
    for tone in TONE_EVENTS:
        tr = tones[tones["event"] == tone]
        if tr.empty:
            continue
        a = np.clip(tr["onset_s"].to_numpy(dtype=np.float64), 0.0, recording_end_s)
        b = np.clip(tr["offset_s"].to_numpy(dtype=np.float64), 0.0, recording_end_s)
        pct = np.array([freezing_pct(iv, x, y) for x, y in zip(a, b, strict=True)])
        secs = float(sum(_covered(iv, x, y) for x, y in zip(a, b, strict=True)))
        rows.append(
            (
                tone,
                len(tr),
                float(np.nanmean(pct)),
                float(np.nanstd(pct, ddof=1)) if len(pct) > 1 else np.nan,
                secs,
                float((b - a).sum()),
            )
        )
    first = float(tones["onset_s"].min()) if len(tones) else recording_end_s
    first = min(max(first, 0.0), recording_end_s)
    if first > 0:
        rows.append(("pre_tone", 1, freezing_pct(iv, 0.0, first), np.nan, _covered(iv, 0.0, first), first))
    if len(tones) and recording_end_s > first:
        # ITI = [first tone onset, end) minus the tones
        total = recording_end_s - first
        frozen = _covered(iv, first, recording_end_s)
        t_s, t_e = _merge(
            np.clip(tones["onset_s"].to_numpy(dtype=np.float64), first, recording_end_s),
            np.clip(tones["offset_s"].to_numpy(dtype=np.float64), first, recording_end_s),
        )
        for x, y in zip(t_s, t_e, strict=True):
            total -= y - x
            frozen -= _covered(iv, x, y)
        if total > 0:
            rows.append(("iti", 1, 100.0 * frozen / total, np.nan, frozen, total))
    return pd.DataFrame(
        rows,
        columns=["trial_type", "n_trials", "freezing_pct", "freezing_pct_sd", "freezing_s", "duration_s"],
    )


@dataclass(frozen=True)
class SessionBehaviour:
    """One session's behaviour on the imaging clock.

    Attributes
    ----------
    aligned
        Events on frames (:func:`~cellsift.pipeline.analysis.events.align_events`) with
        ``event_index`` (row number) and ``freezing_pct`` (freezing during each event).
    clock
        The behaviour-to-imaging clock map.
    freezing
        Freezing intervals, or ``None`` without freezing data.
    """

    aligned: pd.DataFrame
    clock: ClockMap
    freezing: FreezingIntervals | None


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


def session_behaviour(
    events_file: str,
    *,
    time_s: np.ndarray,
    video: str,
    event_offset_s: float | None,
    freezing_file: str,
    params: AlignParams,
) -> SessionBehaviour:
    """Read, clock-fit and align one session's events and freezing.

    Parameters
    ----------
    events_file
        The events CSV (``""``: no events).
    time_s
        Frame times of the recording (s).
    video
        The Miniscope folder, whose ``timeStamps.csv`` may carry a TTL column (``""``: none).
    event_offset_s
        The session's declared clock offset (s), or ``None``.
    freezing_file
        A freezing trace; it wins over ``freezing`` epochs of the events file (``""``: none).
    params
        Alignment parameters.

    Returns
    -------
    SessionBehaviour

    Raises
    ------
    CellsiftError
        Bad events or freezing files, sync pulses that do not fit, events outside the
        recording.
    """
    events = read_events(events_file) if events_file else _empty_events()
    ttl = read_ttl_frames(video) if video else None
    path = events_file or None
    clock = fit_clock(
        events, time_s=time_s, ttl_frames=ttl, event_offset_s=event_offset_s, params=params, path=path
    )
    aligned = align_events(events, time_s=time_s, clock=clock, params=params, path=path)
    aligned["event_index"] = np.arange(len(aligned), dtype=np.int64)
    iv: FreezingIntervals | None = None
    if freezing_file:
        iv = freezing_intervals(read_freezing(freezing_file), clock=clock)
    elif (events["event"] == "freezing").any():
        iv = freezing_intervals(events, clock=clock)
    aligned["freezing_pct"] = event_freezing_pct(aligned, iv)
    return SessionBehaviour(aligned=aligned, clock=clock, freezing=iv)
