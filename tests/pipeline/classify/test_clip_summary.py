"""Clip summaries: transient SNR at the footprint, local shape agreement, light beside the footprint."""

from __future__ import annotations

import numpy as np

from cellsift.pipeline.classify.clip_prep import prepare_clips
from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES, clip_summary_features
from tests.pipeline.classify.synthetic import raw_clips


def _prepared(good: np.ndarray, seed: int = 0):
    clips, footprint, neighbour, valid = raw_clips(good, np.random.default_rng(seed), k=3)
    return prepare_clips(clips, footprint, neighbour, valid, n_before=10, model_crop=16, pool=1)


def test_real_flash_scores_higher_at_the_footprint_than_a_flash_beside_it():
    good = np.array([True] * 20 + [False] * 20)
    out = clip_summary_features(_prepared(good))
    assert set(out) == set(CLIP_SUMMARY_FEATURES)
    assert all(v.shape == (40,) and np.isfinite(v).all() for v in out.values())
    g, b = good, ~good
    assert out["clip_mf_fp"][g].min() > out["clip_mf_fp"][b].max()
    assert out["clip_local_corr"][g].mean() > 0.5 > out["clip_local_corr"][b].mean()
    assert (out["clip_frac_clips_active"][g] == 1.0).all()
    # the artifact's light sits 5 px away: a shifted footprint catches more of it
    assert np.median(out["clip_shift_gain"][b]) > 1.0
    assert np.median(out["clip_shift_gain"][g]) < 1.3
    # calcium decays slowly: the response persists after the peak
    assert out["clip_decay"][g].mean() > 0.2


def test_units_without_a_valid_clip_are_nan_and_batches_agree():
    good = np.array([True, False, True, True, False])
    clips = _prepared(good, seed=1)
    valid = clips.valid.copy()
    valid[1] = False
    from dataclasses import replace

    clips = replace(clips, valid=valid)
    whole = clip_summary_features(clips)
    batched = clip_summary_features(clips, batch=2)
    assert np.isnan(whole["clip_mf_fp"][1]) and np.isfinite(np.delete(whole["clip_mf_fp"], 1)).all()
    for name in CLIP_SUMMARY_FEATURES:
        np.testing.assert_allclose(whole[name], batched[name], equal_nan=True)
