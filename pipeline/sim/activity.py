"""Behaviour protocol and neural activity of one simulated session.

Every neuron is an AdEx neuron (:mod:`cellsift.pipeline.sim.adex`,
:mod:`cellsift.pipeline.sim.spiking`) driven by a noisy
sub-threshold current, spontaneous up-states (shared within assemblies), tone- and
shock-evoked input; spikes become calcium through a double-exponential indicator
kernel and a saturating dF/F. The session also gets its background dynamics, rigid
brain motion and photobleaching here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage
from scipy.signal import lfilter

from cellsift.pipeline.sim.adex import adex_param_arrays, class_rheobase_pa
from cellsift.pipeline.sim.population import Neuron, Population
from cellsift.pipeline.sim.spiking import DriveSpec, simulate_spike_counts

__all__ = [
    "TONE_TYPES",
    "STAGE_TONE_GAIN",
    "Protocol",
    "make_protocol",
    "calcium_kernel_ar",
    "Activity",
    "simulate_activity",
]

log = logging.getLogger(__name__)

TONE_TYPES: Final = ("CS+", "CS-")

#: Gain of the tone-evoked input by stage and tone: CS+ responses are strongest in
#: conditioning and fade in extinction; CS- (the safety cue) gains in safety learning.
STAGE_TONE_GAIN: Final[dict[str, dict[str, float]]] = {
    "conditioning": {"CS+": 1.0, "CS-": 0.55},
    "safety": {"CS+": 0.8, "CS-": 1.0},
    "extinction": {"CS+": 0.5, "CS-": 0.75},
}


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class Protocol:
    """Behavioural events of a session, sorted by onset.

    Attributes
    ----------
    duration_s
        Session length (s).
    names
        Event name per row: ``"CS+"``, ``"CS-"`` or ``"shock"``.
    onset_s, offset_s
        Event start and end (s from recording start).
    """

    duration_s: float
    names: tuple[str, ...]
    onset_s: np.ndarray
    offset_s: np.ndarray

    def of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Onsets and offsets (s) of the events called ``name``."""
        m = np.array([n == name for n in self.names], dtype=bool)
        return self.onset_s[m], self.offset_s[m]


