"""Tests of movie-based spatial features and the session feature assembly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.stages.clips import ClipParams, crop_footprints, extract_clips
from cellsift.pipeline.stages.features import SpatialParams, session_features, spatial_features
from cellsift.pipeline.stages.footprints import binarize, centroids, footprints_to_sparse
from cellsift.pipeline.stages.overlap import compute_overlap
from cellsift.pipeline.stages.transients import TransientResult, detect_all
from cellsift.schemas.errors import SchemaError
from cellsift.schemas.tables import CELLS_SCHEMA, FEATURE_COLUMNS

T, H, W, FPS = 400, 64, 64, 20.0
PEAKS = (60, 160, 260, 360)


def blob(cy: float, cx: float, sigma: float = 2.5) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    g[g < 0.05] = 0
    return g.astype(np.float32)


def activity(n_frames: int = T) -> np.ndarray:
    """Calcium-like activity: fast rise at each peak, 0.5 s decay."""
    t = np.arange(n_frames)
    a = np.zeros(n_frames)
    for p in PEAKS:
        s = t - (p - 2)
        a += np.where(s >= 0, 1 - np.exp(-np.clip(s, 0, None) / 1.0), 0) * np.exp(
            -np.clip(t - p, 0, None) / 10.0
        )
    return a


@pytest.fixture(scope="module")
def scene() -> dict:
    """Units: 0 a lit cell at (32, 22); 1 an artifact footprint next to it at (32, 34)
    borrowing its trace; 2 a silent unit; 3 a duplicate of the cell (1 px shifted)."""
    rng = np.random.default_rng(0)
    cell = blob(32, 22)
    act = activity()
    movie = 20 + 15.0 * act[:, None, None] * cell[None] + rng.normal(0, 1.0, (T, H, W))
    imgs = np.stack([cell, blob(32, 34), blob(12, 50), blob(33, 22)])
    A = footprints_to_sparse(imgs)
    noise = rng.normal(0, 0.05, (4, T))
    C_raw = np.stack([act, act, np.zeros(T), act]) + noise
    return {"movie": movie.astype(np.float32), "A": A, "C_raw": C_raw}


def run_clips(scene: dict, peaks: list[np.ndarray]):
    A = scene["A"]
    cents = centroids(A, (H, W))
    params = ClipParams(crop_px=24)
    clips, valid = extract_clips(scene["movie"], list(enumerate(peaks)), cents, params=params)
    fp = crop_footprints(A, (H, W), cents, crop_px=24)
    return clips, valid, fp


def test_spatial_corr_separates_cell_from_neighbour_artifact(scene: dict) -> None:
    peaks = [np.array(PEAKS), np.array(PEAKS), np.array([30, 200]), np.array(PEAKS[:2])]
    clips, valid, fp = run_clips(scene, peaks)
    f = spatial_features(clips, valid, fp)
    assert f["spatial_corr"][0] > 0.7
    assert f["spatial_corr_min"][0] > 0.6
    assert f["spatial_corr"][1] < 0.3
    assert abs(f["spatial_corr"][2]) < 0.3  # silent unit: noise only
    assert f["spatial_corr_min"][0] <= f["spatial_corr"][0]
    assert f["peak_contrast"][0] > 3.0
    assert f["peak_contrast"][1] < 0.5  # its surround lights up more than its inside
    assert abs(f["peak_contrast"][2]) < 1.0
    assert f["spatial_corr"][3] > 0.7  # a duplicate still matches the movie
    for v in f.values():
        assert v.shape == (4,) and np.all(np.isfinite(v))


def test_spatial_features_invalid_clips_and_constant_images() -> None:
    n, k, L, c = 2, 3, 21, 8
    clips = np.zeros((n, k, L, c, c), dtype=np.float32)
    valid = np.zeros((n, k), dtype=bool)
    valid[0, 0] = True  # a valid but flat clip
    fp = np.zeros((n, c, c), dtype=np.float32)
    fp[0, 3:5, 3:5] = 1
    f = spatial_features(clips, valid, fp)
    for v in f.values():
        np.testing.assert_array_equal(v, [0.0, 0.0])


def test_spatial_features_uses_only_valid_slots(scene: dict) -> None:
    clips, valid, fp = run_clips(scene, [np.array(PEAKS)] * 4)
    garbage = clips.copy()
    garbage[0, 1:] = np.random.default_rng(1).normal(0, 50, garbage[0, 1:].shape)
    v = valid.copy()
    v[0, 1:] = False
    a = spatial_features(clips[:, :1], valid[:, :1], fp)
    b = spatial_features(garbage, v, fp)
    assert b["spatial_corr"][0] == pytest.approx(a["spatial_corr"][0])
    assert b["peak_contrast"][0] == pytest.approx(a["peak_contrast"][0])


def test_spatial_features_shape_checks() -> None:
    with pytest.raises(SchemaError):
        spatial_features(np.zeros((2, 1, 21, 8, 8)), np.ones((2, 1), bool), np.zeros((2, 6, 6)))
    with pytest.raises(SchemaError):
        spatial_features(
            np.zeros((1, 1, 5, 8, 8)),
            np.ones((1, 1), bool),
            np.zeros((1, 8, 8)),
            params=SpatialParams(n_before=10),
        )


def _session_features(
    A: sp.spmatrix,
    C_raw: np.ndarray,
    *,
    transients: list[TransientResult] | None = None,
    clips: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    fp_crops: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`session_features` of footprints ``A`` in the (H, W) frame at FPS, with the
    transients of ``C_raw`` (unless given) and the overlap of ``A``."""
    return session_features(
        A=A,
        dims=(H, W),
        C_raw=C_raw,
        fps=FPS,
        transients=detect_all(C_raw, fps=FPS) if transients is None else transients,
        overlap=compute_overlap(binarize(A)),
        clips=clips,
        valid=valid,
        fp_crops=fp_crops,
    )


