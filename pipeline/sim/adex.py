"""AdEx spiking neurons for the simulated demo cohort.

The adaptive exponential integrate-and-fire model (Brette & Gerstner 2005) is

.. math::

    C \\frac{dV}{dt} = -g_L (V - E_L) + g_L \\Delta_T e^{(V - V_T)/\\Delta_T} - w + I(t)

    \\tau_w \\frac{dw}{dt} = a (V - E_L) - w

with the reset ``V -> V_r``, ``w -> w + b`` when ``V`` crosses ``V_peak``. The four
firing classes use the parameter sets of Naud et al. (2008, *Biol. Cybern.* 99:335,
Table 1), the sets the AdEx seed report works from: tonic, adapting, (regular)
bursting and irregular spiking.

Units throughout: mV, ms, nS, pA and pF (so pA / pF = mV / ms and nS * mV = pA).

Integration is forward Euler at ``dt_ms`` (0.5 ms by default), vectorised across
*traces* with numpy. A population driven over a whole session is simulated by
:mod:`cellsift.pipeline.sim.spiking`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from typing import Final

import numpy as np

from cellsift.schemas import ParameterError

__all__ = [
    "FIRING_CLASSES",
    "AdExParams",
    "ADEX_CLASS_PARAMS",
    "adex_param_arrays",
    "run_adex",
    "step_response_spike_times",
    "class_rheobase_pa",
]

log = logging.getLogger(__name__)

FIRING_CLASSES: Final = ("tonic", "adapting", "bursting", "irregular")

#: Spike detection level (mV). The exponential term diverges well before this.
V_PEAK_MV: Final = -20.0
#: Cap of the exponent ``(V - V_T) / Delta_T`` so Euler steps never overflow.
_EXP_CAP: Final = 12.0


@dataclass(frozen=True)
class AdExParams:
    """One AdEx parameter set (Naud et al. 2008, Table 1).

    Attributes
    ----------
    c_pf
        Membrane capacitance (pF).
    g_l_ns
        Leak conductance (nS).
    e_l_mv
        Leak reversal (resting) potential (mV).
    v_t_mv
        Threshold of the exponential term (mV).
    delta_t_mv
        Slope factor (mV).
    a_ns
        Sub-threshold adaptation (nS).
    tau_w_ms
        Adaptation time constant (ms).
    b_pa
        Spike-triggered adaptation increment (pA).
    v_r_mv
        Reset potential (mV).
    i_step_pa
        The step current of the paper that evokes the pattern (pA); the simulator
        scales every input relative to it.
    """

    c_pf: float
    g_l_ns: float
    e_l_mv: float
    v_t_mv: float
    delta_t_mv: float
    a_ns: float
    tau_w_ms: float
    b_pa: float
    v_r_mv: float
    i_step_pa: float


#: Parameter sets per firing class (Naud et al. 2008, Table 1).
ADEX_CLASS_PARAMS: Final[dict[str, AdExParams]] = {
    "tonic": AdExParams(200.0, 10.0, -70.0, -50.0, 2.0, 2.0, 30.0, 0.0, -58.0, 500.0),
    "adapting": AdExParams(200.0, 12.0, -70.0, -50.0, 2.0, 2.0, 300.0, 60.0, -58.0, 500.0),
    "bursting": AdExParams(200.0, 10.0, -58.0, -50.0, 2.0, 2.0, 120.0, 100.0, -46.0, 210.0),
    "irregular": AdExParams(100.0, 12.0, -60.0, -50.0, 2.0, -11.0, 130.0, 30.0, -48.0, 160.0),
}

_PARAM_NAMES: Final = tuple(f.name for f in fields(AdExParams))


def adex_param_arrays(
    classes: list[str] | tuple[str, ...] | np.ndarray,
    *,
    rng: np.random.Generator | None = None,
    jitter: float = 0.0,
) -> dict[str, np.ndarray]:
    """Stack the parameter sets of ``classes`` into one float64 array per parameter.

    Parameters
    ----------
    classes
        Firing class of each trace, each one of :data:`FIRING_CLASSES`.
    rng
        Random generator for the jitter; required when ``jitter > 0``.
    jitter
        Relative SD of a multiplicative log-normal jitter applied to ``c_pf``,
        ``g_l_ns`` and ``tau_w_ms`` (cell-to-cell variability); 0 for none.

    Returns
    -------
    dict of str to numpy.ndarray
        Keys are the field names of :class:`AdExParams`, each of shape ``(n_traces,)``.

    Raises
    ------
    ParameterError
        If a class is unknown, or ``jitter > 0`` without ``rng``.
    """
    classes = list(classes)
    unknown = sorted({c for c in classes if c not in ADEX_CLASS_PARAMS})
    if unknown:
        raise ParameterError(
            f"unknown firing class(es) {unknown}; expected one of {FIRING_CLASSES}", field="classes"
        )
    if jitter < 0:
        raise ParameterError(f"jitter must be >= 0, got {jitter}", field="jitter")
    if jitter > 0 and rng is None:
        raise ParameterError(
            "jitter > 0 needs an rng", field="rng", fix="pass rng=numpy.random.default_rng(seed)"
        )
    out = {
        name: np.array([getattr(ADEX_CLASS_PARAMS[c], name) for c in classes], dtype=np.float64)
        for name in _PARAM_NAMES
    }
    if jitter > 0 and rng is not None and classes:
        for name in ("c_pf", "g_l_ns", "tau_w_ms"):
            out[name] = out[name] * np.exp(rng.normal(0.0, jitter, len(classes)))
    return out


def run_adex(
    params: dict[str, np.ndarray],
    current_pa: np.ndarray,
    *,
    dt_ms: float = 0.5,
    steps_per_sample: int = 10,
    v0_mv: np.ndarray | None = None,
    w0_pa: np.ndarray | None = None,
) -> np.ndarray:
    """Integrate AdEx neurons driven by a piecewise-constant input current.

    Parameters
    ----------
    params
        Parameter arrays as returned by :func:`adex_param_arrays`, each ``(n_traces,)``.
    current_pa
        Input current (pA), shape ``(n_samples, n_traces)``; sample ``j`` is held
        for ``steps_per_sample`` Euler steps.
    dt_ms
        Euler step (ms); 0.1-0.5 ms is accurate enough for spike counts.
    steps_per_sample
        Euler steps per input sample (so the input resolution is
        ``steps_per_sample * dt_ms`` ms).
    v0_mv, w0_pa
        Initial state, ``(n_traces,)``; default: resting potential and ``w = 0``.

    Returns
    -------
    numpy.ndarray
        Spike counts per input sample, ``(n_samples, n_traces)`` int32.

    Raises
    ------
    ParameterError
        On a bad shape or a non-positive step.
    """
    current_pa = np.asarray(current_pa, dtype=np.float64)
    if current_pa.ndim != 2:
        raise ParameterError(
            f"current_pa must be 2-D (n_samples, n_traces), got shape {current_pa.shape}", field="current_pa"
        )
    if not dt_ms > 0 or steps_per_sample < 1:
        raise ParameterError(
            f"need dt_ms > 0 and steps_per_sample >= 1, got {dt_ms}, {steps_per_sample}", field="dt_ms"
        )
    n_samples, n_traces = current_pa.shape
    for name in _PARAM_NAMES:
        if np.shape(params[name]) != (n_traces,):
            raise ParameterError(
                f"params['{name}'] must have shape ({n_traces},), got {np.shape(params[name])}",
                field="params",
            )

    c = params["c_pf"]
    gl = params["g_l_ns"]
    el = params["e_l_mv"]
    vt = params["v_t_mv"]
    dlt = params["delta_t_mv"]
    a = params["a_ns"]
    tw = params["tau_w_ms"]
    b = params["b_pa"]
    vr = params["v_r_mv"]

    # Pre-combined constants: dV = dt/C * (-gL (V-EL) + gL dT exp((V-VT)/dT) - w + I)
    k_v = dt_ms / c
    gl_dlt = gl * dlt
    inv_dlt = 1.0 / dlt
    k_w = dt_ms / tw
    v = np.array(el if v0_mv is None else v0_mv, dtype=np.float64, copy=True)
    w = np.zeros(n_traces) if w0_pa is None else np.array(w0_pa, dtype=np.float64, copy=True)
    counts = np.zeros((n_samples, n_traces), dtype=np.int32)
    ex = np.empty(n_traces)
    for j in range(n_samples):
        i_in = current_pa[j]
        row = counts[j]
        for _ in range(steps_per_sample):
            # exponential term, capped so a large Euler step cannot overflow
            np.subtract(v, vt, out=ex)
            ex *= inv_dlt
            np.minimum(ex, _EXP_CAP, out=ex)
            np.exp(ex, out=ex)
            ex *= gl_dlt
            dv = (ex - gl * (v - el) - w + i_in) * k_v
            w += (a * (v - el) - w) * k_w
            v += dv
            spk = v >= V_PEAK_MV
            if spk.any():
                v[spk] = vr[spk]
                w[spk] += b[spk]
                row += spk
    return counts


def step_response_spike_times(
    firing_class: str,
    *,
    amplitude_pa: float | None = None,
    duration_ms: float = 2000.0,
    dt_ms: float = 0.1,
) -> np.ndarray:
    """Spike times of one neuron of a class under a constant current step.

    Parameters
    ----------
    firing_class
        One of :data:`FIRING_CLASSES`.
    amplitude_pa
        Step amplitude (pA); default the paper's step current of that class.
    duration_ms
        Simulated time (ms), the step starting at 0.
    dt_ms
        Euler step (ms).

    Returns
    -------
    numpy.ndarray
        Spike times (ms), float64, increasing.
    """
    p = adex_param_arrays([firing_class])
    amp = float(p["i_step_pa"][0] if amplitude_pa is None else amplitude_pa)
    n = int(round(duration_ms / dt_ms))
    counts = run_adex(p, np.full((n, 1), amp), dt_ms=dt_ms, steps_per_sample=1)
    return np.nonzero(counts[:, 0])[0].astype(np.float64) * dt_ms


def class_rheobase_pa(firing_class: str) -> tuple[float, float]:
    """Rheobases of a firing class, found by simulation.

    Parameters
    ----------
    firing_class
        One of :data:`FIRING_CLASSES`.

    Returns
    -------
    tuple of float
        ``(steady_pa, pulse_pa)``: the smallest constant current (pA) that makes the
        neuron fire within 4 s, and the smallest 300 ms pulse from rest that
        evokes a spike (pA). Found on a 0.5 %-of-``i_step_pa`` grid.

    Raises
    ------
    ParameterError
        If the class is unknown.
    """
    if firing_class not in ADEX_CLASS_PARAMS:
        raise ParameterError(
            f"unknown firing class {firing_class!r}; expected one of {FIRING_CLASSES}", field="firing_class"
        )
    return _all_rheobases()[firing_class]


@functools.lru_cache(maxsize=1)
def _all_rheobases() -> dict[str, tuple[float, float]]:
    """Rheobases of every class, simulated side by side once per process."""
    n_grid = 200
    frac = np.arange(1, n_grid + 1) / n_grid
    classes = list(ADEX_CLASS_PARAMS)
    p = adex_param_arrays([c for c in classes for _ in range(n_grid)])
    amps = np.concatenate([frac * ADEX_CLASS_PARAMS[c].i_step_pa for c in classes])
    dt_ms, sub = 0.5, 10
    steady = np.tile(amps, (800, 1))  # 4 s at 5 ms samples
    n_steady = run_adex(p, steady, dt_ms=dt_ms, steps_per_sample=sub).sum(axis=0)
    pulse = np.zeros((100, amps.size))  # 300 ms pulse from 50 ms, then 150 ms to respond
    pulse[10:70] = amps
    n_pulse = run_adex(p, pulse, dt_ms=dt_ms, steps_per_sample=sub).sum(axis=0)

    def first(n: np.ndarray, a: np.ndarray) -> float:
        hit = np.nonzero(n > 0)[0]
        return float(a[hit[0]]) if hit.size else float(a[-1])

    out = {}
    for k, c in enumerate(classes):
        sl = slice(k * n_grid, (k + 1) * n_grid)
        out[c] = (first(n_steady[sl], amps[sl]), first(n_pulse[sl], amps[sl]))
    return out
