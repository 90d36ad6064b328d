"""The per-cell circular-shift test, Benjamini-Hochberg q-values and the selectivity rule."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.analysis.responses import ResponseParams, trial_windows
from cellsift.pipeline.analysis.selectivity import (
    benjamini_hochberg,
    circular_shift_test,
    discrimination_index,
    draw_shifts,
    summarise_cells,
)
from cellsift.schemas import InputFormatError
from tests.pipeline.analysis.test_responses import protocol


def _calcium(
    rng: np.random.Generator, n: int, onsets_frames: list[int], amp: float, reliability: float = 1.0
) -> np.ndarray:
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
    x = np.stack(
        [_calcium(rng, t.size, plus["onset_frame"].tolist(), 0.15)]
        + [_calcium(rng, t.size, [], 0.0) for _ in range(n_null)]
    )
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
        "CS+": {
            "response": np.array([0.1, 0.0, 0.1, 0.1, -0.1, 0.0]),
            "p": np.array([1e-5, 0.8, 1e-5, 1e-5, 1e-5, 0.6]),
            "zscore": np.zeros(6),
            "auc": np.zeros(6),
            "n_trials_sig": np.array([4, 0, 3, 3, 2, 0]),
            "n_trials": 4,
        },
        "CS-": {
            "response": np.array([0.0, 0.1, 0.1, 0.06, 0.0, 0.0]),
            "p": np.array([0.7, 1e-5, 1e-5, 0.2, 0.9, 0.5]),
            "zscore": np.zeros(6),
            "auc": np.zeros(6),
            "n_trials_sig": np.array([0, 4, 3, 0, 0, 0]),
            "n_trials": 4,
        },
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
