"""Deconvolution of the simulated raw traces: thresholded non-negative matching pursuit.

CNMF-E estimates ``C`` and ``S`` from ``C_raw``; the simulator imitates it with a
matched filter of each unit's (assumed) calcium kernel, so ``C`` holds false small
events on noise and misses weak real ones, as a real deconvolution does.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy import fft as sfft

from cellsift.schemas import ParameterError

__all__ = ["NOISE_MAD_SCALE", "deconvolve"]

#: MAD-to-SD factor of the default noise estimate (frame-to-frame differences). Part of
#: the simulator's v1 definition: changing it (even to 1 / 0.6744897501960817) changes
#: the simulated ``C`` and ``S`` and everything trained on them.
NOISE_MAD_SCALE: Final = 1.4826


def _kernel_matrix(
    taus: list[tuple[float, float]], fps: float, n_frames: int, nfft: int
) -> tuple[np.ndarray, np.ndarray]:
    """Peak-normalised calcium kernels ``(K, L)`` and their rfft ``(K, nfft//2+1)``."""
    length = min(n_frames, max(8, int(max(t[1] for t in taus) * fps * 8)))
    k = np.arange(length)
    kern = np.empty((len(taus), length))
    for i, (tr, td) in enumerate(taus):
        d = math.exp(-1.0 / (td * fps))
        r = math.exp(-1.0 / (tr * fps))
        kern[i] = d ** (k + 0.5) - r ** (k + 0.5)
        kern[i] /= kern[i].max()
    return kern, sfft.rfft(kern, nfft, axis=1)


def deconvolve(
    c_raw: np.ndarray,
    taus: list[tuple[float, float]],
    *,
    fps: float,
    noise_sd: np.ndarray | None = None,
    threshold: float = 3.0,
    n_rounds: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative, thresholded matching-pursuit deconvolution.

    Each round correlates the residual with the unit's kernel (a matched filter),
    takes every local maximum above ``threshold`` noise SDs as an event and adds most
    of its least-squares amplitude to ``S``; ``C`` is ``S`` convolved with the kernel.

    Parameters
    ----------
    c_raw
        Raw traces ``(K, n_frames)``, baseline near 0.
    taus
        ``(tau_rise_s, tau_decay_s)`` per unit.
    fps
        Frame rate (Hz).
    noise_sd
        Noise SD per unit; default: estimated from frame-to-frame differences.
    threshold
        Detection threshold of the matched filter (noise SDs).
    n_rounds
        Matching-pursuit rounds.

    Returns
    -------
    tuple of numpy.ndarray
        ``(C, S)``, each ``(K, n_frames)`` float64, non-negative.

    Raises
    ------
    ParameterError
        If ``taus`` does not hold one kernel per unit.
    """
    c_raw = np.atleast_2d(np.asarray(c_raw, dtype=np.float64))
    n_units, n_frames = c_raw.shape
    if len(taus) != n_units:
        raise ParameterError(
            f"need one (tau_rise_s, tau_decay_s) per unit: {len(taus)} for {n_units} units",
            field="taus",
            fix="pass one kernel per row of c_raw",
        )
    if n_units == 0:
        return np.zeros_like(c_raw), np.zeros_like(c_raw)
    if noise_sd is None:
        noise_sd = NOISE_MAD_SCALE * np.median(np.abs(np.diff(c_raw, axis=1)), axis=1) / math.sqrt(2.0)
    noise_sd = np.maximum(np.asarray(noise_sd, dtype=np.float64), 1e-9)
    # bound the FFT work arrays (~ 6 x units x 2 n_frames complex) for long sessions
    chunk = max(1, int(4_000_000 // max(n_frames, 1)))
    if n_units > chunk:
        c = np.empty_like(c_raw)
        s = np.empty_like(c_raw)
        for u0 in range(0, n_units, chunk):
            u1 = min(n_units, u0 + chunk)
            c[u0:u1], s[u0:u1] = deconvolve(
                c_raw[u0:u1],
                taus[u0:u1],
                fps=fps,
                noise_sd=noise_sd[u0:u1],
                threshold=threshold,
                n_rounds=n_rounds,
            )
        return c, s
    nfft = sfft.next_fast_len(2 * n_frames)
    kern, kf = _kernel_matrix(taus, fps, n_frames, nfft)
    knorm2 = (kern**2).sum(axis=1)
    thr = threshold * noise_sd * np.sqrt(knorm2)

    def conv(s: np.ndarray) -> np.ndarray:
        return sfft.irfft(sfft.rfft(s, nfft, axis=1) * kf, nfft, axis=1)[:, :n_frames]

    def corr(x: np.ndarray) -> np.ndarray:
        return sfft.irfft(sfft.rfft(x, nfft, axis=1) * np.conj(kf), nfft, axis=1)[:, :n_frames]

    s = np.zeros_like(c_raw)
    res = c_raw.copy()
    for _ in range(n_rounds):
        y = corr(res)
        left = np.concatenate([np.full((n_units, 1), -np.inf), y[:, :-1]], axis=1)
        right = np.concatenate([y[:, 1:], np.full((n_units, 1), -np.inf)], axis=1)
        pk = (y > thr[:, None]) & (y >= left) & (y > right)
        if not pk.any():
            break
        s[pk] += 0.8 * (y / knorm2[:, None])[pk]
        res = c_raw - conv(s)
    c = np.maximum(conv(s), 0.0)
    s[s < 1e-9] = 0.0
    return c, s
