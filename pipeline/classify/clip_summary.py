"""Interpretable summaries of a unit's clips, used next to the quality features.

Computed from prepared clips (:class:`~cellsift.pipeline.classify.data.ClipArrays`:
frames as baseline-subtracted z-scores of pixel noise, footprint and neighbour mask
as static channels), so they are in units of noise SD and compare across labs.

``act`` is the mean of the peak frame and the two after it (z units), per clip.

``clip_mf_fp`` / ``clip_mf_fp_max``
    Matched filter of ``act`` with the unit-norm footprint: the transient's SNR at the
    footprint (mean / max over the unit's valid clips). A real transient gives several
    SD; a unit whose trace peaks are noise gives about 0.
``clip_mf_ring``, ``clip_mf_neighbours``
    The same for a 2-px ring around the footprint (outside neighbours) and for the
    neighbours' footprints: light next door rather than in the unit.
``clip_mf_contrast``
    ``clip_mf_fp - clip_mf_ring`` (mean over clips).
``clip_frac_clips_active``
    Fraction of clips whose ``mf_fp`` exceeds 3 SD: how consistently the peaks are real.
``clip_local_corr`` / ``clip_local_corr_min``
    Pearson correlation of ``act`` with the footprint over the footprint dilated by
    3 px (mean / min over clips): shape agreement where it matters, not over the
    whole crop.
``clip_shift_gain``
    Best matched-filter response over footprint shifts of up to 3 (pooled) px over the
    unshifted response: > 1 when the light sits beside the footprint (borrowed
    fluorescence).
``clip_decay``
    Mean footprint response 4-9 frames after the peak over the response at the peak:
    calcium decays slowly; a motion blip or noise does not persist.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import ndimage

from cellsift.pipeline.classify.data import ClipArrays

__all__ = ["CLIP_SUMMARY_FEATURES", "clip_summary_features"]

CLIP_SUMMARY_FEATURES: Final = (
    "clip_mf_fp",
    "clip_mf_fp_max",
    "clip_mf_ring",
    "clip_mf_neighbours",
    "clip_mf_contrast",
    "clip_frac_clips_active",
    "clip_local_corr",
    "clip_local_corr_min",
    "clip_shift_gain",
    "clip_decay",
)

_MAX_SHIFT: Final = 3


def _unit_norm(w: np.ndarray) -> np.ndarray:
    return w / np.sqrt((w**2).sum(axis=(1, 2), keepdims=True) + 1e-9)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    struct = np.zeros((1, 3, 3), dtype=bool)
    struct[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(mask, structure=struct, iterations=iterations)


def clip_summary_features(clips: ClipArrays, *, batch: int = 512) -> dict[str, np.ndarray]:
    """Return the :data:`CLIP_SUMMARY_FEATURES` of every unit (module docstring).

    Parameters
    ----------
    clips
        Prepared clips of ``n`` units.
    batch
        Units processed at a time (bounds memory).

    Returns
    -------
    dict of str to numpy.ndarray
        ``(n,)`` float64 per feature; NaN for a unit without a valid clip.
    """
    n = clips.dynamic.shape[0]
    out = {name: np.full(n, np.nan) for name in CLIP_SUMMARY_FEATURES}
    for start in range(0, n, batch):
        part = _summaries(
            clips.dynamic[start : start + batch],
            clips.static[start : start + batch],
            clips.valid[start : start + batch],
            clips.n_before,
        )
        for name, values in part.items():
            out[name][start : start + batch] = values
    return out


def _summaries(dyn16: np.ndarray, static: np.ndarray, valid: np.ndarray, p: int) -> dict[str, np.ndarray]:
    dyn = dyn16.astype(np.float32)  # (n, k, T, m, m)
    n, k, t_len, m, _ = dyn.shape
    fp = static[:, 0, 0].astype(np.float32)  # (n, m, m), max 1
    nbm = static[:, 0, 1].astype(np.float32) > 0.5
    act = dyn[:, :, p : min(p + 3, t_len)].mean(axis=2)  # (n, k, m, m)
    inside = fp > 0.2
    ring = _dilate(inside, 2) & ~inside & ~nbm
    region = _dilate(inside, 3)
    fpn = _unit_norm(fp)

    def mf(w: np.ndarray) -> np.ndarray:
        return np.einsum("nkij,nij->nk", act, _unit_norm(w.astype(np.float32)))

    z_fp, z_ring, z_nb = mf(fp), mf(ring), mf(nbm)
    # local correlation inside the dilated footprint
    r = region.astype(np.float32)
    n_r = np.maximum(r.sum(axis=(1, 2)), 1.0)
    a_mean = np.einsum("nkij,nij->nk", act, r) / n_r[:, None]
    f_mean = (fp * r).sum(axis=(1, 2)) / n_r
    a_c = (act - a_mean[:, :, None, None]) * r[:, None]
    f_c = (fp - f_mean[:, None, None]) * r
    num = np.einsum("nkij,nij->nk", a_c, f_c)
    den = np.sqrt((a_c**2).sum(axis=(2, 3)) * (f_c**2).sum(axis=(1, 2))[:, None])
    lcorr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    # best shifted response
    best = np.full((n, k), -np.inf, dtype=np.float32)
    for dy in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        for dx in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
            shifted = np.roll(np.roll(fpn, dy, axis=1), dx, axis=2)
            best = np.maximum(best, np.einsum("nkij,nij->nk", act, shifted))
    shift_gain = best / np.maximum(np.abs(z_fp), 1.0)
    course = np.einsum("nktij,nij->nkt", dyn, fpn)
    post = course[:, :, min(p + 4, t_len - 1) : min(p + 10, t_len)].mean(axis=2)
    decay = post / np.maximum(np.abs(z_fp), 1.0)

    v = np.asarray(valid, dtype=bool)
    n_valid = v.sum(axis=1)
    has = n_valid > 0

    def vmean(x: np.ndarray) -> np.ndarray:
        return np.where(has, np.where(v, x, 0.0).sum(axis=1) / np.maximum(n_valid, 1), np.nan)

    def vmax(x: np.ndarray) -> np.ndarray:
        return np.where(has, np.where(v, x, -np.inf).max(axis=1), np.nan)

    def vmin(x: np.ndarray) -> np.ndarray:
        return np.where(has, np.where(v, x, np.inf).min(axis=1), np.nan)

    return {
        "clip_mf_fp": vmean(z_fp),
        "clip_mf_fp_max": vmax(z_fp),
        "clip_mf_ring": vmean(z_ring),
        "clip_mf_neighbours": vmean(z_nb),
        "clip_mf_contrast": vmean(z_fp - z_ring),
        "clip_frac_clips_active": vmean((z_fp > 3.0).astype(np.float32)),
        "clip_local_corr": vmean(lcorr),
        "clip_local_corr_min": vmin(lcorr),
        "clip_shift_gain": vmean(shift_gain),
        "clip_decay": vmean(decay),
    }
