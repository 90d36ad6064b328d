"""Simulated freezing behaviour of a fear-conditioning / safety / extinction session.

Freezing is generated as alternating bouts of freezing and moving whose target
probability follows the protocol:

* a low baseline (about 5 %) before the first tone and between tones;
* during CS+ tones, high freezing that builds up across conditioning trials (about
  20 % on the first trial to 70 % on the last), stays high in safety learning (55 %)
  and falls across extinction trials (from 60 % to about 20 %);
* CS- tones get part of it by generalisation: about 40 % of the CS+ level in
  conditioning, dropping to 20 % in safety learning (the CS- has become a safety
  signal) and 35 % in extinction;
* after a shock, freezing is raised to 30 % for 20 s outside tones (post-shock freezing).

A freezing bout lasts at least 1 s (the usual scoring criterion; log-normal, median
1.8 s) and a moving bout at least 0.3 s. While the mouse moves, a bout starts with a
per-frame chance set so that the long-run fraction of time frozen equals the target of
that moment; a bout once started runs its course, so freezing outlasts tones a little,
as it does in real mice.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.schemas import ParameterError

__all__ = [
    "FREEZING_HEADER",
    "FREEZING_FILE",
    "freezing_probability",
    "simulate_freezing",
    "write_freezing_csv",
]

log = logging.getLogger(__name__)

FREEZING_HEADER: Final = ("frame", "time_s", "freezing")
FREEZING_FILE: Final = "freezing.csv"

_BASELINE: Final = 0.05
_POST_SHOCK: Final = 0.30
_POST_SHOCK_S: Final = 20.0
_MIN_FREEZE_S: Final = 1.0
_MIN_MOVE_S: Final = 0.3
_MEDIAN_FREEZE_S: Final = 1.8

#: Target freezing during the CS+ (first trial, last trial) and the CS- / CS+ ratio per stage.
_STAGE_CS_PLUS: Final[dict[str, tuple[float, float, float]]] = {
    "conditioning": (0.20, 0.70, 0.40),
    "safety": (0.55, 0.55, 0.20),
    "extinction": (0.60, 0.20, 0.35),
}
_DEFAULT_STAGE: Final = (0.40, 0.40, 0.50)


def freezing_probability(events: pd.DataFrame, *, n_frames: int, fps: float, stage: str) -> np.ndarray:
    """Target freezing probability per frame for a session's protocol.

    Parameters
    ----------
    events
        Columns ``event`` (``CS+``, ``CS-``, ``shock``), ``onset_s``, ``offset_s`` (s).
    n_frames
        Number of frames.
    fps
        Frame rate (Hz).
    stage
        ``conditioning``, ``safety``, ``extinction`` (others get a flat 40 % / 20 %).

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` float64 in [0, 1].
    """
    t = np.arange(n_frames) / fps
    p = np.full(n_frames, _BASELINE)
    first, last, cs_minus_ratio = _STAGE_CS_PLUS.get(stage, _DEFAULT_STAGE)
    names = events["event"].astype(str).to_numpy()
    on = events["onset_s"].to_numpy(dtype=np.float64)
    off = events["offset_s"].to_numpy(dtype=np.float64)
    plus = np.flatnonzero(names == "CS+")
    minus = np.flatnonzero(names == "CS-")
    n_plus = max(len(plus), 1)
    for k, i in enumerate(plus):
        level = first + (last - first) * (k / (n_plus - 1) if n_plus > 1 else 1.0)
        m = (t >= on[i]) & (t < off[i])
        p[m] = np.maximum(p[m], level)
    mean_plus = 0.5 * (first + last)
    for k, i in enumerate(minus):
        frac = k / (len(minus) - 1) if len(minus) > 1 else 1.0
        level = (
            cs_minus_ratio * (first + (last - first) * frac)
            if stage == "conditioning"
            else cs_minus_ratio * mean_plus
        )
        m = (t >= on[i]) & (t < off[i])
        p[m] = np.maximum(p[m], max(level, _BASELINE))
    in_tone = np.zeros(n_frames, dtype=bool)
    for i in np.flatnonzero(np.isin(names, ("CS+", "CS-"))):
        in_tone |= (t >= on[i]) & (t < off[i])
    for a in on[names == "shock"]:  # post-shock freezing between tones (tones keep their own level)
        m = (t >= a) & (t < a + _POST_SHOCK_S) & ~in_tone
        p[m] = np.maximum(p[m], _POST_SHOCK)
    return np.clip(p, 0.0, 1.0)


def simulate_freezing(
    events: pd.DataFrame,
    *,
    n_frames: int,
    fps: float,
    stage: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulate a per-frame freezing trace (see the module notes for the model).

    Parameters
    ----------
    events
        The session's events: ``event`` (``CS+``, ``CS-``, ``shock``), ``onset_s``,
        ``offset_s`` (s from the start of the recording).
    n_frames
        Number of frames of the trace.
    fps
        Frame rate of the trace (Hz).
    stage
        Session stage (``conditioning``, ``safety``, ``extinction``).
    rng
        Random generator.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` bool, true while the animal freezes; every freezing bout lasts
        at least 1 s (unless cut by the end of the recording).

    Raises
    ------
    ParameterError
        If ``n_frames < 1``, ``fps <= 0`` or ``events`` lacks a column.
    """
    if n_frames < 1:
        raise ParameterError(f"n_frames must be >= 1, got {n_frames}", field="n_frames")
    if not (math.isfinite(fps) and fps > 0):
        raise ParameterError(f"fps must be > 0, got {fps}", field="fps")
    missing = {"event", "onset_s", "offset_s"} - set(events.columns)
    if missing:
        raise ParameterError(
            f"events lack column(s) {sorted(missing)}",
            field="events",
            fix="pass columns event, onset_s, offset_s",
        )
    p = freezing_probability(events, n_frames=n_frames, fps=fps, stage=stage)
    out = np.zeros(n_frames, dtype=bool)
    min_freeze = max(1, math.ceil(_MIN_FREEZE_S * fps))
    min_move = max(1, math.ceil(_MIN_MOVE_S * fps))
    mean_freeze = _MEDIAN_FREEZE_S * math.exp(0.4**2 / 2) * fps  # frames, log-normal mean
    target = np.clip(p, 0.01, 0.95)
    # while moving, a freezing bout starts with this chance per frame, so that the mean
    # moving bout (min_move + 1 / hazard) gives the target fraction of freezing
    wait = np.maximum(mean_freeze * (1.0 - target) / target - min_move, 1.0)
    hazard = 1.0 / wait
    u = rng.random(n_frames)
    i = 0
    freezing = bool(rng.random() < p[0])
    while i < n_frames:
        if freezing:
            length = max(min_freeze, int(round(rng.lognormal(math.log(_MEDIAN_FREEZE_S), 0.4) * fps)))
            out[i : i + length] = True
            i += length + min_move
            freezing = False
        elif u[i] < hazard[i]:
            freezing = True
        else:
            i += 1
    return out


def write_freezing_csv(path: str | Path, freezing: np.ndarray, fps: float) -> Path:
    """Write a freezing trace as ``frame,time_s,freezing`` (time of frame ``i`` = ``i / fps``).

    Parameters
    ----------
    path
        Output file (replaced atomically).
    freezing
        ``(n_frames,)`` bool per behaviour frame.
    fps
        Frame rate of the trace (Hz).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        If ``fps`` is not a positive number.
    """
    path = Path(path)
    values = np.asarray(freezing, dtype=bool).ravel()
    if not (math.isfinite(fps) and fps > 0):
        raise ParameterError(f"fps must be > 0, got {fps}", field="fps")
    lines = [",".join(FREEZING_HEADER)]
    lines.extend(f"{i},{i / fps:.3f},{int(v)}" for i, v in enumerate(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    log.debug(
        "wrote %s (%d frames, %.0f%% freezing)",
        path,
        values.size,
        100.0 * values.mean() if values.size else 0,
    )
    return path
