"""Behaviour events: read, validate and place on imaging frames.

Inputs
------
*Events CSV* (one per session; the manifest's ``events`` column)::

    event,onset_s,offset_s[,frame]
    CS+,24.652,29.152
    shock,28.152,29.152
    freezing,30.10,33.45
    sync,0.500,0.500,10

``event`` is one of :data:`KNOWN_EVENTS` (case-insensitive; a few aliases are accepted,
see :data:`EVENT_ALIASES`): tones ``CS+`` / ``CS-``, ``shock``, ``freezing`` epochs and
``sync`` pulses. Times are seconds on the *behaviour clock* (the clock of the system
that logged the events). The optional ``frame`` column gives, for ``sync`` rows, the
imaging frame at which the Miniscope DAQ registered the pulse.

*Freezing trace* (optional, ``freezing.csv``): ``frame,time_s,freezing`` or
``time_s,freezing`` — one row per behaviour-video frame, ``time_s`` on the behaviour
clock, ``freezing`` 0/1 (or true/false).

The map from the behaviour clock to the imaging clock (sync pulses, TTL edges, declared
offsets) is found by :func:`cellsift.pipeline.analysis.clock.fit_clock`.

Frame alignment (:func:`align_events`)
--------------------------------------
An event spans frames ``[onset_frame, offset_frame)``: ``onset_frame`` is the first
frame whose timestamp is at or after the onset, ``offset_frame`` the first frame at or
after the offset (an exclusive end). ``onset_lag_s`` (timestamp of ``onset_frame``
minus the onset) is at most one frame interval, more only when the onset falls into a
gap of dropped frames; ``n_dropped`` counts the frames missing inside the event
(from timestamp gaps longer than 1.5 median intervals).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.pipeline.analysis.clock import AlignParams, ClockMap, frame_interval_s
from cellsift.schemas import InputFormatError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "KNOWN_EVENTS",
    "TONE_EVENTS",
    "EVENT_ALIASES",
    "FreezingTrace",
    "normalise_event_name",
    "read_events",
    "read_freezing",
    "align_events",
    "freezing_per_frame",
]

_DEFAULT_ALIGN: Final = AlignParams()

#: Event types cellsift understands.
KNOWN_EVENTS: Final = ("CS+", "CS-", "shock", "freezing", "sync")
#: Tone (conditioned stimulus) types: the trial types of ``trial_responses``.
TONE_EVENTS: Final = ("CS+", "CS-")
#: Accepted spellings (lower-case, spaces/underscores removed) of each event type.
EVENT_ALIASES: Final[Mapping[str, str]] = {
    "cs+": "CS+",
    "csplus": "CS+",
    "cs-": "CS-",
    "cs\u2212": "CS-",  # unicode minus
    "csminus": "CS-",
    "shock": "shock",
    "footshock": "shock",
    "us": "shock",
    "freezing": "freezing",
    "freeze": "freezing",
    "sync": "sync",
    "ttl": "sync",
}


@dataclass(frozen=True)
class FreezingTrace:
    """A per-sample freezing trace on the behaviour clock.

    Attributes
    ----------
    time_s
        Sample times (s, behaviour clock), increasing.
    freezing
        Whether the animal froze at each sample.
    """

    time_s: np.ndarray
    freezing: np.ndarray


# --------------------------------------------------------------------------- reading


def normalise_event_name(name: str) -> str | None:
    """Return the canonical event type of ``name`` (e.g. ``"cs_plus"`` -> ``"CS+"``), or ``None``."""
    key = "".join(str(name).strip().lower().replace("_", "").split())
    return EVENT_ALIASES.get(key)


def _read_table(path: Path, *, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise SessionNotFoundError(
            f"the {what} file does not exist",
            path=path,
            fix="fix the path in the manifest or remove it",
        )
    try:
        frame = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(
            f"cannot read the {what} ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})",
            path=path,
            fix="write a comma-separated file with a header row",
        ) from None
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    return frame


def _numbers(values: pd.Series, *, path: Path, field: str, rows_offset: int = 2) -> np.ndarray:
    """Parse a column as finite floats, naming the first bad row (1-based file line)."""
    out = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise InputFormatError(
            f"line {i + rows_offset}: '{values.iloc[i]}' is not a finite number",
            path=path,
            field=field,
            fix="give times in seconds as plain numbers",
        )
    return out


def _offsets(frame: pd.DataFrame, onset: np.ndarray, path: Path) -> np.ndarray:
    """The ``offset_s`` column (blank or missing: a point event, offset = onset)."""
    if "offset_s" not in frame.columns:
        return onset.copy()
    raw_off = frame["offset_s"].str.strip()
    blank = (raw_off == "").to_numpy()
    parsed = pd.to_numeric(raw_off.mask(blank, "nan"), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~blank & ~np.isfinite(parsed))
    if bad.size:
        i = int(bad[0])
        raise InputFormatError(
            f"line {i + 2}: '{frame['offset_s'].iloc[i]}' is not a finite number",
            path=path,
            field="offset_s",
            fix="give times in seconds as plain numbers (leave empty for point events)",
        )
    return np.where(blank, onset, parsed)


def _check_durations(canon: np.ndarray, onset: np.ndarray, offset: np.ndarray, path: Path) -> None:
    """No event ends before it starts; tones and freezing epochs last longer than zero."""
    short = np.flatnonzero(offset < onset)
    if short.size:
        i = int(short[0])
        raise InputFormatError(
            f"line {i + 2}: offset {offset[i]:g} s is before onset {onset[i]:g} s",
            path=path,
            field="offset_s",
            fix="swap or correct the times",
        )
    for tone in (*TONE_EVENTS, "freezing"):
        zero = np.flatnonzero((canon == tone) & (offset <= onset))
        if zero.size:
            i = int(zero[0])
            raise InputFormatError(
                f"line {i + 2}: {tone} event has no duration (onset = offset = {onset[i]:g} s)",
                path=path,
                field="offset_s",
                fix=f"give every {tone} event its offset time",
            )


def _sync_frame_column(frame: pd.DataFrame, path: Path) -> pd.api.extensions.ExtensionArray:
    """The optional ``frame`` column (Int64, null where not given)."""
    sync_frame = pd.array([pd.NA] * len(frame), dtype="Int64")
    if "frame" in frame.columns:
        raw = frame["frame"].str.strip()
        given = (raw != "").to_numpy()
        values = pd.to_numeric(raw[given], errors="coerce").to_numpy(dtype=np.float64)
        if given.any() and (~np.isfinite(values) | (values < 0) | (values != np.round(values))).any():
            raise InputFormatError(
                "frame numbers must be whole numbers >= 0",
                path=path,
                field="frame",
                fix="give the imaging frame of each sync pulse, or leave the cell empty",
            )
        sync_frame[given] = values.astype(np.int64)
    return sync_frame


def read_events(path: str | Path) -> pd.DataFrame:
    """Read and validate an events CSV.

    Parameters
    ----------
    path
        The events file (``event,onset_s,offset_s``; optional ``frame`` for sync rows;
        ``time_s`` is accepted for ``onset_s``; a missing ``offset_s`` means point
        events, offset = onset).

    Returns
    -------
    pandas.DataFrame
        Columns ``event`` (canonical type), ``onset_s``, ``offset_s`` (behaviour clock,
        s), ``frame`` (Int64, null unless given), ``line`` (line number in the file),
        sorted by onset (stable).

    Raises
    ------
    SessionNotFoundError
        If the file does not exist.
    InputFormatError
        Missing columns, unknown event types, non-numeric or negative-length events.
    """
    path = Path(path)
    frame = _read_table(path, what="events")
    if "onset_s" not in frame.columns and "time_s" in frame.columns:
        frame = frame.rename(columns={"time_s": "onset_s"})
    missing = [c for c in ("event", "onset_s") if c not in frame.columns]
    if missing:
        raise InputFormatError(
            f"missing column(s) {', '.join(missing)} (header: {', '.join(frame.columns) or 'empty'})",
            path=path,
            field=missing[0],
            fix="write the header 'event,onset_s,offset_s'",
        )
    names = frame["event"].astype(str)
    canonical = [normalise_event_name(n) for n in names]
    unknown = sorted({n.strip() for n, c in zip(names, canonical, strict=True) if c is None})
    if unknown:
        first = next(i for i, c in enumerate(canonical) if c is None)
        raise InputFormatError(
            f"line {first + 2}: unknown event type(s) {', '.join(repr(u) for u in unknown)}",
            path=path,
            field="event",
            fix=f"use one of {', '.join(KNOWN_EVENTS)} (or drop those rows)",
        )
    onset = _numbers(frame["onset_s"], path=path, field="onset_s")
    offset = _offsets(frame, onset, path)
    canon = np.asarray(canonical, dtype=object)
    _check_durations(canon, onset, offset, path)
    out = pd.DataFrame(
        {
            "event": canon.astype(str),
            "onset_s": onset,
            "offset_s": offset,
            "frame": _sync_frame_column(frame, path),
            "line": np.arange(2, len(frame) + 2, dtype=np.int64),
        }
    )
    out = out.sort_values("onset_s", kind="stable").reset_index(drop=True)
    logger.debug("read %d events from %s", len(out), path)
    return out


def read_freezing(path: str | Path) -> FreezingTrace:
    """Read a per-sample freezing trace (``frame,time_s,freezing`` or ``time_s,freezing``).

    Raises
    ------
    SessionNotFoundError
        If the file does not exist.
    InputFormatError
        Missing columns, non-numeric times, times not increasing, values not 0/1.
    """
    path = Path(path)
    frame = _read_table(path, what="freezing")
    for column in ("time_s", "freezing"):
        if column not in frame.columns:
            raise InputFormatError(
                f"missing column '{column}' (header: {', '.join(frame.columns) or 'empty'})",
                path=path,
                field=column,
                fix="write the header 'frame,time_s,freezing' (freezing 0/1 per behaviour frame)",
            )
    t = _numbers(frame["time_s"], path=path, field="time_s")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise InputFormatError(
            f"line {i + 2}: time_s does not increase", path=path, field="time_s", fix="sort the rows by time"
        )
    raw = frame["freezing"].str.strip().str.lower()
    mapping = {"1": True, "0": False, "true": True, "false": False, "1.0": True, "0.0": False}
    values = raw.map(mapping)
    if values.isna().any():
        i = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputFormatError(
            f"line {i + 2}: freezing value '{frame['freezing'].iloc[i]}' is not 0/1",
            path=path,
            field="freezing",
            fix="write 1 for freezing and 0 otherwise",
        )
    return FreezingTrace(time_s=t, freezing=values.to_numpy(dtype=bool))


# --------------------------------------------------------------------------- alignment


def align_events(
    events: pd.DataFrame,
    *,
    time_s: np.ndarray,
    clock: ClockMap,
    params: AlignParams = _DEFAULT_ALIGN,
    path: str | Path | None = None,
) -> pd.DataFrame:
    """Place events on the frame clock and on frames.

    Parameters
    ----------
    events
        Output of :func:`read_events` (sync rows are dropped here).
    time_s
        Frame times (s since the first frame), increasing.
    clock
        Output of :func:`fit_clock`.
    params
        ``tolerance_frames`` sets how far outside the recording an event may reach.
    path
        The events file, for error messages.

    Returns
    -------
    pandas.DataFrame
        One row per event with ``event``, ``trial`` (1-based per tone type, else 0),
        ``onset_s_source``, ``offset_s_source`` (behaviour clock), ``onset_s``,
        ``offset_s`` (frame clock), ``onset_frame``, ``offset_frame`` (exclusive),
        ``onset_frame_time_s``, ``onset_lag_s``, ``n_frames``, ``n_dropped``.

    Raises
    ------
    InputFormatError
        If an event starts before the first frame or ends after the last frame
        (beyond the tolerance), naming its line in the events file.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    dt = frame_interval_s(time_s)
    ev = events[events["event"] != "sync"].reset_index(drop=True)
    on = clock.to_frame_clock(ev["onset_s"].to_numpy(dtype=np.float64))
    off = clock.to_frame_clock(ev["offset_s"].to_numpy(dtype=np.float64))
    start, end = float(time_s[0]), float(time_s[-1] + dt)
    tol = params.tolerance_frames * dt
    outside = np.flatnonzero((on < start - tol) | (off > end + tol))
    if outside.size:
        i = int(outside[0])
        raise InputFormatError(
            f"line {int(ev['line'].iloc[i])}: {ev['event'].iloc[i]} event at {ev['onset_s'].iloc[i]:g}-"
            f"{ev['offset_s'].iloc[i]:g} s (behaviour clock) falls at {on[i]:.3f}-{off[i]:.3f} s on the "
            f"imaging clock, outside the recording ({start:.3f}-{end:.3f} s; clock alignment: {clock.method}, "
            f"behaviour time of first frame {clock.offset_s:.3f} s); {outside.size} event(s) outside",
            path=path,
            field="onset_s",
            fix="check event_offset_s / sync pulses, or remove events logged after the imaging stopped",
        )
    on_c = np.clip(on, start, end)
    off_c = np.clip(off, start, end)
    onset_frame = np.searchsorted(time_s, on_c - 1e-9, side="left")
    offset_frame = np.searchsorted(time_s, off_c - 1e-9, side="left")
    offset_frame = np.maximum(offset_frame, onset_frame)
    # point events (shock markers etc.) and very short events get at least one frame
    onset_frame = np.minimum(onset_frame, time_s.size - 1)
    offset_frame = np.where(
        offset_frame == onset_frame, np.minimum(onset_frame + 1, time_s.size), offset_frame
    )
    # frames the camera should have taken during the event minus those it recorded
    n_dropped = np.rint((off_c - on_c) / dt).astype(np.int64) - (offset_frame - onset_frame)
    trial = np.zeros(len(ev), dtype=np.int64)
    for tone in TONE_EVENTS:
        m = (ev["event"] == tone).to_numpy()
        trial[m] = np.arange(1, int(m.sum()) + 1)
    out = pd.DataFrame(
        {
            "event": ev["event"].to_numpy(dtype=object),
            "trial": trial,
            "onset_s_source": ev["onset_s"].to_numpy(dtype=np.float64),
            "offset_s_source": ev["offset_s"].to_numpy(dtype=np.float64),
            "onset_s": on,
            "offset_s": off,
            "onset_frame": onset_frame.astype(np.int64),
            "offset_frame": offset_frame.astype(np.int64),
            "onset_frame_time_s": time_s[onset_frame],
            "onset_lag_s": time_s[onset_frame] - on,
            "n_frames": (offset_frame - onset_frame).astype(np.int64),
            "n_dropped": np.maximum(n_dropped, 0).astype(np.int64),
        }
    )
    return out


