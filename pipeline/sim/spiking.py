"""Spike counts of a population of AdEx neurons driven over a whole session.

Each neuron gets a noisy baseline current (an Ornstein-Uhlenbeck process) plus
rectangular input pulses smoothed by a synaptic filter (:class:`DriveSpec`). To keep
a 100 s session fast, :func:`simulate_spike_counts` cuts each neuron's recording into
short segments (2.5 s by default), each preceded by a discarded warm-up (0.5 s, much
longer than any time constant of the model) and simulates all (neuron, segment) pairs
side by side with :func:`~cellsift.pipeline.sim.adex.run_adex`; the Python loop then
runs over one segment's steps only.

Units: mV, ms, pA (as in :mod:`cellsift.pipeline.sim.adex`); times of pulses in s.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from cellsift.pipeline.sim.adex import run_adex
from cellsift.schemas import ParameterError

__all__ = ["DriveSpec", "simulate_spike_counts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriveSpec:
    """Input current of a population of neurons over one recording.

    ``I_n(t) = mean_pa[n] + noise_pa[n] * OU_n(t) + sum of pulses of neuron n``,
    where ``OU_n`` is a unit-variance Ornstein-Uhlenbeck process with time constant
    ``noise_tau_ms[n]`` and every pulse is a rectangular current step smoothed by a
    synaptic low-pass filter of ``syn_tau_ms``.

    Attributes
    ----------
    mean_pa, noise_pa, noise_tau_ms
        Per-neuron baseline (pA), OU SD (pA) and OU time constant (ms), ``(n_neurons,)``.
    pulse_neuron
        Neuron index of each pulse, ``(n_pulses,)`` int.
    pulse_onset_s, pulse_offset_s
        Pulse start and end (s from recording start), ``(n_pulses,)``.
    pulse_amp_pa
        Pulse amplitude (pA), ``(n_pulses,)``.
    syn_tau_ms
        Time constant of the synaptic smoothing of pulses (ms).
    """

    mean_pa: np.ndarray
    noise_pa: np.ndarray
    noise_tau_ms: np.ndarray
    pulse_neuron: np.ndarray
    pulse_onset_s: np.ndarray
    pulse_offset_s: np.ndarray
    pulse_amp_pa: np.ndarray
    syn_tau_ms: float = 10.0

    @property
    def n_neurons(self) -> int:
        """Number of neurons."""
        return int(np.shape(self.mean_pa)[0])


def _render_inputs(
    drive: DriveSpec,
    neuron: np.ndarray,
    start_s: np.ndarray,
    n_samples: int,
    input_dt_ms: float,
    rng: np.random.Generator,
    pulses_by_neuron: list[np.ndarray],
) -> np.ndarray:
    """Input current ``(n_samples, n_traces)`` (pA) of traces starting at ``start_s``."""
    n_traces = neuron.size
    dt_s = input_dt_ms / 1000.0
    # Ornstein-Uhlenbeck noise as an AR(1) process, started in its stationary state
    rho = np.exp(-input_dt_ms / drive.noise_tau_ms[neuron])
    xi = rng.standard_normal((n_samples, n_traces))
    ou = np.empty_like(xi)
    ou[0] = xi[0]
    innov = np.sqrt(1.0 - rho**2)
    for j in range(1, n_samples):  # cheap: n_samples ~ 1e3, vector ops over traces
        ou[j] = rho * ou[j - 1] + innov * xi[j]
    cur = drive.mean_pa[neuron] + drive.noise_pa[neuron] * ou

    # pulses: +amp at onset, -amp at offset, cumulative sum, synaptic low-pass
    delta = np.zeros((n_samples + 1, n_traces))
    any_pulse = False
    end_s = start_s + n_samples * dt_s
    for col in range(n_traces):
        idx = pulses_by_neuron[neuron[col]]
        if idx.size == 0:
            continue
        on = drive.pulse_onset_s[idx]
        off = drive.pulse_offset_s[idx]
        keep = (on < end_s[col]) & (off > start_s[col] - 5 * drive.syn_tau_ms / 1000.0)
        if not keep.any():
            continue
        any_pulse = True
        i_on = np.clip(np.floor((on[keep] - start_s[col]) / dt_s), 0, n_samples).astype(np.int64)
        i_off = np.clip(np.floor((off[keep] - start_s[col]) / dt_s), 0, n_samples).astype(np.int64)
        amp = drive.pulse_amp_pa[idx][keep]
        np.add.at(delta[:, col], i_on, amp)
        np.add.at(delta[:, col], i_off, -amp)
    if any_pulse:
        steps = np.cumsum(delta[:n_samples], axis=0)
        alpha = np.exp(-input_dt_ms / drive.syn_tau_ms)
        steps = lfilter([1.0 - alpha], [1.0, -alpha], steps, axis=0)
        cur += steps
    return cur


def simulate_spike_counts(
    params: dict[str, np.ndarray],
    drive: DriveSpec,
    *,
    duration_s: float,
    fps: float,
    rng: np.random.Generator,
    dt_ms: float = 0.5,
    input_dt_ms: float = 5.0,
    segment_s: float = 2.5,
    warmup_s: float = 0.5,
    max_traces_per_batch: int = 4096,
) -> np.ndarray:
    """Spike counts per imaging frame of a population of AdEx neurons.

    Parameters
    ----------
    params
        Parameter arrays (see :func:`~cellsift.pipeline.sim.adex.adex_param_arrays`), ``(n_neurons,)`` each.
    drive
        Input current of each neuron.
    duration_s
        Recording length (s).
    fps
        Imaging frame rate (Hz); counts are binned into ``ceil(duration_s * fps)`` frames.
    rng
        Random generator (noise of the input).
    dt_ms
        Euler step (ms).
    input_dt_ms
        Resolution of the input current (ms); must be a multiple of ``dt_ms``.
    segment_s
        Length of the independently simulated pieces (s).
    warmup_s
        Discarded simulation before each piece (s), so each piece starts from the
        neuron's steady state rather than from rest.
    max_traces_per_batch
        Upper bound of (neuron, piece) pairs simulated side by side (memory bound).

    Returns
    -------
    numpy.ndarray
        Spike counts, ``(n_neurons, n_frames)`` int32.

    Raises
    ------
    ParameterError
        On inconsistent resolutions or non-positive lengths.
    """
    if duration_s <= 0 or fps <= 0:
        raise ParameterError(f"duration_s and fps must be > 0, got {duration_s}, {fps}", field="duration_s")
    steps_per_sample = int(round(input_dt_ms / dt_ms))
    if steps_per_sample < 1 or not math.isclose(steps_per_sample * dt_ms, input_dt_ms, rel_tol=1e-9):
        raise ParameterError(
            f"input_dt_ms ({input_dt_ms}) must be a multiple of dt_ms ({dt_ms})", field="input_dt_ms"
        )
    n_neurons = drive.n_neurons
    n_frames = int(math.ceil(duration_s * fps - 1e-9))
    counts = np.zeros((n_neurons, n_frames), dtype=np.int32)
    if n_neurons == 0:
        return counts

    dt_s = input_dt_ms / 1000.0
    n_seg = int(math.ceil(duration_s / segment_s - 1e-9))
    n_core = int(round(segment_s / dt_s))
    n_warm = int(round(warmup_s / dt_s))
    n_samples = n_core + n_warm

    order = np.argsort(drive.pulse_neuron, kind="stable")
    bounds = np.searchsorted(drive.pulse_neuron[order], np.arange(n_neurons + 1))
    pulses_by_neuron = [order[bounds[n] : bounds[n + 1]] for n in range(n_neurons)]

    grid_n, grid_s = np.meshgrid(np.arange(n_neurons), np.arange(n_seg), indexing="ij")
    pairs_n = grid_n.ravel()
    pairs_s = grid_s.ravel()
    batch = max(1, int(max_traces_per_batch))
    for b0 in range(0, pairs_n.size, batch):
        neuron = pairs_n[b0 : b0 + batch]
        seg = pairs_s[b0 : b0 + batch]
        start_s = seg * segment_s - warmup_s
        cur = _render_inputs(drive, neuron, start_s, n_samples, input_dt_ms, rng, pulses_by_neuron)
        p = {k: v[neuron] for k, v in params.items()}
        # start near rest with a little spread; the warm-up forgets the start
        v0 = p["e_l_mv"] + rng.normal(0.0, 1.0, neuron.size)
        cnt = run_adex(p, cur, dt_ms=dt_ms, steps_per_sample=steps_per_sample, v0_mv=v0)
        cnt = cnt[n_warm:]
        j, col = np.nonzero(cnt)
        if j.size == 0:
            continue
        t_mid = seg[col] * segment_s + (j + 0.5) * dt_s
        frame = np.floor(t_mid * fps).astype(np.int64)
        ok = frame < n_frames
        np.add.at(counts, (neuron[col[ok]], frame[ok]), cnt[j[ok], col[ok]])
    log.debug("simulated %d AdEx neurons x %d segments", n_neurons, n_seg)
    return counts
