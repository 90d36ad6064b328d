"""Trial windows, per-trial statistics, the circular-shift test, BH and selectivity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cellsift.pipeline.analysis.responses import (
    ResponseParams,
    benjamini_hochberg,
    circular_shift_test,
    discrimination_index,
    draw_shifts,
    summarise_cells,
    trial_statistics,
    trial_windows,
)
from cellsift.schemas.errors import InputFormatError

FPS = 20.0


def aligned(rows: list[tuple[str, float, float]], time_s: np.ndarray) -> pd.DataFrame:
    """A minimal aligned-events frame (imaging clock)."""
    ev = pd.DataFrame(rows, columns=["event", "onset_s", "offset_s"])
    ev["trial"] = 0
    for tone in ("CS+", "CS-"):
        m = ev["event"] == tone
        ev.loc[m, "trial"] = np.arange(1, m.sum() + 1)
    ev["onset_frame"] = np.searchsorted(time_s, ev["onset_s"] - 1e-9)
    ev["event_index"] = np.arange(len(ev))
    return ev


def protocol(n_frames: int = 4000) -> tuple[np.ndarray, pd.DataFrame]:
    t = np.arange(n_frames) / FPS
    rows = []
    for k in range(8):
        on = 12.0 + 22.0 * k
        tone = "CS+" if k % 2 == 0 else "CS-"
        rows.append((tone, on, on + 4.5))
        if tone == "CS+":
            rows.append(("shock", on + 3.5, on + 4.5))
    return t, aligned(rows, t)


def test_windows_stop_at_the_shock_and_start_after_the_previous_tone():
    t = np.arange(1200) / FPS
    ev = aligned([("CS-", 10.0, 14.5), ("CS+", 17.0, 21.5), ("shock", 20.5, 21.5)], t)
    w = trial_windows(ev, time_s=t, params=ResponseParams(baseline_s=5.0))
    assert w["trial_type"].tolist() == ["CS-", "CS+"]
    cs_minus, cs_plus = w.iloc[0], w.iloc[1]
    assert (cs_minus.baseline_start, cs_minus.baseline_stop) == (100, 200)
    assert (cs_minus.response_start, cs_minus.response_stop) == (200, 290)
    # baseline cut at the previous tone's offset (14.5 s), response ends at the shock (20.5 s)
    assert (cs_plus.baseline_start, cs_plus.baseline_stop) == (290, 340)
    assert (cs_plus.response_start, cs_plus.response_stop) == (340, 410)
    w2 = trial_windows(ev, time_s=t, params=ResponseParams(exclude_shock=False, response_end_s=2.0))
    assert w2.iloc[1].response_stop == 380
    assert trial_windows(ev.iloc[:0], time_s=t).empty


def test_windows_follow_timestamps_with_dropped_frames():
    t = np.arange(1000) / FPS
    t = np.delete(t, np.arange(205, 215))  # 10 frames lost just after tone onset
    ev = aligned([("CS+", 10.0, 14.0)], t)
    w = trial_windows(ev, time_s=t).iloc[0]
    assert w.response_start == 200 and w.response_stop == 270  # 80 s of tone - 10 lost frames
    st = trial_statistics(np.ones((1, t.size)), time_s=t, windows=trial_windows(ev, time_s=t), noise_sd=np.ones(1))
    assert st["n_response_frames"][0] == 70


def test_trial_statistics_on_a_known_trace():
    t, ev = protocol(1200)
    w = trial_windows(ev, time_s=t)
    x = np.zeros((2, t.size))
    rng = np.random.default_rng(0)
    x[1] = rng.normal(0, 0.01, t.size)
    first = w.iloc[0]
    x[0, first.response_start : first.response_stop] = 0.1  # a 0.1 dF/F step during the first trial
    st = trial_statistics(x, time_s=t, windows=w, noise_sd=np.array([0.01, 0.01]))
    assert st["delta"][0, 0] == pytest.approx(0.1)
    assert st["zscore"][0, 0] == pytest.approx(10.0)  # baseline SD 0 -> noise floor 0.01
    dur = t[first.response_stop - 1] - t[first.response_start]
    assert st["auc"][0, 0] == pytest.approx(0.1 * dur)
    assert st["p_value"][0, 0] < 1e-10 and st["peak"][0, 0] == pytest.approx(0.1)
    assert np.all(st["delta"][0, 1:] == 0)
    assert np.all(np.abs(st["zscore"][1]) < 5)
    ref = stats.mannwhitneyu(x[1, first.response_start : first.response_stop],
                             x[1, first.baseline_start : first.baseline_stop]).pvalue
    assert st["p_value"][1, 0] == pytest.approx(ref)


def _calcium(rng: np.random.Generator, n: int, onsets_frames: list[int], amp: float, reliability: float = 1.0) -> np.ndarray:
    x = rng.normal(0, 0.01, n)
    kernel = np.exp(-np.arange(40) / 12.0)
    spont = rng.choice(n - 40, 6, replace=False)  # spontaneous transients
    for s in spont:
        x[s : s + 40] += 0.08 * kernel
    for on in onsets_frames:
        if rng.random() < reliability:
            x[on + 4 : on + 44] += amp * kernel
    return x


def test_circular_shift_test_finds_responsive_cells_and_stays_calibrated():
    t, ev = protocol()
    w = trial_windows(ev, time_s=t)
    plus = w[w["trial_type"] == "CS+"]
    rng = np.random.default_rng(3)
    n_null = 200
    x = np.stack([_calcium(rng, t.size, plus["onset_frame"].tolist(), 0.15)]
                 + [_calcium(rng, t.size, [], 0.0) for _ in range(n_null)])
    shifts = draw_shifts(t.size, n_shuffles=2000, min_shift=200, rng=np.random.default_rng(0))
    assert shifts.min() >= 200 and shifts.max() <= t.size - 200
    obs, p, p_up = circular_shift_test(x, windows=plus, shifts=shifts)
    assert obs[0] > 0.015 and p[0] < 1e-3 and p_up[0] < 1e-3
    null_p = p[1:]
    # calibrated under the null: about 5 % below 0.05 (binomial 99.9 % band for 200 cells)
    assert np.mean(null_p < 0.05) < 0.12
    assert 0.3 < np.median(null_p) < 0.7
    nan_obs, nan_p, _ = circular_shift_test(x, windows=plus.iloc[:0], shifts=shifts)
    assert np.isnan(nan_obs).all() and np.isnan(nan_p).all()
    with pytest.raises(InputFormatError):
        circular_shift_test(x, windows=plus, shifts=np.array([t.size + 5]))


def test_benjamini_hochberg_matches_the_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.002])
    q = benjamini_hochberg(p)
    ok = p[np.isfinite(p)]
    m = ok.size
    order = np.argsort(ok)
    expected = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, ok[i] * m / rank)
        expected[i] = running
    assert np.allclose(q[np.isfinite(p)], expected)
    assert np.isnan(q[4])
    assert np.isnan(benjamini_hochberg(np.array([np.nan]))).all()


def test_discrimination_index():
    di = discrimination_index(np.array([1.0, 0.0, 1.0, -1.0, 0.0]), np.array([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert np.allclose(di[:4], [1.0, -1.0, 0.0, -1.0]) and np.isnan(di[4])


def test_selectivity_rule():
    # units: CS+ only, CS- only, both, CS+ with weak real CS-, CS+ inhibited, nothing
    per_tone = {
        "CS+": {"response": np.array([0.1, 0.0, 0.1, 0.1, -0.1, 0.0]),
                "p": np.array([1e-5, 0.8, 1e-5, 1e-5, 1e-5, 0.6]),
                "zscore": np.zeros(6), "auc": np.zeros(6), "n_trials_sig": np.array([4, 0, 3, 3, 2, 0]), "n_trials": 4},
        "CS-": {"response": np.array([0.0, 0.1, 0.1, 0.06, 0.0, 0.0]),
                "p": np.array([0.7, 1e-5, 1e-5, 0.2, 0.9, 0.5]),
                "zscore": np.zeros(6), "auc": np.zeros(6), "n_trials_sig": np.array([0, 4, 3, 0, 0, 0]), "n_trials": 4},
    }
    cols = summarise_cells(per_tone, n_units=6)
    assert cols["cs_plus_selective"].tolist() == [True, False, False, False, False, False]
    assert cols["cs_minus_selective"].tolist() == [False, True, False, False, False, False]
    assert cols["selectivity"].tolist() == ["CS+", "CS-", "both", "none", "none", "none"]
    assert cols["cs_plus_responsive"].tolist() == [True, False, True, True, True, False]
    assert cols["cs_plus_n_trials"].tolist() == [4] * 6
    assert cols["cs_plus_n_trials_sig"].tolist() == [4, 0, 3, 3, 2, 0]
    # one responding trial is not enough, unless the session has a single trial
    one = {k: dict(v) for k, v in per_tone.items()}
    one["CS+"]["n_trials_sig"] = np.array([1, 0, 3, 3, 2, 0])
    assert not summarise_cells(one, n_units=6)["cs_plus_responsive"][0]
    one["CS+"]["n_trials"] = 1
    assert summarise_cells(one, n_units=6)["cs_plus_responsive"][0]
    # DI of unit 3 is 0.25: selective only without the discrimination criterion
    loose = summarise_cells(per_tone, n_units=6, params=ResponseParams(min_discrimination=0.0))
    assert loose["cs_plus_selective"].tolist() == [True, False, False, True, False, False]
    # no CS- trials at all: CS- columns NaN; responsive cells are not called selective
    only_plus = summarise_cells({"CS+": per_tone["CS+"]}, n_units=6)
    assert np.isnan(only_plus["cs_minus_p"]).all() and np.isnan(only_plus["discrimination_index"]).all()
    assert only_plus["cs_plus_responsive"][0] and not only_plus["cs_plus_selective"].any()


def test_params_are_checked():
    with pytest.raises(InputFormatError):
        ResponseParams(alpha=1.5)
    with pytest.raises(InputFormatError):
        ResponseParams(response_start_s=2.0, response_end_s=1.0)
    with pytest.raises(InputFormatError):
        ResponseParams(n_shuffles=3)
