"""Tests of sparse footprint overlap and neighbour trace correlation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.stages.footprints import binarize, footprints_to_sparse
from cellsift.pipeline.stages.overlap import (
    OverlapParams,
    compute_overlap,
    neighbour_trace_corr,
)
from cellsift.schemas.errors import InputFormatError, ParameterError, SchemaError

H, W = 60, 90


def disc_mask(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def masks_of(*imgs: np.ndarray) -> sp.csr_matrix:
    return binarize(footprints_to_sparse(np.stack(imgs).astype(np.float32)))


def offset_for_fraction(r: float, target: float) -> int:
    """Integer x offset of two equal discs whose pixel overlap fraction is closest to target."""
    a = disc_mask(30, 30, r)
    fracs = [(a & disc_mask(30, 30 + d, r)).sum() / a.sum() for d in range(0, int(2 * r) + 2)]
    return int(np.argmin(np.abs(np.array(fracs) - target)))


@pytest.mark.parametrize("target, flagged", [(0.7, True), (0.3, False)])
def test_two_discs_fraction_partner_flag(target: float, flagged: bool) -> None:
    r = 8
    d = offset_for_fraction(r, target)
    a, b = disc_mask(30, 30, r), disc_mask(30, 30 + d, r)
    far = disc_mask(30, 80, 4)
    res = compute_overlap(masks_of(a, b, far))
    expected = (a & b).sum() / min(a.sum(), b.sum())
    assert expected == pytest.approx(target, abs=0.06)
    np.testing.assert_allclose(res.max_overlap_frac, [expected, expected, 0.0])
    np.testing.assert_array_equal(res.partner_index, [1, 0, -1])
    np.testing.assert_array_equal(res.n_neighbours, [1, 1, 0])
    np.testing.assert_array_equal(res.flagged, [flagged, flagged, False])
    assert res.pairs.shape == (1, 3)
    np.testing.assert_allclose(res.pairs[0], [0, 1, expected])


def test_fraction_is_of_the_smaller_footprint() -> None:
    big, small = disc_mask(30, 30, 12), disc_mask(30, 36, 3)  # small fully inside big
    res = compute_overlap(masks_of(big, small))
    np.testing.assert_allclose(res.max_overlap_frac, [1.0, 1.0])
    assert res.flagged.all()


def test_best_partner_and_neighbour_count() -> None:
    a = disc_mask(30, 40, 8)
    b = disc_mask(30, 52, 8)  # small overlap with a
    c = disc_mask(30, 42, 8)  # large overlap with a
    res = compute_overlap(masks_of(a, b, c))
    assert res.partner_index[0] == 2
    assert res.n_neighbours[0] == 2
    assert res.pairs.shape[0] == 3
    assert np.all(res.pairs[:, 0] < res.pairs[:, 1])


def test_weighted_input_is_binarised_with_params() -> None:
    yy, xx = np.mgrid[:H, :W]
    g1 = np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / 20.0)
    g2 = np.exp(-((yy - 30) ** 2 + (xx - 45) ** 2) / 20.0)
    A = footprints_to_sparse(np.stack([g1, g2]).astype(np.float32))  # tails overlap everywhere
    loose = compute_overlap(A, params=OverlapParams(rel_threshold=0.0))
    strict = compute_overlap(A, params=OverlapParams(rel_threshold=0.2))
    assert loose.n_neighbours[0] == 1
    assert strict.n_neighbours[0] == 0 and strict.partner_index[0] == -1


def test_flag_threshold_param() -> None:
    r = 8
    d = offset_for_fraction(r, 0.7)
    M = masks_of(disc_mask(30, 30, r), disc_mask(30, 30 + d, r))
    assert compute_overlap(M).flagged.all()
    assert not compute_overlap(M, params=OverlapParams(flag_above=0.9)).flagged.any()


def test_empty_and_degenerate() -> None:
    M = masks_of(np.zeros((H, W)), disc_mask(10, 10, 3))
    res = compute_overlap(M)
    np.testing.assert_array_equal(res.max_overlap_frac, [0, 0])
    assert res.pairs.shape == (0, 3)
    none = compute_overlap(sp.csr_matrix((0, H * W), dtype=bool))
    assert none.max_overlap_frac.shape == (0,)
    with pytest.raises(InputFormatError):
        compute_overlap(np.zeros((2, 10), dtype=bool))  # dense is refused
    with pytest.raises(ParameterError):
        OverlapParams(flag_above=1.5)


def test_many_units_stays_sparse_and_fast() -> None:
    """K=2000 small discs on 512x512: one sparse product, no K x K x pixels arrays."""
    k, size = 2000, 512
    rng = np.random.default_rng(0)
    cy, cx = rng.uniform(0, size, k), rng.uniform(0, size, k)
    yy, xx = np.mgrid[-5:6, -5:6]
    inside = yy**2 + xx**2 <= 25
    rows, cols = [], []
    for u in range(k):
        y = int(cy[u]) + yy[inside]
        x = int(cx[u]) + xx[inside]
        ok = (y >= 0) & (y < size) & (x >= 0) & (x < size)
        rows.append(np.full(ok.sum(), u))
        cols.append(y[ok] * size + x[ok])
    r, c = np.concatenate(rows), np.concatenate(cols)
    M = sp.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=(k, size * size))
    t0 = time.perf_counter()
    res = compute_overlap(M)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    # touching pairs are a tiny fraction of all K*(K-1)/2 pairs
    assert 0 < res.pairs.shape[0] < 0.01 * k * (k - 1) / 2
    # spot-check a pair against dense pixel counting
    i, j, frac = res.pairs[0]
    a = M[int(i)].toarray().ravel()
    b = M[int(j)].toarray().ravel()
    assert frac == pytest.approx((a & b).sum() / min(a.sum(), b.sum()))
    assert res.n_neighbours.sum() == 2 * res.pairs.shape[0]


def test_neighbour_trace_corr() -> None:
    rng = np.random.default_rng(1)
    t = 5000
    base = rng.normal(size=t)
    C = np.stack(
        [
            base + 0.1 * rng.normal(size=t),  # 0 ~ 1 strongly
            base + 0.1 * rng.normal(size=t),
            rng.normal(size=t),  # 2 touches 0, independent
            np.full(t, 3.0),  # 3 constant, touches 2
            rng.normal(size=t),  # 4 no neighbours
        ]
    )
    pairs = np.array([[0, 1, 0.6], [0, 2, 0.1], [2, 3, 0.2]])
    out = neighbour_trace_corr(C, pairs)
    expected01 = np.corrcoef(C[0], C[1])[0, 1]
    assert out[0] == pytest.approx(expected01)
    assert out[1] == pytest.approx(expected01)
    assert out[2] == pytest.approx(max(np.corrcoef(C[0], C[2])[0, 1], 0.0))  # vs 0 with const
    assert out[3] == 0.0 and out[4] == 0.0
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(neighbour_trace_corr(C, np.zeros((0, 3))), np.zeros(5))
    with pytest.raises(SchemaError):
        neighbour_trace_corr(C, np.array([[0, 9, 0.5]]))
