"""Tests of transient detection on noisy traces."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cellsift.pipeline.stages.transients import (
    TransientParams,
    TransientResult,
    detect_all,
    detect_transients,
    robust_noise_sd,
)
from cellsift.schemas.errors import InputFormatError, ParameterError

FPS = 20.0
TAU_RISE, TAU_DECAY = 0.1, 0.8  # s


def double_exp(n_frames: int, onset_s: float, amp: float) -> np.ndarray:
    t = np.arange(n_frames) / FPS - onset_s
    s = np.clip(t, 0, None)
    y = np.where(t > 0, np.exp(-s / TAU_DECAY) - np.exp(-s / TAU_RISE), 0.0)
    t_peak = TAU_RISE * TAU_DECAY / (TAU_DECAY - TAU_RISE) * np.log(TAU_DECAY / TAU_RISE)
    y_peak = np.exp(-t_peak / TAU_DECAY) - np.exp(-t_peak / TAU_RISE)
    return amp * y / y_peak


def peak_frame(onset_s: float) -> int:
    t_peak = TAU_RISE * TAU_DECAY / (TAU_DECAY - TAU_RISE) * np.log(TAU_DECAY / TAU_RISE)
    return int(round((onset_s + t_peak) * FPS))


ONSETS = (20.0, 80.0, 150.0, 250.0)  # s
AMPS = (6.0, 15.0, 9.0, 24.0)  # in noise SDs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_four_transients_found_strongest_first(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, sd = 6000, 0.5
    trace = 10.0 + rng.normal(0, sd, n)
    for onset, amp in zip(ONSETS, AMPS, strict=True):
        trace += double_exp(n, onset, amp * sd)
    res = detect_transients(trace, fps=FPS)
    assert res.n_transients == 4
    expected = [peak_frame(ONSETS[i]) for i in np.argsort(AMPS)[::-1]]
    assert res.peak_frames.dtype == np.int64
    assert np.all(np.abs(res.peak_frames - expected) <= 3), (res.peak_frames, expected)
    assert np.all(np.diff(res.peak_amplitudes) < 0)
    assert res.noise_sd == pytest.approx(sd, rel=0.15)
    assert res.baseline == pytest.approx(10.0, abs=0.2)
    assert res.peak_to_noise == pytest.approx(24.0, rel=0.25)
    assert res.skewness > 1.0


def test_k_peaks_caps_returned_peaks_not_count() -> None:
    rng = np.random.default_rng(3)
    n = 8000
    trace = rng.normal(0, 1.0, n)
    onsets = np.arange(10, 390, 20.0)
    for i, onset in enumerate(onsets):
        trace += double_exp(n, onset, 8.0 + i)
    res = detect_transients(trace, fps=FPS, params=TransientParams(k_peaks=3))
    assert res.n_transients == len(onsets)
    assert res.peak_frames.size == 3
    # the three largest were injected last
    assert sorted(res.peak_frames) == pytest.approx([peak_frame(o) for o in onsets[-3:]], abs=3)


def test_min_separation_merges_close_peaks() -> None:
    n = 4000
    trace = np.random.default_rng(4).normal(0, 1.0, n)
    trace += double_exp(n, 50.0, 20.0) + double_exp(n, 51.0, 15.0)  # 1 s apart
    near = detect_transients(trace, fps=FPS, params=TransientParams(min_separation_s=0.5))
    far = detect_transients(trace, fps=FPS, params=TransientParams(min_separation_s=3.0))
    assert near.n_transients == 2
    assert far.n_transients == 1


@pytest.mark.parametrize("seed", range(5))
def test_noise_only_gives_no_transient_but_one_peak(seed: int) -> None:
    trace = np.random.default_rng(seed).normal(5.0, 2.0, 18000)
    res = detect_transients(trace, fps=30.0)
    assert res.n_transients == 0
    assert res.peak_frames.shape == (1,)
    assert 0 <= res.peak_frames[0] < trace.size
    assert res.noise_sd == pytest.approx(2.0, rel=0.1)
    assert res.peak_to_noise < 3.0


def test_slow_fluctuations_are_not_transients() -> None:
    rng = np.random.default_rng(5)
    n = 12000
    t = np.arange(n) / FPS
    # fast noise SD 0.2, plus slow (0.2 Hz) wandering of amplitude 2
    trace = rng.normal(0, 0.2, n) + 2.0 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6))
    res = detect_transients(trace, fps=FPS)
    assert res.n_transients == 0


@pytest.mark.parametrize("trace", [np.zeros(500), np.full(500, 7.5), np.zeros(1), np.zeros(2)])
def test_flat_traces_are_nan_free(trace: np.ndarray) -> None:
    res = detect_transients(trace, fps=FPS)
    values = [res.noise_sd, res.baseline, res.peak_to_noise, res.skewness, *res.peak_amplitudes]
    assert np.all(np.isfinite(values))
    assert res.n_transients == 0 and res.peak_frames.size == 1
    assert res.noise_sd == 0 and res.peak_to_noise == 0 and res.skewness == 0
    assert res.baseline == pytest.approx(trace[0])


def test_empty_trace() -> None:
    res = detect_transients(np.zeros(0), fps=FPS)
    assert res.peak_frames.size == 0 and res.n_transients == 0


def test_robust_noise_sd_ignores_transients() -> None:
    rng = np.random.default_rng(6)
    n = 10000
    clean = rng.normal(0, 1.0, n)
    spiky = clean + sum(double_exp(n, o, 30.0) for o in (50.0, 200.0, 350.0))
    assert robust_noise_sd(clean) == pytest.approx(1.0, rel=0.05)
    assert robust_noise_sd(spiky) == pytest.approx(robust_noise_sd(clean), rel=0.05)
    # quantised, mostly constant trace: MAD 0 falls back to the SD of differences
    sparse = np.zeros(1000)
    sparse[::100] = 1.0
    assert robust_noise_sd(sparse) > 0


def test_detect_all_matches_single() -> None:
    rng = np.random.default_rng(7)
    C = rng.normal(0, 1, (4, 3000))
    C[2] += double_exp(3000, 60.0, 20.0)
    out = detect_all(C, fps=FPS)
    assert len(out) == 4 and all(isinstance(r, TransientResult) for r in out)
    assert out[2].n_transients == 1
    single = detect_transients(C[2], fps=FPS)
    np.testing.assert_array_equal(out[2].peak_frames, single.peak_frames)


def test_bad_input_raises() -> None:
    with pytest.raises(InputFormatError):
        detect_transients(np.zeros((2, 3)), fps=FPS)
    with pytest.raises(InputFormatError):
        detect_transients(np.array([0.0, np.nan, 1.0]), fps=FPS)
    with pytest.raises(InputFormatError):
        detect_transients(np.zeros(10), fps=0.0)
    with pytest.raises(InputFormatError, match="unit index 1"):
        detect_all(np.array([[0.0, 1.0], [np.inf, 0.0]]), fps=FPS)
    with pytest.raises(ParameterError):
        TransientParams(k_peaks=0)


def test_params_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TransientParams().k_peaks = 3  # type: ignore[misc]
