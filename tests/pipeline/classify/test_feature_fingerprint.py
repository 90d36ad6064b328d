"""FEATURE_VERSION changes when a model input's computation changes, not only when a name does.

The test computes every model input (the quality features of ``cellsift run``, the
unit-free table inputs and the clip summaries) on one fixed synthetic session and holds
a fingerprint of the values per :data:`~cellsift.pipeline.classify.inputs.FEATURE_REVISION`.
A change in any computation changes the fingerprint: then raise ``FEATURE_REVISION``
(models trained on the old inputs are refused) and add the new fingerprint below.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.clip_prep import prepare_clips
from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES, clip_summary_features
from cellsift.pipeline.classify.inputs import FEATURE_REVISION, MODEL_FEATURES, feature_matrix
from cellsift.pipeline.stages.clips import ClipParams, crop_footprints, crop_neighbour_masks, extract_clips
from cellsift.pipeline.stages.features import session_features
from cellsift.pipeline.stages.footprints import binarize, centroids, footprints_to_sparse
from cellsift.pipeline.stages.overlap import compute_overlap
from cellsift.pipeline.stages.transients import detect_all
from tests.pipeline.stages.test_features import FPS, H, T, W, activity, blob

#: Fingerprint of the model inputs on the fixed session, per FEATURE_REVISION.
FINGERPRINTS = {
    2: "e8f9addcb8fcd061",
    3: "30c2e0417615ff8f",
}


def _inputs(*, raw_trace: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    cell = blob(32, 22)
    act = activity()
    movie = (20 + 15.0 * act[:, None, None] * cell[None] + rng.normal(0, 1.0, (T, H, W))).astype(np.float32)
    A = footprints_to_sparse(np.stack([cell, blob(32, 34), blob(12, 50), blob(33, 22)]))
    C_raw = np.stack([act, act, np.zeros(T), act]) + rng.normal(0, 0.05, (4, T))
    transients = detect_all(C_raw, fps=FPS)
    masks = binarize(A)
    overlap = compute_overlap(masks)
    cents = centroids(A, (H, W))
    params = ClipParams(crop_px=32)
    clips, valid = extract_clips(
        movie, list(enumerate(t.peak_frames[:3] for t in transients)), cents, params=params, k_peaks=3
    )
    fp = crop_footprints(A, (H, W), cents, crop_px=32)
    nb = crop_neighbour_masks(masks, overlap.pairs, cents, (H, W), 32)
    feats = session_features(
        A=A,
        dims=(H, W),
        C_raw=C_raw,
        fps=FPS,
        transients=transients,
        overlap=overlap,
        clips=clips,
        valid=valid,
        fp_crops=fp,
        raw_trace=raw_trace,
    )
    table = pd.DataFrame(feats).assign(
        cohort="c",
        animal="a",
        session="s",
        unit_id=np.arange(4),
        overlap_partner=[int(p) if p >= 0 else None for p in overlap.partner_index],
    )
    prepared = prepare_clips(clips, fp, nb, valid, n_before=params.n_before, model_crop=24, pool=2)
    summary = clip_summary_features(prepared)
    return np.column_stack(
        [feature_matrix(table, MODEL_FEATURES), *(summary[c] for c in CLIP_SUMMARY_FEATURES)]
    )


def _fingerprint(values: np.ndarray) -> str:
    rounded = np.round(np.nan_to_num(values.astype(np.float64), nan=-999.0), 3) + 0.0
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def test_model_inputs_match_the_fingerprint_of_their_revision():
    values = np.vstack([_inputs(), _inputs(raw_trace=False)])
    assert values.shape[0] == 8
    assert values[:4].shape == (4, len(MODEL_FEATURES) + len(CLIP_SUMMARY_FEATURES))
    got = _fingerprint(values)
    assert FEATURE_REVISION in FINGERPRINTS, f"add FINGERPRINTS[{FEATURE_REVISION}] = {got!r}"
    assert got == FINGERPRINTS[FEATURE_REVISION], (
        f"the model inputs changed (fingerprint {got}, revision {FEATURE_REVISION} has "
        f"{FINGERPRINTS[FEATURE_REVISION]}): raise FEATURE_REVISION in classify/inputs.py and "
        "add the new fingerprint here"
    )


def test_sessions_without_a_raw_trace_have_missing_noise_inputs():
    raw, denoised = _inputs(), _inputs(raw_trace=False)
    noise_cols = [
        MODEL_FEATURES.index(c) for c in ("peak_to_noise", "noise_rel", "pnr_rel", "partner_pnr_ratio")
    ]
    assert np.isfinite(raw[:, noise_cols]).all()
    assert np.isnan(denoised[:, noise_cols]).all()
    other = [j for j in range(raw.shape[1]) if j not in noise_cols]
    np.testing.assert_array_equal(np.isnan(raw[:, other]), np.isnan(denoised[:, other]))
