"""ΔF/F: running-percentile baseline, resting fluorescence from the movie, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.analysis.dff import (
    DffParams,
    compute_dff,
    movie_baseline_image,
    reference_fluorescence,
    robust_noise_sd_rows,
    running_percentile,
)
from cellsift.schemas import InputFormatError, ParameterError

FPS = 20.0


def _blob(h: int, w: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    g[g < 0.05] = 0
    return g


def test_running_percentile_tracks_slow_drift_and_ignores_transients():
    n = 3000
    t = np.arange(n) / FPS
    drift = 5.0 + 2.0 * t / t[-1]  # slow rise of the baseline (e.g. neuropil)
    x = drift.copy()
    for on in range(100, n, 150):  # transients 20 % of the time
        x[on : on + 30] += 10.0
    f0 = running_percentile(x[None], window=int(30 * FPS), q=10)[0]
    assert f0.shape == (n,)
    # a percentile of a centred window lags a ramp by ~0.8 half-windows (0.16 here), never
    # near the transient level (+10)
    assert np.max(np.abs(f0 - drift)) < 0.25
    # step interpolation agrees with the exact running percentile where windows are whole
    exact = np.array([np.percentile(x[max(0, c - 300) : c + 301], 10) for c in range(300, n - 300, 97)])
    approx = running_percentile(x[None], window=600, q=10, step=1)[0][300 : n - 300 : 97]
    assert np.allclose(exact, approx)


def test_short_traces_and_constant_rows():
    f0 = running_percentile(np.ones((2, 5)), window=600, q=10)
    assert np.array_equal(f0, np.ones((2, 5)))
    assert running_percentile(np.zeros((1, 0)), window=10, q=10).shape == (1, 0)
    assert np.all(robust_noise_sd_rows(np.ones((3, 50))) == 0)


def test_movie_baseline_image_is_the_resting_level():
    rng = np.random.default_rng(0)
    n, h, w = 1000, 12, 10
    rest = rng.uniform(80, 120, (h, w))
    movie = np.repeat(rest[None], n, axis=0) + rng.normal(0, 1.0, (n, h, w))
    active = rng.random((n, h, w)) < 0.05  # 5 % of frames brighter: barely moves the 10th percentile
    movie[active] += 40
    img = movie_baseline_image(movie, q=10, max_chunks=4, chunk_frames=100)
    assert img.shape == (h, w)
    assert np.max(np.abs(img - (rest - 1.28))) < 0.6  # 10th percentile of N(rest, 1)


def test_reference_fluorescence_projects_in_c_units():
    h, w = 30, 30
    a1, a2 = _blob(h, w, 10, 10, 3), 2.0 * _blob(h, w, 20, 18, 2)
    image = np.full((h, w), 50.0)
    image += 7.0 * a1  # the cell's own resting fluorescence, in C units
    f = reference_fluorescence(np.stack([a1, a2, np.zeros((h, w))]), image)
    # a.(50 + 7 a) / a.a = 50 sum(a) / a.a + 7
    assert f[0] == pytest.approx(50 * a1.sum() / (a1 * a1).sum() + 7.0)
    assert f[1] == pytest.approx(50 * a2.sum() / (a2 * a2).sum())
    assert np.isnan(f[2])


def test_compute_dff_recovers_a_known_dff():
    n = 2400
    t = np.arange(n) / FPS
    f_ref = np.array([400.0, 250.0])
    true_dff = np.zeros((2, n))
    for on in (300, 900, 1500):
        true_dff[:, on : on + 60] += 0.2 * np.exp(-np.arange(60) / 15.0)
    drift = np.stack([3.0 + 0.001 * t, -2.0 + 0.0 * t])  # CNMF-E baseline near zero, drifting
    c_raw = drift + true_dff * f_ref[:, None]
    dff, f0, denom, methods = compute_dff(c_raw, fps=FPS, f_ref=f_ref, method="movie_p10")
    assert dff.dtype == np.float32 and dff.shape == (2, n)
    assert methods == ["movie_p10", "movie_p10"] and np.array_equal(denom, f_ref)
    assert np.max(np.abs(dff - true_dff)) < 1e-3
    assert np.allclose(f0, drift, atol=0.02)


def test_compute_dff_fallbacks_and_errors():
    rng = np.random.default_rng(1)
    c_raw = rng.normal(0, 1, (3, 500))
    c_raw[:, 200:220] += 20
    dff, _, denom, methods = compute_dff(
        c_raw, fps=FPS, f_ref=np.array([100.0, -5.0, np.nan]), method="max_proj"
    )
    assert methods == ["max_proj", "c_raw_range", "c_raw_range"]
    assert denom[0] == 100.0 and denom[1] > 10 and denom[2] > 10  # p99 - p10 of the trace
    dff, _, _, methods = compute_dff(c_raw, fps=FPS, f_ref=None, method="movie_p10")
    assert set(methods) == {"c_raw_range"} and np.all(dff.max(axis=1) > 0.8)
    bad = c_raw.copy()
    bad[0, 3] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        compute_dff(bad, fps=FPS, f_ref=None, method="")
    with pytest.raises(InputFormatError, match="f_ref"):
        compute_dff(c_raw, fps=FPS, f_ref=np.ones(2), method="movie_p10")
    with pytest.raises(ParameterError):
        DffParams(baseline_percentile=120)
