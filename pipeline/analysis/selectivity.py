"""Per-cell tone responses: the circular-shift test, q-values and CS+/CS- selectivity.

Per cell (:func:`circular_shift_test`, table ``cell_summary``)
--------------------------------------------------------------
The response to a tone type is the mean ``delta`` over its trials. Its p-value comes
from a **circular-shift permutation test**: the trial windows are moved along the ΔF/F
trace by ``n_shuffles`` random circular shifts (at least ``min_shift_s`` from zero) and
the statistic recomputed. Shifting keeps the trace's autocorrelation and the trials'
geometry; shifted windows that land on the other tone's trials make the test
conservative for cells answering both tones (``mask_null`` builds the null from
spontaneous activity only, see :class:`.responses.ResponseParams`).
``p = (1 + #|null| >= |obs|) / (1 + n_null)`` after centring on the null mean (two-sided). When fewer than 10 shuffles are as extreme, p is taken
from the normal tail of the null (mean and SD of the shuffles), so q-values stay
meaningful for sessions with hundreds of units.
Benjamini-Hochberg q-values are computed per session and tone type over all units.

Selectivity
-----------
* ``<tone>_responsive``: q < ``alpha`` (0.05) **and** at least ``min_responsive_trials``
  (2) trials respond on their own (per-trial Mann-Whitney p < 0.05, same sign);
* ``cs_plus_selective``: CS+ responsive with an *increase* (response > 0), CS- not
  responsive even without correction (CS- p >= ``not_responsive_p``, 0.05) **and** a
  discrimination index >= ``min_discrimination`` (0.5: the CS+ response is at least three
  times a CS- increase), so a cell with a weaker but real CS- response is not called
  selective just because 4-8 trials lack the power to show it; ``cs_minus_selective``
  the other way round (index <= -0.5). A session without trials of the other tone
  has no selective cells (selectivity cannot be judged);
* ``discrimination_index = (R+ - R-) / (|R+| + |R-|)`` with ``R`` the mean ``delta``
  (ΔF/F) per tone type, in [-1, 1]; +1 responds to CS+ only.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
import pandas as pd
from scipy import stats

from cellsift.pipeline.analysis.events import TONE_EVENTS
from cellsift.pipeline.analysis.responses import ResponseParams
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "TONE_PREFIX",
    "draw_shifts",
    "event_mask",
    "circular_shift_test",
    "benjamini_hochberg",
    "discrimination_index",
    "summarise_cells",
]

_DEFAULT_RESPONSES: Final = ResponseParams()

#: Below this many shuffles as extreme as the observation, p comes from the null's normal tail.
_MIN_TAIL_COUNT: Final = 10

#: Column prefix of each tone type in ``cell_summary``.
TONE_PREFIX: Final[dict[str, str]] = {"CS+": "cs_plus", "CS-": "cs_minus"}


def draw_shifts(n_frames: int, *, n_shuffles: int, min_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Random circular shifts (frames) for :func:`circular_shift_test`.

    Shifts are uniform in ``[min_shift, n_frames - min_shift]`` (``[1, n_frames - 1]`` when
    the session is shorter than ``2 * min_shift + 2`` frames). Draw them once per session
    and tone type so every unit is tested against the same shifts, whatever the batching.
    """
    if n_frames < 3:
        return np.zeros(0, dtype=np.int64)
    lo, hi = (min_shift, n_frames - min_shift) if n_frames > 2 * min_shift + 1 else (1, n_frames - 1)
    return rng.integers(lo, hi + 1, size=n_shuffles).astype(np.int64)


def event_mask(events: pd.DataFrame, *, time_s: np.ndarray, tail_s: float) -> np.ndarray:
    """Frames during any tone or shock, or less than ``tail_s`` after one (calcium decay).

    Parameters
    ----------
    events
        Aligned events (imaging clock ``onset_s`` / ``offset_s``).
    time_s
        Frame times (s).
    tail_s
        Time after each event that is still excluded (s).

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` bool, true for frames to leave out of the permutation null.
    """
    t = np.asarray(time_s, dtype=np.float64)
    out = np.zeros(t.size, dtype=bool)
    ev = events[events["event"].isin([*TONE_EVENTS, "shock"])]
    for on, off in zip(
        ev["onset_s"].to_numpy(dtype=np.float64), ev["offset_s"].to_numpy(dtype=np.float64), strict=True
    ):
        out |= (t >= on) & (t < off + tail_s)
    return out


