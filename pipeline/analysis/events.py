"""Behaviour events: read, validate and align to imaging frames.

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

*Miniscope timestamps*: the session dataset's ``time_s`` (from the Miniscope
``timeStamps.csv``) gives the real time of every recorded frame, so dropped frames
(gaps in the timestamps) and a camera whose true rate differs from its nominal rate
are handled by construction: events are placed by time, never by ``time * fps``.
If the Miniscope folder's ``timeStamps.csv`` carries a TTL column (a column whose
name contains ``ttl``, ``trigger`` or ``sync``), its rising edges are the frames at
which sync pulses arrived.

Clock alignment (:func:`fit_clock`)
-----------------------------------
Event times are mapped to the frame clock (seconds since the first imaging frame) by
``t_frame = intercept + scale * t_behaviour``:

1. **Sync pulses** (``sync`` rows paired in order with the TTL rising edges of
   ``timeStamps.csv`` or with their own ``frame`` column): two or more pulses give a
   least-squares fit of intercept *and* scale, which corrects both a clock offset
   and a clock drift between the two systems; one pulse gives the offset only
   (scale 1). A residual above :attr:`AlignParams.max_sync_residual_frames` frames
   is an error (pulses paired wrongly).
2. **A declared offset** ``event_offset_s`` for the session (manifest column): the
   time on the behaviour clock at which the first imaging frame was taken;
   ``t_frame = t_behaviour - event_offset_s``.
3. **A TTL column without sync rows**: the first rising edge marks behaviour time 0.
4. The default offset ``AlignParams.event_offset_s`` (0: both clocks start with the
   first frame).

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

import csv
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.schemas.errors import InputFormatError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "KNOWN_EVENTS",
    "TONE_EVENTS",
    "EVENT_ALIASES",
    "AlignParams",
    "ClockMap",
    "FreezingTrace",
    "normalise_event_name",
    "read_events",
    "read_freezing",
    "read_ttl_frames",
    "frame_interval_s",
    "dropped_frames",
    "fit_clock",
    "align_events",
    "freezing_per_frame",
]

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

_TTL_WORDS: Final = ("ttl", "trigger", "sync")


@dataclass(frozen=True)
class AlignParams:
    """Parameters of event alignment.

    Attributes
    ----------
    event_offset_s
        Time (s) on the behaviour clock at which the first imaging frame was taken;
        used when there are no sync pulses. A per-session value from the manifest
        takes precedence.
    tolerance_frames
        How far (in frame intervals) an event may reach beyond the recording before it
        is an error (timestamp jitter and rounding of event times).
    max_sync_residual_frames
        Largest allowed residual (in frame intervals) of the sync-pulse clock fit.
    max_clock_drift
        Largest allowed relative clock-rate difference ``|scale - 1|`` of the fit.
    """

    event_offset_s: float = 0.0
    tolerance_frames: float = 1.0
    max_sync_residual_frames: float = 2.0
    max_clock_drift: float = 0.01

    def __post_init__(self) -> None:
        for name in ("event_offset_s", "tolerance_frames", "max_sync_residual_frames", "max_clock_drift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputFormatError(f"must be a finite number, got {value!r}", field=name)
        for name in ("tolerance_frames", "max_sync_residual_frames", "max_clock_drift"):
            if getattr(self, name) < 0:
                raise InputFormatError(f"must be >= 0, got {getattr(self, name)!r}", field=name)


@dataclass(frozen=True)
class ClockMap:
    """Map from the behaviour clock to the frame clock: ``t_frame = intercept + scale * t_behaviour``.

    Attributes
    ----------
    intercept_s
        Frame-clock time (s) of behaviour time 0.
    scale
        Frame-clock seconds per behaviour-clock second (1 when the clocks agree).
    method
        ``"sync"`` (fit to sync pulses), ``"ttl_start"`` (first TTL edge is behaviour
        time 0), ``"offset"`` (declared offset) or ``"none"`` (no offset, no sync).
    n_sync
        Number of sync pulses used.
    residual_s
        RMS residual of the sync fit (s); 0 otherwise.
    """

    intercept_s: float = 0.0
    scale: float = 1.0
    method: str = "none"
    n_sync: int = 0
    residual_s: float = 0.0

    def to_frame_clock(self, t: np.ndarray | float) -> np.ndarray:
        """Behaviour-clock times (s) to frame-clock times (s)."""
        return self.intercept_s + self.scale * np.asarray(t, dtype=np.float64)

    @property
    def offset_s(self) -> float:
        """Behaviour-clock time (s) of the first imaging frame (``-intercept / scale``)."""
        return -self.intercept_s / self.scale


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
    unknown = sorted({n.strip() for n, c in zip(names, canonical) if c is None})
    if unknown:
        first = next(i for i, c in enumerate(canonical) if c is None)
        raise InputFormatError(
            f"line {first + 2}: unknown event type(s) {', '.join(repr(u) for u in unknown)}",
            path=path,
            field="event",
            fix=f"use one of {', '.join(KNOWN_EVENTS)} (or drop those rows)",
        )
    onset = _numbers(frame["onset_s"], path=path, field="onset_s")
    if "offset_s" in frame.columns:
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
        offset = np.where(blank, onset, parsed)
    else:
        offset = onset.copy()
    short = np.flatnonzero(offset < onset)
    if short.size:
        i = int(short[0])
        raise InputFormatError(
            f"line {i + 2}: offset {offset[i]:g} s is before onset {onset[i]:g} s",
            path=path,
            field="offset_s",
            fix="swap or correct the times",
        )
    canon = np.asarray(canonical, dtype=object)
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
    out = pd.DataFrame(
        {
            "event": canon.astype(str),
            "onset_s": onset,
            "offset_s": offset,
            "frame": sync_frame,
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


def read_ttl_frames(video_folder: str | Path) -> np.ndarray | None:
    """Frames at which a TTL input went high, from the Miniscope ``timeStamps.csv``.

    Parameters
    ----------
    video_folder
        The Miniscope folder (or a file inside it).

    Returns
    -------
    numpy.ndarray or None
        Rising-edge frame indices (0-based row order of the file, int64), or ``None``
        when the file or a TTL column (name containing ``ttl``, ``trigger`` or ``sync``)
        is missing.
    """
    folder = Path(video_folder)
    if folder.is_file():
        folder = folder.parent
    path = folder / "timeStamps.csv"
    if not path.is_file():
        return None
    column = "TTL"
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            col = next((i for i, h in enumerate(header) if any(w in h for w in _TTL_WORDS)), None)
            if col is None:
                return None
            column = header[col]
            values = [float(row[col]) for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError) as exc:
        raise InputFormatError(
            f"cannot read the TTL column ({type(exc).__name__}: {exc})",
            path=path,
            field=column,
            fix="write 0/1 TTL levels per frame, or remove the column",
        ) from None
    level = np.asarray(values, dtype=np.float64) > 0.5
    if level.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.flatnonzero(level[1:] & ~level[:-1]) + 1
    if level[0]:
        edges = np.concatenate([[0], edges])
    return edges.astype(np.int64)


# --------------------------------------------------------------------------- timing


def frame_interval_s(time_s: np.ndarray) -> float:
    """Median interval between frames (s), the typical frame period of a recording."""
    time_s = np.asarray(time_s, dtype=np.float64)
    if time_s.size < 2:
        raise InputFormatError("a recording needs at least two frame times", field="time_s")
    return float(np.median(np.diff(time_s)))


def dropped_frames(time_s: np.ndarray, *, gap_factor: float = 1.5) -> np.ndarray:
    """Number of frames missing after each frame, from gaps in the timestamps.

    Parameters
    ----------
    time_s
        Frame times (s), increasing.
    gap_factor
        A gap longer than ``gap_factor`` median intervals counts as dropped frames.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` int64: frames dropped between frame ``i`` and ``i + 1`` (0 for
        the last frame).
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    out = np.zeros(time_s.size, dtype=np.int64)
    if time_s.size < 2:
        return out
    dt = frame_interval_s(time_s)
    gaps = np.diff(time_s) / dt
    missing = np.where(gaps > gap_factor, np.rint(gaps) - 1, 0).astype(np.int64)
    out[:-1] = np.maximum(missing, 0)
    return out


def fit_clock(
    events: pd.DataFrame,
    *,
    time_s: np.ndarray,
    ttl_frames: np.ndarray | None = None,
    event_offset_s: float | None = None,
    params: AlignParams = AlignParams(),
    path: str | Path | None = None,
) -> ClockMap:
    """Find the map from the behaviour clock to the frame clock (see the module notes).

    Parameters
    ----------
    events
        Output of :func:`read_events`.
    time_s
        Frame times (s since the first frame).
    ttl_frames
        Rising-edge frames of a TTL column (:func:`read_ttl_frames`), or ``None``.
    event_offset_s
        Declared behaviour-clock time (s) of the first imaging frame for this session;
        it wins over a TTL start edge. ``None``: the TTL start edge if any, else
        ``params.event_offset_s``.
    params
        Alignment parameters.
    path
        The events file, for error messages.

    Returns
    -------
    ClockMap

    Raises
    ------
    InputFormatError
        Sync pulses that cannot be paired (different counts, frames outside the
        recording) or that do not fit one clock (residual or drift too large).
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    dt = frame_interval_s(time_s)
    sync = events[events["event"] == "sync"]
    frames: np.ndarray | None = None
    if len(sync):
        given = sync["frame"].notna().to_numpy()
        if given.all():
            frames = sync["frame"].to_numpy(dtype=np.int64)
            source = "the events file's frame column"
        elif given.any():
            raise InputFormatError(
                "some sync rows have a frame number and others do not",
                path=path,
                field="frame",
                fix="give every sync row its imaging frame, or none of them (then the TTL column is used)",
            )
        elif ttl_frames is not None and len(ttl_frames):
            if len(ttl_frames) != len(sync):
                raise InputFormatError(
                    f"{len(sync)} sync events but {len(ttl_frames)} TTL rising edges in timeStamps.csv",
                    path=path,
                    field="sync",
                    fix="log every sync pulse in the events file (and only those) or add their frame numbers",
                )
            frames = np.asarray(ttl_frames, dtype=np.int64)
            source = "the TTL column of timeStamps.csv"
        else:
            raise InputFormatError(
                f"{len(sync)} sync event(s) but no frame to pair them with",
                path=path,
                field="sync",
                fix="add a 'frame' column for sync rows or a TTL column to the Miniscope timeStamps.csv",
            )
        if frames.min() < 0 or frames.max() >= time_s.size:
            raise InputFormatError(
                f"sync frame {int(frames.max())} is outside the recording (0-{time_s.size - 1})",
                path=path,
                field="frame",
                fix="give imaging frame numbers counted from 0",
            )
        t_beh = sync["onset_s"].to_numpy(dtype=np.float64)
        t_frm = time_s[frames]
        if len(sync) == 1:
            intercept, scale = float(t_frm[0] - t_beh[0]), 1.0
        else:
            scale, intercept = np.polyfit(t_beh, t_frm, 1)
            scale, intercept = float(scale), float(intercept)
        resid = t_frm - (intercept + scale * t_beh)
        rms = float(np.sqrt(np.mean(resid**2)))
        if abs(scale - 1.0) > params.max_clock_drift:
            raise InputFormatError(
                f"sync pulses imply the clocks run at rates {scale:.4f}:1 (more than "
                f"{params.max_clock_drift:.2%} apart)",
                path=path,
                field="sync",
                fix=f"check that sync rows and frames from {source} are the same pulses, in order",
            )
        if np.max(np.abs(resid)) > params.max_sync_residual_frames * dt:
            raise InputFormatError(
                f"sync pulses do not fit one clock (largest residual {np.max(np.abs(resid)):.3f} s, "
                f"{np.max(np.abs(resid)) / dt:.1f} frames)",
                path=path,
                field="sync",
                fix=f"check that sync rows and frames from {source} are the same pulses, in order",
            )
        logger.debug("clock from %d sync pulses: t_frame = %.4f + %.6f t_beh (rms %.4f s)",
                     len(sync), intercept, scale, rms)
        return ClockMap(intercept_s=intercept, scale=scale, method="sync", n_sync=len(sync), residual_s=rms)
    if event_offset_s is None and ttl_frames is not None and len(ttl_frames):
        if len(ttl_frames) > 1:
            logger.warning("%s: %d TTL edges but no sync events; the first edge is taken as behaviour time 0",
                           path, len(ttl_frames))
        start = int(ttl_frames[0])
        if start >= time_s.size:
            raise InputFormatError("TTL edge after the last frame", path=path, field="TTL")
        return ClockMap(intercept_s=float(time_s[start]), scale=1.0, method="ttl_start", n_sync=1)
    offset = params.event_offset_s if event_offset_s is None else float(event_offset_s)
    if not math.isfinite(offset):
        raise InputFormatError(f"event_offset_s must be finite, got {offset!r}", path=path, field="event_offset_s")
    return ClockMap(intercept_s=-offset, scale=1.0, method="offset" if offset != 0 else "none")


def align_events(
    events: pd.DataFrame,
    *,
    time_s: np.ndarray,
    clock: ClockMap,
    params: AlignParams = AlignParams(),
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
    offset_frame = np.where(offset_frame == onset_frame, np.minimum(onset_frame + 1, time_s.size), offset_frame)
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
    for a, b in zip(clock.to_frame_clock(ep["onset_s"].to_numpy()), clock.to_frame_clock(ep["offset_s"].to_numpy())):
        out[(time_s >= a) & (time_s < b)] = True
    return out
