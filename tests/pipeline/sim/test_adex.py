"""Tests of the AdEx neurons (cellsift.pipeline.sim.adex, cellsift.pipeline.sim.spiking)."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.sim.adex import (
    FIRING_CLASSES,
    adex_param_arrays,
    class_rheobase_pa,
    step_response_spike_times,
)
from cellsift.pipeline.sim.spiking import DriveSpec, simulate_spike_counts
from cellsift.schemas import ParameterError


def _cv(isi: np.ndarray) -> float:
    return float(isi.std() / isi.mean())


def test_adex_classes_differ_in_isi() -> None:
    isi = {c: np.diff(step_response_spike_times(c, duration_ms=2000.0, dt_ms=0.5)) for c in FIRING_CLASSES}
    assert all(len(v) >= 10 for v in isi.values())
    assert _cv(isi["tonic"]) < 0.1  # regular
    assert _cv(isi["bursting"]) > 3 * _cv(isi["tonic"]) and _cv(isi["bursting"]) > 0.5
    assert isi["adapting"][-1] > 3 * isi["adapting"][0]  # spike-frequency adaptation
    assert _cv(isi["irregular"]) > 2 * _cv(isi["tonic"])
    steady, pulse = class_rheobase_pa("tonic")
    assert 0 < steady <= 500 and 0 < pulse <= 500


def test_adex_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        adex_param_arrays(["fast-spiking"])
    with pytest.raises(ParameterError):
        class_rheobase_pa("fast-spiking")


def test_spike_counts_follow_input() -> None:
    p = adex_param_arrays(["adapting"] * 2)
    r = class_rheobase_pa("adapting")[1]
    drive = DriveSpec(
        mean_pa=np.array([0.2 * r, 0.2 * r]),
        noise_pa=np.zeros(2),
        noise_tau_ms=np.full(2, 20.0),
        pulse_neuron=np.array([1, 1]),
        pulse_onset_s=np.array([2.0, 7.3]),
        pulse_offset_s=np.array([2.5, 7.8]),
        pulse_amp_pa=np.array([1.0 * r, 1.0 * r]),
    )
    counts = simulate_spike_counts(p, drive, duration_s=10.0, fps=20.0, rng=np.random.default_rng(0))
    assert counts.shape == (2, 200)
    assert counts[0].sum() == 0  # sub-threshold, no noise: silent
    assert counts[1, 40:52].sum() > 0 and counts[1, 146:158].sum() > 0
    assert counts[1, :40].sum() == 0 and counts[1, 60:140].sum() == 0