def freezing_per_frame(
    freezing: FreezingTrace | pd.DataFrame,
    *,
    time_s: np.ndarray,
    clock: ClockMap,
) -> np.ndarray:
    """Freezing at each imaging frame, from a trace or from ``freezing`` epochs.

    Parameters
    ----------
    freezing
        A :class:`FreezingTrace` (the behaviour sample at or before each frame is
        used, zero-order hold) or an events frame whose ``freezing`` rows are epochs.
    time_s
        Frame times (s since the first frame).
    clock
        Behaviour-to-frame clock map.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` bool.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    if isinstance(freezing, FreezingTrace):
        t = clock.to_frame_clock(freezing.time_s)
        idx = np.searchsorted(t, time_s, side="right") - 1
        valid = idx >= 0
        out = np.zeros(time_s.size, dtype=bool)
        out[valid] = freezing.freezing[idx[valid]]
        return out
    ep = freezing[freezing["event"] == "freezing"]
    out = np.zeros(time_s.size, dtype=bool)
    onsets, offsets = (
        clock.to_frame_clock(ep["onset_s"].to_numpy()),
        clock.to_frame_clock(ep["offset_s"].to_numpy()),
    )
    for a, b in zip(onsets, offsets, strict=True):
        out[(time_s >= a) & (time_s < b)] = True
    return out