def test_session_features_all_columns(scene: dict) -> None:
    A, C_raw = scene["A"], scene["C_raw"]
    transients = detect_all(C_raw, fps=FPS)
    clips, valid, fp = run_clips(scene, [t.peak_frames for t in transients])
    f = _session_features(A, C_raw, transients=transients, clips=clips, valid=valid, fp_crops=fp)
    assert list(f) == [*FEATURE_COLUMNS, "centroid_y", "centroid_x"]
    for name, v in f.items():
        assert v.shape == (4,), name
        assert np.all(np.isfinite(v)), name
        schema_type = CELLS_SCHEMA.field(name).type
        assert (v.dtype == np.int32) == (str(schema_type) == "int32"), name
    assert f["n_transients"][0] == len(PEAKS)
    assert f["transient_rate_per_min"][0] == pytest.approx(len(PEAKS) / (T / FPS / 60))
    assert f["n_transients"][2] == 0
    assert f["spatial_corr"][0] > 0.7 and f["spatial_corr"][1] < 0.3
    # the duplicate (3) overlaps the cell (0) almost fully, with the same trace
    assert f["max_overlap_frac"][0] > 0.8 and f["max_overlap_frac"][3] > 0.8
    assert f["n_neighbours"][0] == 1 and f["n_neighbours"][1] == 0
    assert f["neighbour_trace_corr"][0] > 0.9 and f["neighbour_trace_corr"][3] > 0.9
    assert f["neighbour_trace_corr"][1] == 0 and f["max_overlap_frac"][2] == 0
    assert f["centroid_x"][0] == pytest.approx(22, abs=0.1)


def test_session_features_degenerate_and_no_movie() -> None:
    k = 2
    A = sp.csr_matrix((k, H * W), dtype=np.float32)  # empty footprints
    C_raw = np.zeros((k, 50))  # flat traces
    f = _session_features(A, C_raw)
    for name, v in f.items():
        if name in ("spatial_corr", "spatial_corr_min", "peak_contrast"):
            assert np.all(np.isnan(v)), name  # not measured without a movie
        else:
            assert np.all(np.isfinite(v)), name
    assert np.all(f["area_px"] == 0) and np.all(f["compactness"] == 0)

    clips = np.zeros((k, 1, 21, 8, 8), dtype=np.float32)
    f2 = _session_features(
        A, C_raw, clips=clips, valid=np.ones((k, 1), bool), fp_crops=np.zeros((k, 8, 8), np.float32)
    )
    assert all(np.all(np.isfinite(v)) for v in f2.values())


def test_session_features_unit_count_mismatch(scene: dict) -> None:
    A = scene["A"]
    transients = [TransientResult(np.array([0]), np.zeros(1), 0, 0.0, 0.0, 0.0, 0.0)] * 3
    with pytest.raises(SchemaError):
        _session_features(A, scene["C_raw"], transients=transients)
