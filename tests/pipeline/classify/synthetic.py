"""Synthetic labelled cells and a tiny clip model, shared by the classification tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.clip_prep import prepare_clips
from cellsift.pipeline.classify.data import CellData
from cellsift.schemas.tables import FEATURE_COLUMNS

#: A clip model small enough to train in seconds on 8x8-px clips.
TINY_CLIPS = ClipModelConfig(
    model_crop=16,
    pool=2,
    width=4,
    embed=16,
    hidden=8,
    epochs=10,
    patience=3,
    min_epochs=5,
    batch_size=16,
    lr=5e-3,
    max_peaks_predict=2,
)


def raw_clips(good: np.ndarray, rng: np.random.Generator, *, k: int = 2, t: int = 21, s: int = 16):
    """Raw clips: a blob on a bright, noisy background; good cells flash inside their footprint."""
    n = len(good)
    yy, xx = np.mgrid[:s, :s] - s // 2
    blob = np.exp(-(yy**2 + xx**2) / (2 * 2.0**2))
    off = np.exp(-((yy - 5) ** 2 + (xx + 5) ** 2) / (2 * 2.0**2))
    kernel = np.zeros(t)
    kernel[10:] = np.exp(-np.arange(t - 10) / 4.0)
    offset = rng.uniform(40, 120, size=(n, 1, 1, 1, 1))
    clips = offset + rng.normal(0, 2.0, size=(n, k, t, s, s))
    amp = rng.uniform(8, 20, size=(n, k))
    for i in range(n):
        shape = blob if good[i] else off  # artifacts: the flash is beside the footprint
        clips[i] += amp[i][:, None, None, None] * kernel[None, :, None, None] * shape[None, None]
    footprint = np.repeat(blob[None], n, axis=0).astype(np.float32)
    neighbour = np.zeros((n, s, s), dtype=bool)
    neighbour[:, :3, :3] = True
    valid = np.ones((n, k), dtype=bool)
    return clips.astype(np.float32), footprint, neighbour, valid


def synthetic_cells(
    n: int = 160,
    *,
    seed: int = 0,
    n_animals: int = 4,
    clips: bool = True,
    shift: float = 0.0,
    cohort: str = "syn",
) -> CellData:
    """Labelled cells whose features and clips separate good from bad."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(np.int8)
    table = pd.DataFrame({c: rng.normal(0, 1, n) for c in FEATURE_COLUMNS})
    table["spatial_corr"] = np.where(y == 1, 0.4, 0.05) + rng.normal(0, 0.1, n) + shift
    table["peak_to_noise"] = np.where(y == 1, 12, 4) + rng.normal(0, 2, n) + shift
    table["compactness"] = np.clip(np.where(y == 1, 0.95, 0.6) + rng.normal(0, 0.1, n), 0, 1)
    table["area_px"] = rng.uniform(40, 120, n) * (1 + shift)
    table["noise_sd"] = rng.uniform(2, 4, n)
    table["n_transients"] = np.where(y == 1, 8, 1) + rng.integers(0, 3, n)
    table["cohort"] = cohort
    table["animal"] = [f"m{i % n_animals:02d}" for i in range(n)]
    table["session"] = "d1"
    table["unit_id"] = np.arange(n)
    table["pipeline_version"] = "1.0.0"
    reasons = np.where(
        y == 0, np.where(table["compactness"] < 0.6, "irregular_shape", "no_transients"), None
    ).astype(object)
    clip_arrays = None
    if clips:
        raw, fp, nb, valid = raw_clips(y == 1, rng)
        clip_arrays = prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=16, pool=2)
    return CellData(table=table, clips=clip_arrays, y=y, reasons=reasons, fps=20.0)


def balanced_accuracy(y: np.ndarray, p: np.ndarray, thr: float = 0.5) -> float:
    pred = p >= thr
    return 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))