def make_protocol(rng: np.random.Generator, *, duration_s: float, shocks: bool) -> Protocol:
    """A fear-conditioning-like tone protocol scaled to the session length.

    A baseline (12 % of the session, at least 2 s) is followed by pairs of CS+ and
    CS- tones in pseudo-random order (never three of a kind in a row) separated by
    randomised inter-trial intervals. Tones last 4.5 % of the session (2-30 s; 4.5 s
    at 100 s); with ``shocks`` every CS+ co-terminates with a shock of 1 s (at most
    half the tone).

    Parameters
    ----------
    rng
        Random generator.
    duration_s
        Session length (s).
    shocks
        Whether CS+ tones are paired with shocks (conditioning).

    Returns
    -------
    Protocol
        The events; may hold no tone at all for sessions shorter than about 10 s.
    """
    tone_s = float(np.clip(0.045 * duration_s, 2.0, 30.0))
    baseline_s = max(2.0, 0.12 * duration_s)
    tail_s = max(1.0, 0.03 * duration_s)
    mean_iti = 1.2 * tone_s
    avail = duration_s - baseline_s - tail_s
    n_pairs = int(avail // (2 * (tone_s + mean_iti)))
    if n_pairs < 1 and avail >= 2 * tone_s + 0.5:
        n_pairs = 1
    names: list[str] = []
    on: list[float] = []
    off: list[float] = []
    if n_pairs >= 1:
        order: list[str] = []
        for _ in range(n_pairs):
            pair = ["CS+", "CS-"] if rng.random() < 0.5 else ["CS-", "CS+"]
            if len(order) >= 2 and order[-1] == order[-2] == pair[0]:
                pair.reverse()
            order.extend(pair)
        n = len(order)
        gaps = rng.uniform(0.7, 1.3, n)  # ITI before each tone after the first one
        gaps[0] = 0.0
        slack = avail - n * tone_s
        gaps *= slack / max(gaps.sum(), 1e-9) if gaps.sum() > 0 else 0.0
        t = baseline_s
        for k, name in enumerate(order):
            t += gaps[k]
            names.append(name)
            on.append(t)
            off.append(t + tone_s)
            if shocks and name == "CS+":
                sh = min(1.0, tone_s / 2.0)
                names.append("shock")
                on.append(t + tone_s - sh)
                off.append(t + tone_s)
            t += tone_s
    on_a = np.round(np.asarray(on, dtype=np.float64), 3)
    off_a = np.round(np.asarray(off, dtype=np.float64), 3)
    idx = (
        np.lexsort((np.array([n == "shock" for n in names], dtype=int), on_a)) if names else np.zeros(0, int)
    )
    return Protocol(
        duration_s=float(duration_s),
        names=tuple(names[i] for i in idx),
        onset_s=on_a[idx],
        offset_s=off_a[idx],
    )


# --------------------------------------------------------------------------- activity


def calcium_kernel_ar(
    tau_rise_s: float, tau_decay_s: float, fps: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """IIR filter of a double-exponential calcium kernel sampled at the frame rate.

    A spike at a uniformly random time within frame ``t`` gives, on average, the kernel
    ``exp(-t/tau_decay) - exp(-t/tau_rise)`` evaluated half a frame later; this is an
    AR(2) process (the CNMF model) with a two-tap numerator.

    Parameters
    ----------
    tau_rise_s, tau_decay_s
        Rise and decay time constants (s), ``tau_rise_s < tau_decay_s``.
    fps
        Frame rate (Hz).

    Returns
    -------
    tuple
        ``(b, a, peak)`` for :func:`scipy.signal.lfilter`; divide by ``peak`` to have a
        single spike peak at 1.
    """
    d = math.exp(-1.0 / (tau_decay_s * fps))
    r = math.exp(-1.0 / (tau_rise_s * fps))
    sd, sr = math.sqrt(d), math.sqrt(r)
    b = np.array([sd - sr, sr * d - sd * r])
    a = np.array([1.0, -(d + r), d * r])
    k = np.arange(0, int(10 * tau_decay_s * fps) + 5)
    kern = d ** (k + 0.5) - r ** (k + 0.5)
    return b, a, float(kern.max())


@dataclass
class Activity:
    """Activity of one session (all neurons of the population).

    Attributes
    ----------
    spikes
        Spike counts per frame, ``(n_neurons, n_frames)`` int32.
    calcium
        Calcium level in spike units (one isolated spike peaks at 1), ``(n_neurons, n_frames)``.
    dff
        dF/F of each soma, after saturation, ``(n_neurons, n_frames)`` float32.
    silent
        Neurons kept silent this session, ``(n_neurons,)`` bool.
    motion_px
        Rigid brain shift per frame ``(n_frames, 2)`` as (dy, dx) (px).
    bleach
        Photobleaching factor per frame (1 at the start), ``(n_frames,)``.
    population
        Mean dF/F of the in-focus neurons, smoothed, ``(n_frames,)``.
    bg_temporal
        Intensity factor of each background blob and of the neuropil (last row),
        ``(n_bg + 1, n_frames)``, each fluctuating around 1.
    """

    spikes: np.ndarray
    calcium: np.ndarray
    dff: np.ndarray
    silent: np.ndarray
    motion_px: np.ndarray
    bleach: np.ndarray
    population: np.ndarray
    bg_temporal: np.ndarray


def _ou(rng: np.random.Generator, n: int, tau_frames: float) -> np.ndarray:
    """Unit-variance Ornstein-Uhlenbeck process sampled every frame."""
    rho = math.exp(-1.0 / max(tau_frames, 1e-6))
    x = rng.standard_normal(n) * math.sqrt(1.0 - rho**2)
    x[0] = rng.standard_normal()
    return lfilter([1.0], [1.0, -rho], x)


def _motion(rng: np.random.Generator, n_frames: int, fps: float, motion_px: float) -> np.ndarray:
    """Rigid brain motion: smooth jitter plus occasional jumps that relax back."""
    if motion_px <= 0:
        return np.zeros((n_frames, 2))
    out = np.empty((n_frames, 2))
    t = np.arange(n_frames) / fps
    n_jumps = rng.poisson(n_frames / fps / 15.0)
    j_t = rng.uniform(0, n_frames / fps, n_jumps)
    j_tau = rng.uniform(0.3, 2.5, n_jumps)
    for ax in range(2):
        x = 0.5 * motion_px * _ou(rng, n_frames, 0.4 * fps)
        amp = rng.normal(0.0, 2.0 * motion_px, n_jumps)
        for tj, tau, a in zip(j_t, j_tau, amp, strict=True):
            m = t >= tj
            x[m] += a * np.exp(-(t[m] - tj) / tau)
        out[:, ax] = x
    return out


class _Pulses:
    """Input pulses of a session, collected neuron by neuron.

    Parameters
    ----------
    r_pulse
        Pulse rheobase of each neuron (pA), ``(n_neurons,)``.
    mean_pa
        Baseline current of each neuron (pA), ``(n_neurons,)``.
    """

    def __init__(self, r_pulse: np.ndarray, mean_pa: np.ndarray) -> None:
        self.r_pulse = r_pulse
        self.mean_pa = mean_pa
        self.neuron: list[np.ndarray] = []
        self.onset: list[np.ndarray] = []
        self.offset: list[np.ndarray] = []
        self.amp: list[np.ndarray] = []

    def add(self, idx: int | np.ndarray, on: np.ndarray, off: np.ndarray, level: np.ndarray) -> None:
        """Add pulses of neuron(s) ``idx`` from ``on`` to ``off`` (s) reaching ``level`` x rheobase."""
        on = np.atleast_1d(on).astype(np.float64)
        if on.size == 0:
            return
        idx_a = np.broadcast_to(np.asarray(idx), on.shape).astype(np.int64)
        self.neuron.append(idx_a)
        self.onset.append(on)
        self.offset.append(np.maximum(np.atleast_1d(off).astype(np.float64), on + 0.01))
        # pulse amplitude so that the total input reaches `level` x pulse rheobase
        self.amp.append(np.maximum(np.atleast_1d(level) * self.r_pulse[idx_a] - self.mean_pa[idx_a], 0.0))

    def drive(self, *, noise_pa: np.ndarray, noise_tau_ms: np.ndarray) -> DriveSpec:
        """The neurons' input: baseline, OU noise and the pulses collected."""
        return DriveSpec(
            mean_pa=self.mean_pa,
            noise_pa=noise_pa,
            noise_tau_ms=noise_tau_ms,
            pulse_neuron=np.concatenate(self.neuron) if self.neuron else np.zeros(0, np.int64),
            pulse_onset_s=np.concatenate(self.onset) if self.onset else np.zeros(0),
            pulse_offset_s=np.concatenate(self.offset) if self.offset else np.zeros(0),
            pulse_amp_pa=np.concatenate(self.amp) if self.amp else np.zeros(0),
        )


def _neuron_pulses(
    pulses: _Pulses,
    rng: np.random.Generator,
    k: int,
    nr: Neuron,
    protocol: Protocol,
    gains: dict[str, float],
    duration_s: float,
) -> None:
    """Spontaneous up-states, tone- and shock-evoked input of neuron ``k``."""
    m = rng.poisson(nr.event_rate_hz * duration_s)
    on = rng.uniform(-0.5, duration_s, m)
    dur = np.clip(rng.lognormal(np.log(0.25), 0.55, m), 0.06, 1.2)
    level = np.clip(rng.lognormal(np.log(1.2), 0.2, m), 1.0, 3.0)
    pulses.add(k, on, on + dur, level)
    prefs = {"CS+": ("CS+",), "CS-": ("CS-",), "both": TONE_TYPES}.get(nr.tone_selectivity, ())
    for tone in prefs:
        on, off = protocol.of(tone)
        if on.size == 0:
            continue
        hit = rng.random(on.size) < nr.tone_reliability
        lat = rng.uniform(0.05, 0.3, on.size)
        dur = rng.uniform(0.25, 0.9, on.size)
        level = nr.tone_gain * gains.get(tone, 1.0) * rng.lognormal(0.0, 0.2, on.size)
        pulses.add(k, (on + lat)[hit], (on + lat + dur)[hit], level[hit])
        # raised up-state rate for the rest of the tone
        for a, b_ in zip(on, off, strict=True):
            m = rng.poisson(4.0 * nr.event_rate_hz * (b_ - a) * gains.get(tone, 1.0) + 0.3)
            t0 = rng.uniform(a, b_, m)
            pulses.add(
                k,
                t0,
                t0 + np.clip(rng.lognormal(np.log(0.2), 0.5, m), 0.05, 0.8),
                np.clip(rng.lognormal(np.log(1.3), 0.2, m), 1.0, 3.0),
            )
    sh_on, sh_off = protocol.of("shock")
    if sh_on.size:
        if nr.shock_responsive:
            hit = rng.random(sh_on.size) < 0.9
            pulses.add(k, sh_on[hit] + 0.03, sh_off[hit], rng.uniform(1.6, 3.0, sh_on.size)[hit])
        elif rng.random() < 0.2:
            pulses.add(k, sh_on + 0.05, sh_on + 0.4, rng.uniform(0.9, 1.3, sh_on.size))


def _assembly_pulses(
    pulses: _Pulses, rng: np.random.Generator, neurons: tuple[Neuron, ...], duration_s: float
) -> None:
    """Events shared by the members of each assembly (each member joins 80 % of them)."""
    asm_ids = sorted({nr.assembly for nr in neurons if nr.assembly >= 0})
    for a_id in asm_ids:
        members = [nr.index for nr in neurons if nr.assembly == a_id]
        m = rng.poisson(rng.uniform(0.03, 0.12) * duration_s)
        on = rng.uniform(0, duration_s, m)
        dur = np.clip(rng.lognormal(np.log(0.3), 0.4, m), 0.08, 1.0)
        for k in members:
            hit = rng.random(m) < 0.8
            jit = rng.normal(0.0, 0.04, m)
            pulses.add(
                k,
                (on + jit)[hit],
                (on + jit + dur)[hit],
                np.clip(rng.lognormal(np.log(1.4), 0.2, m), 1.0, 3.0)[hit],
            )


def _calcium(
    neurons: tuple[Neuron, ...], spikes: np.ndarray, n_frames: int, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Calcium (spike units) and saturating dF/F (float32) of each neuron, ``(n, n_frames)``."""
    n = len(neurons)
    calcium = np.zeros((n, n_frames))
    dff = np.zeros((n, n_frames), dtype=np.float32)
    for k, nr in enumerate(neurons):
        if not spikes[k].any():
            continue
        b, a, peak = calcium_kernel_ar(nr.tau_rise_s, nr.tau_decay_s, fps)
        c = lfilter(b, a, spikes[k].astype(np.float64)) / peak
        calcium[k] = c
        dff[k] = nr.dff_per_spike * c / (1.0 + c / nr.saturation_spikes)
    return calcium, dff


def _background_dynamics(
    rng: np.random.Generator, pop: Population, dff: np.ndarray, n_frames: int, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed population activity ``(n_frames,)`` and background factors ``(n_bg + 1, n_frames)``."""
    inf = slice(0, pop.n_in_focus)
    popact = dff[inf].mean(axis=0) if pop.n_in_focus else np.zeros(n_frames)
    popact = ndimage.gaussian_filter1d(popact.astype(np.float64), 0.3 * fps)
    n_bg = len(pop.bg_blobs)
    bg_t = np.empty((n_bg + 1, n_frames))
    for k in range(n_bg):
        bg_t[k] = (
            1.0 + 0.035 * _ou(rng, n_frames, rng.uniform(5.0, 15.0) * fps) + 0.3 * (popact - popact.mean())
        )
    bg_t[n_bg] = 1.0 + 0.03 * _ou(rng, n_frames, 3.0 * fps) + 1.5 * (popact - popact.mean())
    return popact, bg_t


def simulate_activity(
    pop: Population,
    protocol: Protocol,
    stage: str,
    *,
    n_frames: int,
    fps: float,
    motion_px: float,
    rng: np.random.Generator,
) -> Activity:
    """Spikes, calcium and background dynamics of one session.

    Every neuron is an AdEx neuron of its firing class driven by a noisy sub-threshold
    baseline current, by spontaneous depolarising events (up-states, shared within an
    assembly), by tone-evoked input (tone-selective neurons, stage-dependent gain,
    :data:`STAGE_TONE_GAIN`) and by shock-evoked input. Spikes are binned to frames and
    turned into calcium with each neuron's double-exponential kernel and a saturating
    dF/F nonlinearity.

    Parameters
    ----------
    pop
        The animal's population.
    protocol
        The session's behavioural events.
    stage
        Stage name (sets the tone gains; unknown stages get gain 1).
    n_frames
        Number of frames.
    fps
        Frame rate (Hz).
    motion_px
        SD scale of the rigid brain motion (px).
    rng
        The session's random generator.

    Returns
    -------
    Activity
        The session's activity.
    """
    duration_s = n_frames / fps
    neurons = pop.neurons
    n = len(neurons)
    classes = [nr.firing_class for nr in neurons]
    params = adex_param_arrays(classes, rng=rng, jitter=0.08)
    r_steady = np.array([class_rheobase_pa(c)[0] for c in classes])
    r_pulse = np.array([class_rheobase_pa(c)[1] for c in classes])
    mean_pa = rng.uniform(0.15, 0.5, n) * r_steady
    noise_pa = rng.uniform(0.1, 0.25, n) * r_steady

    silent = np.zeros(n, dtype=bool)
    silent[: pop.n_in_focus] = rng.random(pop.n_in_focus) < 0.08

    pulses = _Pulses(r_pulse, mean_pa)
    gains = STAGE_TONE_GAIN.get(stage, {"CS+": 1.0, "CS-": 1.0})
    for k, nr in enumerate(neurons):
        _neuron_pulses(pulses, rng, k, nr, protocol, gains, duration_s)
    _assembly_pulses(pulses, rng, neurons, duration_s)
    drive = pulses.drive(noise_pa=noise_pa, noise_tau_ms=rng.uniform(10.0, 30.0, n))
    spikes = simulate_spike_counts(params, drive, duration_s=duration_s, fps=fps, rng=rng)[:, :n_frames]
    spikes[silent] = 0
    calcium, dff = _calcium(neurons, spikes, n_frames, fps)
    popact, bg_t = _background_dynamics(rng, pop, dff, n_frames, fps)

    t = np.arange(n_frames) / fps
    tau_b = rng.uniform(300.0, 900.0)
    bleach = 1.0 - rng.uniform(0.15, 0.3) * (1.0 - np.exp(-t / tau_b))
    return Activity(
        spikes=spikes.astype(np.int32),
        calcium=calcium,
        dff=dff,
        silent=silent,
        motion_px=_motion(rng, n_frames, fps, motion_px),
        bleach=bleach,
        population=popact,
        bg_temporal=bg_t,
    )