def _window_means(
    cs: np.ndarray, start: np.ndarray, stop: np.ndarray, count: np.ndarray | None
) -> np.ndarray:
    total = cs[:, stop] - cs[:, start]
    if count is None:
        return total / (stop - start)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def circular_shift_test(
    dff: np.ndarray,
    *,
    windows: pd.DataFrame,
    shifts: np.ndarray,
    exclude: np.ndarray | None = None,
    min_null: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular-shift permutation test of the mean (response - baseline) over trials.

    Parameters
    ----------
    dff
        ``(n_units, n_frames)`` ΔF/F.
    windows
        The trials of *one* tone type (rows of :func:`trial_windows`).
    shifts
        Circular shifts (frames, in ``[1, n_frames - 1]``) from :func:`draw_shifts`.
    exclude
        ``(n_frames,)`` bool: frames left out of the *null* windows (:func:`event_mask`:
        every tone and shock plus a decay tail). The null then measures spontaneous
        activity only, so a cell that also responds to the other tone (or to shocks)
        does not inflate its own null. Shifted trials keeping fewer than 2 frames in a
        window are dropped; shifts keeping fewer than half the trials are dropped; with
        fewer than ``min_null`` shifts left the unmasked null is used.
    min_null
        Smallest number of usable shifts of the masked null.

    Returns
    -------
    tuple
        ``(observed, p_two_sided, p_increase)``, each ``(n_units,)``; NaN when there are no
        trials or no shifts.
    """
    x = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    n_units, n = x.shape
    shifts = np.asarray(shifts, dtype=np.int64)
    if len(windows) == 0 or shifts.size == 0 or n < 3:
        nan = np.full(n_units, np.nan)
        return nan, nan.copy(), nan.copy()
    if shifts.min() < 0 or shifts.max() >= n:
        raise InputFormatError(f"shifts must be in [0, {n - 1}] frames", field="shifts")
    bs = windows["baseline_start"].to_numpy(np.int64)
    be = windows["baseline_stop"].to_numpy(np.int64)
    rs = windows["response_start"].to_numpy(np.int64)
    re = windows["response_stop"].to_numpy(np.int64)
    cs = np.zeros((n_units, 2 * n + 1))
    np.cumsum(np.concatenate([x, x], axis=1), axis=1, out=cs[:, 1:])
    obs = (_window_means(cs, rs, re, None) - _window_means(cs, bs, be, None)).mean(axis=1)
    k = shifts[:, None]
    null: np.ndarray | None = None
    if exclude is not None and np.any(exclude):
        keep = ~np.asarray(exclude, dtype=bool)
        if keep.shape != (n,):
            raise InputFormatError(f"exclude has shape {keep.shape}, expected ({n},)", field="exclude")
        csm = np.zeros((n_units, 2 * n + 1))
        np.cumsum(np.concatenate([x * keep, x * keep], axis=1), axis=1, out=csm[:, 1:])
        csn = np.concatenate([[0], np.cumsum(np.concatenate([keep, keep]))])[None, :]
        nb = csn[:, be + k][0] - csn[:, bs + k][0]  # (shifts, trials)
        nr = csn[:, re + k][0] - csn[:, rs + k][0]
        usable = (nb >= 2) & (nr >= 2)
        good_shift = usable.sum(axis=1) >= max(1, math.ceil(len(windows) / 2))
        if good_shift.sum() >= min_null:
            kk = k[good_shift]
            d = _window_means(csm, rs + kk, re + kk, nr[good_shift][None]) - _window_means(
                csm, bs + kk, be + kk, nb[good_shift][None]
            )
            d = np.where(usable[good_shift][None], d, np.nan)
            null = np.nanmean(d, axis=2)
        else:
            logger.debug("only %d usable masked shifts: unmasked null", int(good_shift.sum()))
    if null is None:
        null = (_window_means(cs, rs + k, re + k, None) - _window_means(cs, bs + k, be + k, None)).mean(
            axis=2
        )
    n_null = null.shape[1]
    centre = null.mean(axis=1, keepdims=True)
    spread = null.std(axis=1, ddof=1)
    n_extreme = (np.abs(null - centre) >= np.abs(obs[:, None] - centre) - 1e-15).sum(axis=1)
    n_above = (null >= obs[:, None] - 1e-15).sum(axis=1)
    p_two = (1.0 + n_extreme) / (1.0 + n_null)
    p_up = (1.0 + n_above) / (1.0 + n_null)
    # beyond the resolution of the shuffles: normal tail of the null distribution
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(spread > 0, (obs - centre[:, 0]) / spread, 0.0)
    p_two = np.where(n_extreme < _MIN_TAIL_COUNT, np.minimum(p_two, 2.0 * stats.norm.sf(np.abs(z))), p_two)
    p_up = np.where(n_above < _MIN_TAIL_COUNT, np.minimum(p_up, stats.norm.sf(z)), p_up)
    return obs, p_two, p_up


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p`` (NaNs stay NaN and are not counted)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    vals = p[ok]
    order = np.argsort(vals)
    ranked = vals[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def discrimination_index(r_plus: np.ndarray, r_minus: np.ndarray) -> np.ndarray:
    """``(R+ - R-) / (|R+| + |R-|)`` in [-1, 1]; NaN when both are 0 or missing."""
    a = np.asarray(r_plus, dtype=np.float64)
    b = np.asarray(r_minus, dtype=np.float64)
    den = np.abs(a) + np.abs(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a - b) / den, np.nan)


def summarise_cells(
    per_tone: dict[str, dict[str, np.ndarray]],
    *,
    n_units: int,
    params: ResponseParams = _DEFAULT_RESPONSES,
) -> dict[str, np.ndarray]:
    """Cell-level columns of ``cell_summary`` from per-tone statistics.

    Parameters
    ----------
    per_tone
        For each tone type in :data:`~cellsift.pipeline.analysis.events.TONE_EVENTS`: ``response``
        (mean delta), ``zscore`` (mean z), ``auc`` (mean AUC), ``p`` (two-sided
        permutation p), ``n_trials`` (int) and ``n_trials_sig`` (trials with a per-trial
        Mann-Whitney p < ``trial_alpha`` and a delta of the same sign as ``response``);
        arrays ``(n_units,)``.
        A tone type without trials may be missing (its columns become NaN / False).
    n_units
        Number of units.
    params
        ``alpha`` and ``not_responsive_p``.

    Returns
    -------
    dict
        Columns ``cs_plus_response``, ``cs_plus_zscore``, ``cs_plus_auc``, ``cs_plus_p``,
        ``cs_plus_q``, ``cs_plus_responsive``, ``cs_plus_n_trials``,
        ``cs_plus_n_trials_sig`` (and the same for ``cs_minus``),
        ``discrimination_index``, ``cs_plus_selective``, ``cs_minus_selective``,
        ``selectivity`` (``"CS+"``, ``"CS-"``, ``"both"`` or ``"none"``).
    """
    cols: dict[str, np.ndarray] = {}
    nan = np.full(n_units, np.nan)
    for tone, prefix in TONE_PREFIX.items():
        st = per_tone.get(tone, {})
        p = np.asarray(st.get("p", nan), dtype=np.float64)
        resp = np.asarray(st.get("response", nan), dtype=np.float64)
        q = benjamini_hochberg(p)
        cols[f"{prefix}_response"] = resp
        cols[f"{prefix}_zscore"] = np.asarray(st.get("zscore", nan), dtype=np.float64)
        cols[f"{prefix}_auc"] = np.asarray(st.get("auc", nan), dtype=np.float64)
        cols[f"{prefix}_p"] = p
        cols[f"{prefix}_q"] = q
        cols[f"{prefix}_n_trials"] = np.full(n_units, int(st.get("n_trials", 0)), dtype=np.int32)
        n_trials = int(st.get("n_trials", 0))
        n_sig = np.asarray(st.get("n_trials_sig", np.zeros(n_units)), dtype=np.float64)
        n_sig = np.where(np.isfinite(n_sig), n_sig, 0).astype(np.int32)
        cols[f"{prefix}_n_trials_sig"] = n_sig
        need = min(params.min_responsive_trials, n_trials)
        cols[f"{prefix}_responsive"] = np.isfinite(q) & (q < params.alpha) & (n_sig >= need)
    cols["discrimination_index"] = discrimination_index(cols["cs_plus_response"], cols["cs_minus_response"])

    di = cols["discrimination_index"]

    def selective(me: str, other: str, sign: float) -> np.ndarray:
        up = cols[f"{me}_responsive"] & (cols[f"{me}_response"] > 0)
        p_other = cols[f"{other}_p"]
        quiet = ~np.isfinite(p_other) | (p_other >= params.not_responsive_p)
        discriminates = np.isfinite(di) & (sign * di >= params.min_discrimination)
        return up & quiet & discriminates

    cols["cs_plus_selective"] = selective("cs_plus", "cs_minus", 1.0)
    cols["cs_minus_selective"] = selective("cs_minus", "cs_plus", -1.0)
    up_plus = cols["cs_plus_responsive"] & (cols["cs_plus_response"] > 0)
    up_minus = cols["cs_minus_responsive"] & (cols["cs_minus_response"] > 0)
    sel = np.full(n_units, "none", dtype=object)
    sel[up_plus & up_minus] = "both"
    sel[cols["cs_plus_selective"]] = "CS+"
    sel[cols["cs_minus_selective"]] = "CS-"
    cols["selectivity"] = sel
    return cols
