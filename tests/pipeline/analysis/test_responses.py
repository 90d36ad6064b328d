"""Trial windows and per-trial statistics (the per-cell test and selectivity: test_selectivity.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cellsift.pipeline.analysis.responses import ResponseParams, trial_statistics, trial_windows
from cellsift.schemas import ParameterError

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
    st = trial_statistics(
        np.ones((1, t.size)), time_s=t, windows=trial_windows(ev, time_s=t), noise_sd=np.ones(1)
    )
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
    ref = stats.mannwhitneyu(
        x[1, first.response_start : first.response_stop], x[1, first.baseline_start : first.baseline_stop]
    ).pvalue
    assert st["p_value"][1, 0] == pytest.approx(ref)


def test_params_are_checked():
    with pytest.raises(ParameterError):
        ResponseParams(alpha=1.5)
    with pytest.raises(ParameterError):
        ResponseParams(response_start_s=2.0, response_end_s=1.0)
    with pytest.raises(ParameterError):
        ResponseParams(n_shuffles=3)
