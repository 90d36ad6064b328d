"""The imaging frame clock: Miniscope timestamps, TTL edges and the behaviour-to-frame clock map.

*Miniscope timestamps*: the session dataset's ``time_s`` (from the Miniscope
``timeStamps.csv``) gives the real time of every recorded frame, so dropped frames
(gaps in the timestamps) and a camera whose true rate differs from its nominal rate
are handled by construction: events are placed by time, never by ``time * fps``.
If the Miniscope folder's ``timeStamps.csv`` carries a TTL column (a column whose
name contains ``ttl``, ``trigger`` or ``sync``), its rising edges are the frames at
which sync pulses arrived (:func:`read_ttl_frames`).

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

The events themselves are read and placed on frames by :mod:`.events`.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "AlignParams",
    "ClockMap",
    "read_ttl_frames",
    "frame_interval_s",
    "dropped_frames",
    "fit_clock",
]

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

    Raises
    ------
    ParameterError
        A value that is not a finite number, or a negative tolerance.
    """

    event_offset_s: float = 0.0
    tolerance_frames: float = 1.0
    max_sync_residual_frames: float = 2.0
    max_clock_drift: float = 0.01

    def __post_init__(self) -> None:
        for name in ("event_offset_s", "tolerance_frames", "max_sync_residual_frames", "max_clock_drift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterError(f"must be a finite number, got {value!r}", field=name)
        for name in ("tolerance_frames", "max_sync_residual_frames", "max_clock_drift"):
            if getattr(self, name) < 0:
                raise ParameterError(f"must be >= 0, got {getattr(self, name)!r}", field=name)


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

    Raises
    ------
    InputFormatError
        If the TTL column cannot be read as numbers.
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


def frame_interval_s(time_s: np.ndarray) -> float:
    """Median interval between frames (s), the typical frame period of a recording.

    Raises
    ------
    InputFormatError
        If there are fewer than two frame times.
    """
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


def _sync_frames(
    sync: pd.DataFrame, ttl_frames: np.ndarray | None, path: str | Path | None
) -> tuple[np.ndarray, str]:
    """The imaging frame of each sync row and where it came from (for error messages)."""
    given = sync["frame"].notna().to_numpy()
    if given.all():
        return sync["frame"].to_numpy(dtype=np.int64), "the events file's frame column"
    if given.any():
        raise InputFormatError(
            "some sync rows have a frame number and others do not",
            path=path,
            field="frame",
            fix="give every sync row its imaging frame, or none of them (then the TTL column is used)",
        )
    if ttl_frames is not None and len(ttl_frames):
        if len(ttl_frames) != len(sync):
            raise InputFormatError(
                f"{len(sync)} sync events but {len(ttl_frames)} TTL rising edges in timeStamps.csv",
                path=path,
                field="sync",
                fix="log every sync pulse in the events file (and only those) or add their frame numbers",
            )
        return np.asarray(ttl_frames, dtype=np.int64), "the TTL column of timeStamps.csv"
    raise InputFormatError(
        f"{len(sync)} sync event(s) but no frame to pair them with",
        path=path,
        field="sync",
        fix="add a 'frame' column for sync rows or a TTL column to the Miniscope timeStamps.csv",
    )


def _fit_sync(
    sync: pd.DataFrame,
    *,
    time_s: np.ndarray,
    ttl_frames: np.ndarray | None,
    params: AlignParams,
    path: str | Path | None,
) -> ClockMap:
    """The clock map from sync pulses: offset (one pulse) or offset and drift (two or more)."""
    dt = frame_interval_s(time_s)
    frames, source = _sync_frames(sync, ttl_frames, path)
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
    logger.debug(
        "clock from %d sync pulses: t_frame = %.4f + %.6f t_beh (rms %.4f s)",
        len(sync),
        intercept,
        scale,
        rms,
    )
    return ClockMap(intercept_s=intercept, scale=scale, method="sync", n_sync=len(sync), residual_s=rms)


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
        Output of :func:`cellsift.pipeline.analysis.events.read_events`.
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
    frame_interval_s(time_s)  # at least two frame times
    sync = events[events["event"] == "sync"]
    if len(sync):
        return _fit_sync(sync, time_s=time_s, ttl_frames=ttl_frames, params=params, path=path)
    if event_offset_s is None and ttl_frames is not None and len(ttl_frames):
        if len(ttl_frames) > 1:
            logger.warning(
                "%s: %d TTL edges but no sync events; the first edge is taken as behaviour time 0",
                path,
                len(ttl_frames),
            )
        start = int(ttl_frames[0])
        if start >= time_s.size:
            raise InputFormatError("TTL edge after the last frame", path=path, field="TTL")
        return ClockMap(intercept_s=float(time_s[start]), scale=1.0, method="ttl_start", n_sync=1)
    offset = params.event_offset_s if event_offset_s is None else float(event_offset_s)
    if not math.isfinite(offset):
        raise InputFormatError(
            f"event_offset_s must be finite, got {offset!r}", path=path, field="event_offset_s"
        )
    return ClockMap(intercept_s=-offset, scale=1.0, method="offset" if offset != 0 else "none")
