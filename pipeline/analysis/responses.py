"""Tone responses of every cell per trial: trial windows and per-trial statistics.

Windows (:func:`trial_windows`)
-------------------------------
For every tone (``CS+`` / ``CS-``) trial:

* **baseline**: frames with times in ``[onset - baseline_s, onset)`` (5 s), cut so it
  starts after the end of the previous tone or shock;
* **response**: ``[onset + response_start_s, offset)`` — the whole tone — ending at the
  first shock onset inside the tone when ``exclude_shock`` (the default), so shock-evoked
  activity of conditioning CS+ trials is not counted as a tone response.

Windows are chosen by frame *time* (the Miniscope timestamps), so dropped frames
shorten a window instead of shifting it.

Per trial (:func:`trial_statistics`, table ``trial_responses``)
---------------------------------------------------------------
``baseline_mean`` and ``response_mean`` (ΔF/F), ``delta = response - baseline``,
``zscore = delta / max(SD of the baseline frames, noise SD of the cell)`` (the floor
keeps a quiet baseline from inflating z), ``auc`` = trapezoidal integral of
``dff - baseline_mean`` over the response window (ΔF/F·s, by timestamps), ``peak``
(max of ``dff - baseline_mean``) and ``p_value``: a two-sided Mann-Whitney U test of the
response-window frames against the baseline frames of that trial (frames are
autocorrelated, so treat it as a descriptive per-trial statistic).

The per-cell permutation test, q-values and the selectivity call are in
:mod:`.selectivity`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cellsift.pipeline.analysis.events import TONE_EVENTS
from cellsift.schemas import ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "ResponseParams",
    "trial_windows",
    "trial_statistics",
]


@dataclass(frozen=True)
class ResponseParams:
    """Parameters of the response analysis (see the module notes here and in :mod:`.selectivity`).

    Attributes
    ----------
    baseline_s
        Length of the pre-tone baseline window (s).
    response_start_s
        Start of the response window after tone onset (s).
    response_end_s
        End of the response window after tone onset (s); ``None``: the tone offset.
    exclude_shock
        End the response window at the first shock onset inside the tone.
    min_window_s
        Trials whose baseline or response window is shorter are skipped (s).
    n_shuffles
        Number of circular shifts of the permutation test.
    min_shift_s
        Smallest circular shift (s).
    alpha
        False-discovery rate (Benjamini-Hochberg) at which a cell is responsive.
    not_responsive_p
        Uncorrected p-value at or above which a cell counts as *not* responding to the
        other tone when calling it selective.
    min_discrimination
        Smallest ``|discrimination_index|`` of a selective cell.
    trial_alpha
        Per-trial Mann-Whitney p below which a trial counts as responding.
    min_responsive_trials
        A responsive cell must respond (in the direction of its mean response) in at
        least this many trials (or in all trials when there are fewer), so one
        spontaneous transient that happens to follow a tone onset is not a response.
    mask_null
        Build the permutation null from spontaneous activity only, leaving out every tone
        and shock and ``null_tail_s`` after each. More sensitive (the null no longer holds
        the other tone's responses), which also makes small responses to the other tone
        significant, so fewer cells count as selective; off by default (on the simulated
        demo cohort it lowered the recall of CS+-selective cells from 0.53 to 0.40 at the
        same precision).
    null_tail_s
        Decay time left out after each event when ``mask_null`` (s).
    seed
        Seed of the shifts (mixed with the session key, so results are reproducible).

    Raises
    ------
    ParameterError
        A window or shift that is not positive, a response window that ends before it
        starts, fewer than 10 shuffles, or a probability outside its range.
    """

    baseline_s: float = 5.0
    response_start_s: float = 0.0
    response_end_s: float | None = None
    exclude_shock: bool = True
    min_window_s: float = 0.5
    n_shuffles: int = 5000
    min_shift_s: float = 10.0
    alpha: float = 0.05
    not_responsive_p: float = 0.05
    min_discrimination: float = 0.5
    trial_alpha: float = 0.05
    min_responsive_trials: int = 2
    mask_null: bool = False
    null_tail_s: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("baseline_s", "min_window_s", "min_shift_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ParameterError(f"must be > 0, got {value}", field=name)
        if not math.isfinite(self.response_start_s) or self.response_start_s < 0:
            raise ParameterError(f"must be >= 0, got {self.response_start_s}", field="response_start_s")
        if self.response_end_s is not None and not (self.response_end_s > self.response_start_s):
            raise ParameterError(
                f"must be after response_start_s ({self.response_start_s}), got {self.response_end_s}",
                field="response_end_s",
            )
        if isinstance(self.n_shuffles, bool) or self.n_shuffles < 10:
            raise ParameterError(f"must be >= 10, got {self.n_shuffles}", field="n_shuffles")
        if isinstance(self.min_responsive_trials, bool) or self.min_responsive_trials < 1:
            raise ParameterError(
                f"must be >= 1, got {self.min_responsive_trials}", field="min_responsive_trials"
            )
        for name in ("alpha", "not_responsive_p", "trial_alpha"):
            value = getattr(self, name)
            if not (0.0 < value < 1.0):
                raise ParameterError(f"must be in (0, 1), got {value}", field=name)
        if not (0.0 <= self.min_discrimination <= 1.0):
            raise ParameterError(
                f"must be in [0, 1], got {self.min_discrimination}", field="min_discrimination"
            )


def trial_windows(
    events: pd.DataFrame, *, time_s: np.ndarray, params: ResponseParams = ResponseParams()
) -> pd.DataFrame:
    """Baseline and response windows (frames) of every tone trial.

    Parameters
    ----------
    events
        Aligned events (:func:`cellsift.pipeline.analysis.events.align_events`) with a
        ``event_index`` column (row number in the session's ``events`` table).
    time_s
        Frame times (s).
    params
        Window parameters.

    Returns
    -------
    pandas.DataFrame
        One row per usable tone trial: ``event_index``, ``trial_type``, ``trial``,
        ``onset_frame``, ``baseline_start``, ``baseline_stop``, ``response_start``,
        ``response_stop`` (frame indices, stops exclusive), ``onset_s``.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    cols = [
        "event_index",
        "trial_type",
        "trial",
        "onset_frame",
        "baseline_start",
        "baseline_stop",
        "response_start",
        "response_stop",
        "onset_s",
    ]
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in cols}).astype(
            {"trial_type": object, "onset_s": float}
        )
    ev = events.sort_values("onset_s", kind="stable")
    blocking = ev[ev["event"].isin([*TONE_EVENTS, "shock"])]
    shocks = ev[ev["event"] == "shock"]
    rows = []
    for row in ev[ev["event"].isin(TONE_EVENTS)].itertuples(index=False):
        on, off = float(row.onset_s), float(row.offset_s)
        prev_end = blocking.loc[blocking["onset_s"] < on - 1e-9, "offset_s"]
        b0 = max(on - params.baseline_s, float(prev_end.max()) if len(prev_end) else -np.inf)
        r0 = on + params.response_start_s
        r1 = off if params.response_end_s is None else min(off, on + params.response_end_s)
        if params.exclude_shock:
            inside = shocks.loc[(shocks["onset_s"] >= on - 1e-9) & (shocks["onset_s"] < r1), "onset_s"]
            if len(inside):
                r1 = min(r1, float(inside.min()))
        bs, be = np.searchsorted(time_s, [b0 - 1e-9, on - 1e-9], side="left")
        rs, re = np.searchsorted(time_s, [r0 - 1e-9, r1 - 1e-9], side="left")
        if (on - b0) < params.min_window_s or (r1 - r0) < params.min_window_s or be - bs < 2 or re - rs < 2:
            logger.debug("skipping %s trial %d: window too short", row.event, row.trial)
            continue
        rows.append(
            (
                int(row.event_index),
                str(row.event),
                int(row.trial),
                int(row.onset_frame),
                int(bs),
                int(be),
                int(rs),
                int(re),
                on,
            )
        )
    return pd.DataFrame(rows, columns=cols)


