"""Clip preparation: brightness invariance and resampling in time to the model's frame rate."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.classify.clip_prep import prepare_clips, resample_time
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import raw_clips


def test_prepare_clips_is_invariant_to_brightness():
    rng = np.random.default_rng(3)
    raw, fp, nb, valid = raw_clips(np.array([True, False, True]), rng)
    a = prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=16, pool=2)
    b = prepare_clips(raw * 3.0 + 500.0, fp * 7.0, nb, valid, n_before=10, model_crop=16, pool=2)
    assert a.dynamic.shape == (3, 2, 21, 8, 8) and a.static.shape == (3, 2, 3, 8, 8)
    assert a.dynamic.dtype == np.float16
    np.testing.assert_allclose(a.dynamic.astype(np.float32), b.dynamic.astype(np.float32), atol=0.05)
    np.testing.assert_allclose(a.static.astype(np.float32), b.static.astype(np.float32), atol=0.02)
    # the peak is bright in units of noise SD, the baseline is ~0
    assert a.dynamic[0, 0, 10:12, 3:5, 3:5].mean() > 3 and abs(a.dynamic[0, 0, :5].mean()) < 0.5
    with pytest.raises(InputFormatError, match="model_crop"):
        prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=20, pool=2)


def test_clips_are_resampled_in_time_to_the_model_rate():
    t20 = np.arange(21) - 10  # frames of a 20 Hz clip around its peak
    t10 = (np.arange(21) - 10) * 2  # the same event seen at 10 Hz: twice the time per frame
    rise_decay = lambda t: np.where(t >= 0, np.exp(-t / 8.0), 0.0)  # noqa: E731
    clip20 = rise_decay(t20).astype(np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    clip10 = rise_decay(t10).astype(np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    out = resample_time(clip10, n_before=10, time_step=0.5)  # 10 Hz data, 20 Hz model
    assert out.shape == clip10.shape
    np.testing.assert_allclose(out[11:, 0, 0], clip20[11:, 0, 0], atol=0.02)
    assert out[10, 0, 0] == pytest.approx(1.0) and np.all(out[:9, 0, 0] == 0)
    np.testing.assert_array_equal(resample_time(clip20, n_before=10, time_step=1.0), clip20)


def test_a_store_cut_at_twice_the_cell_size_gives_the_same_model_input():
    from cellsift.pipeline.classify.clip_prep import prepare_clips

    rng = np.random.default_rng(3)
    n, k, t, s = 3, 2, 21, 32
    clips = rng.normal(100, 5, size=(n, k, t, s, s)).astype(np.float32)
    clips[:, :, 10:14, 12:20, 12:20] += 40.0
    fp = rng.random((n, s, s)).astype(np.float32)
    nb = rng.random((n, s, s)) > 0.7
    valid = np.ones((n, k), dtype=bool)
    ref = prepare_clips(clips, fp, nb, valid, n_before=10, model_crop=24, pool=2)

    def up(a):  # the same field seen with pixels half as wide
        return np.repeat(np.repeat(a, 2, axis=-1), 2, axis=-2)

    big = prepare_clips(up(clips), up(fp), up(nb), valid, n_before=10, model_crop=24, pool=2, crop_scale=2.0)
    assert big.dynamic.shape == ref.dynamic.shape
    np.testing.assert_allclose(big.dynamic.astype(float), ref.dynamic.astype(float), atol=0.05)
    np.testing.assert_allclose(big.static.astype(float), ref.static.astype(float), atol=0.02)
