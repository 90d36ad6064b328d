"""Tests of the calcium kernel and the simulator's deconvolution."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.sim.activity import calcium_kernel_ar
from cellsift.pipeline.sim.deconvolution import deconvolve


def test_calcium_kernel_and_deconvolution() -> None:
    fps = 20.0
    b, a, peak = calcium_kernel_ar(0.07, 0.6, fps)
    spikes = np.zeros(600)
    spikes[[50, 200, 205, 400]] = [1, 2, 1, 3]
    from scipy.signal import lfilter

    c_true = lfilter(b, a, spikes) / peak
    assert c_true.max() == pytest.approx(3.0 * c_true[50:120].max(), rel=0.2)
    c_raw = 10.0 * c_true + np.random.default_rng(0).normal(0.0, 1.0, 600)
    c, s = deconvolve(c_raw[None], [(0.07, 0.6)], fps=fps)
    assert c.shape == s.shape == (1, 600) and np.all(c >= 0) and np.all(s >= 0)
    assert np.corrcoef(c[0], c_true)[0, 1] > 0.9
    assert s[0, 45:56].sum() > 0 and s[0, 100:190].sum() == 0