def trial_statistics(
    dff: np.ndarray,
    *,
    time_s: np.ndarray,
    windows: pd.DataFrame,
    noise_sd: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per unit and trial response statistics (see the module notes).

    Parameters
    ----------
    dff
        ``(n_units, n_frames)`` ΔF/F.
    time_s
        Frame times (s).
    windows
        Output of :func:`trial_windows`.
    noise_sd
        ``(n_units,)`` noise SD of each unit's ΔF/F (floor of the z-score SD).

    Returns
    -------
    dict
        Arrays ``(n_units, n_trials)``: ``baseline_mean``, ``response_mean``, ``delta``,
        ``baseline_sd``, ``zscore``, ``auc``, ``peak``, ``p_value``, and ``(n_trials,)``
        ``n_baseline_frames``, ``n_response_frames``.
    """
    x = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    t = np.asarray(time_s, dtype=np.float64)
    n_units, n_trials = x.shape[0], len(windows)
    names = ("baseline_mean", "response_mean", "delta", "baseline_sd", "zscore", "auc", "peak", "p_value")
    out: dict[str, np.ndarray] = {k: np.full((n_units, n_trials), np.nan) for k in names}
    out["n_baseline_frames"] = np.zeros(n_trials, dtype=np.int64)
    out["n_response_frames"] = np.zeros(n_trials, dtype=np.int64)
    floor = np.maximum(np.asarray(noise_sd, dtype=np.float64), 1e-12)
    for j, w in enumerate(windows.itertuples(index=False)):
        base = x[:, w.baseline_start : w.baseline_stop]
        resp = x[:, w.response_start : w.response_stop]
        bm = base.mean(axis=1)
        rm = resp.mean(axis=1)
        sd = base.std(axis=1, ddof=1) if base.shape[1] > 1 else np.zeros(n_units)
        out["baseline_mean"][:, j] = bm
        out["response_mean"][:, j] = rm
        out["delta"][:, j] = rm - bm
        out["baseline_sd"][:, j] = sd
        out["zscore"][:, j] = (rm - bm) / np.maximum(sd, floor)
        rel = resp - bm[:, None]
        tr = t[w.response_start : w.response_stop]
        out["auc"][:, j] = np.trapezoid(rel, tr, axis=1) if tr.size > 1 else 0.0
        out["peak"][:, j] = rel.max(axis=1)
        out["p_value"][:, j] = stats.mannwhitneyu(resp, base, alternative="two-sided", axis=1).pvalue
        out["n_baseline_frames"][j] = base.shape[1]
        out["n_response_frames"][j] = resp.shape[1]
    return out
