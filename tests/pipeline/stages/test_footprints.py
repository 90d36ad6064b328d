"""Tests of sparse footprint helpers and shape features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.stages.footprints import (
    SHAPE_FEATURE_NAMES,
    binarize,
    bounding_boxes,
    centroids,
    footprints_to_sparse,
    read_footprints_sparse,
    shape_features,
)
from cellsift.schemas.errors import InputFormatError, SchemaError

H, W = 64, 80


def disc(cy: float, cx: float, r: float, dims: tuple[int, int] = (H, W)) -> np.ndarray:
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)


def one(img: np.ndarray) -> sp.csr_matrix:
    return footprints_to_sparse(img[None])


def feats(img: np.ndarray) -> dict[str, float]:
    return {k: float(v[0]) for k, v in shape_features(one(img), img.shape).items()}


def test_to_sparse_layout_and_threshold() -> None:
    block = np.zeros((2, 4, 5), dtype=np.float32)
    block[0, 1, 2] = 1.0
    block[0, 3, 4] = 0.1
    block[1, 0, 0] = -1.0  # negative weights are dropped
    block[1, 2, 3] = 2.0
    A = footprints_to_sparse(block)
    assert isinstance(A, sp.csr_matrix) and A.shape == (2, 20) and A.dtype == np.float32
    assert A[0, 1 * 5 + 2] == 1.0 and A[0, 3 * 5 + 4] == pytest.approx(0.1)
    assert A[1, 0] == 0 and A[1, 2 * 5 + 3] == 2.0
    np.testing.assert_array_equal(A.toarray().reshape(2, 4, 5), np.clip(block, 0, None))
    B = footprints_to_sparse(block, rel_threshold=0.5)
    assert B.nnz == 2 and B[0, 3 * 5 + 4] == 0


def test_to_sparse_rejects_bad_input() -> None:
    with pytest.raises(InputFormatError):
        footprints_to_sparse(np.zeros((4, 5)))
    bad = np.zeros((1, 3, 3))
    bad[0, 1, 1] = np.nan
    with pytest.raises(InputFormatError):
        footprints_to_sparse(bad)


def test_read_footprints_sparse_in_blocks() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((70, 10, 12)).astype(np.float32)
    dense[dense < 0.7] = 0

    class Counting:
        def __init__(self, a: np.ndarray) -> None:
            self.a, self.shape, self.reads = a, a.shape, []

        def __getitem__(self, key: slice) -> np.ndarray:
            self.reads.append(key)
            return self.a[key]

    src = Counting(dense)
    A = read_footprints_sparse(src, block_units=32)
    assert len(src.reads) == 3  # 32 + 32 + 6 units
    np.testing.assert_allclose(A.toarray(), dense.reshape(70, -1))


def test_binarize_per_unit_max() -> None:
    img = np.zeros((2, H, W), dtype=np.float32)
    img[0] = disc(20, 20, 5) * 10
    img[0, 20, 20] = 100  # max 100 -> threshold 20 drops the rest of unit 0
    img[1] = disc(40, 40, 4) * 0.5
    M = binarize(footprints_to_sparse(img), rel_threshold=0.2)
    assert M.dtype == np.bool_
    assert M[0].nnz == 1
    assert M[1].nnz == int(disc(40, 40, 4).sum())


def test_centroids_weighted_and_empty() -> None:
    img = np.zeros((3, H, W), dtype=np.float32)
    img[0, 10, 20] = 1.0
    img[0, 10, 30] = 3.0  # weighted x = 27.5
    img[1] = disc(33.0, 51.0, 6)
    A = footprints_to_sparse(img)
    c = centroids(A, (H, W))
    np.testing.assert_allclose(c[0], [10.0, 27.5])
    np.testing.assert_allclose(c[1], [33.0, 51.0], atol=1e-6)
    np.testing.assert_allclose(c[2], [(H - 1) / 2, (W - 1) / 2])  # empty -> frame centre
    assert np.all(np.isfinite(c))


def test_bounding_boxes() -> None:
    img = np.zeros((2, H, W), dtype=np.float32)
    img[0, 5:9, 10:20] = 1
    bb = bounding_boxes(footprints_to_sparse(img), (H, W))
    np.testing.assert_array_equal(bb, [[5, 9, 10, 20], [0, 0, 0, 0]])


@pytest.mark.parametrize("r", [5, 8, 12])
def test_disc_is_compact_round_and_convex(r: float) -> None:
    f = feats(disc(32, 40, r))
    assert f["area_px"] == pytest.approx(math.pi * r * r, rel=0.1)
    assert f["compactness"] == pytest.approx(1.0, abs=0.13)
    assert f["eccentricity"] == pytest.approx(0.0, abs=0.05)
    assert f["solidity"] == pytest.approx(1.0, abs=0.1)
    assert f["centroid_y"] == pytest.approx(32) and f["centroid_x"] == pytest.approx(40)


def test_large_disc_compactness_close_to_one() -> None:
    yy, xx = np.mgrid[:200, :200]
    img = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 60**2).astype(np.float32)
    f = feats(img)
    assert f["compactness"] == pytest.approx(1.0, abs=0.03)
    assert f["solidity"] == pytest.approx(1.0, abs=0.03)


def test_ellipse_eccentricity_matches_axes() -> None:
    yy, xx = np.mgrid[:H, :W]
    a, b = 20.0, 10.0  # semi-axes along x and y
    img = (((xx - 40) / a) ** 2 + ((yy - 32) / b) ** 2 <= 1).astype(np.float32)
    f = feats(img)
    assert f["eccentricity"] == pytest.approx(math.sqrt(1 - (b / a) ** 2), abs=0.03)
    assert f["compactness"] < feats(disc(32, 40, 14))["compactness"]


@pytest.mark.parametrize("diagonal", [False, True])
def test_thin_line(diagonal: bool) -> None:
    img = np.zeros((H, W), dtype=np.float32)
    idx = np.arange(5, 45)
    if diagonal:
        img[idx, idx] = 1
    else:
        img[10, idx] = 1
    f = feats(img)
    assert f["eccentricity"] == pytest.approx(1.0, abs=1e-6)
    assert f["compactness"] < 0.15
    assert f["area_px"] == 40
    assert 0 < f["solidity"] <= 1


def test_c_shape_has_low_solidity() -> None:
    yy, xx = np.mgrid[:H, :W]
    rr = (yy - 32) ** 2 + (xx - 40) ** 2
    img = ((rr <= 15**2) & (rr >= 9**2) & ~((xx > 40) & (np.abs(yy - 32) < 8))).astype(np.float32)
    f = feats(img)
    assert f["solidity"] < 0.8
    assert f["compactness"] < 0.5


def test_peak_frac_flat_vs_peaked() -> None:
    flat = feats(disc(32, 40, 8))["footprint_peak_frac"]
    yy, xx = np.mgrid[:H, :W]
    gauss = np.exp(-((yy - 32) ** 2 + (xx - 40) ** 2) / (2 * 4.0**2)).astype(np.float32)
    peaked = feats(gauss)["footprint_peak_frac"]
    assert flat == pytest.approx(0.25, abs=0.02)
    assert peaked > flat + 0.1


def test_degenerate_footprints_are_nan_free() -> None:
    img = np.zeros((3, H, W), dtype=np.float32)
    img[1, 0, 0] = 1.0  # single pixel in the corner
    img[2, 5:7, 5:7] = 0  # empty
    f = shape_features(footprints_to_sparse(img), (H, W))
    assert set(f) == set(SHAPE_FEATURE_NAMES)
    for v in f.values():
        assert v.shape == (3,) and np.all(np.isfinite(v))
    assert f["area_px"][0] == 0 and f["compactness"][0] == 0 and f["solidity"][0] == 0
    assert f["area_px"][1] == 1 and f["solidity"][1] == 1 and f["eccentricity"][1] == 0
    assert 0 < f["compactness"][1] <= 1


def test_dims_mismatch_raises() -> None:
    A = one(disc(10, 10, 3))
    with pytest.raises(SchemaError):
        shape_features(A, (H + 1, W))
