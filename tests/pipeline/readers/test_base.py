"""Shared reader helpers: dense footprints to sparse (``dense_to_csc``) and block sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.readers.base import FOOTPRINT_BLOCK, dense_to_csc, footprint_block_units


def reference_csc(stack: np.ndarray) -> sp.csc_matrix:
    """The straightforward conversion: cast to float32, one column per unit, zeros dropped."""
    k = stack.shape[0]
    return sp.csc_matrix(np.asarray(stack, dtype=np.float32).reshape(k, -1).T)


def assert_same_csc(got: sp.csc_matrix, want: sp.csc_matrix) -> None:
    """Same shape, dtype, stored values (NaN included), row indices and column pointers."""
    assert got.format == "csc" and got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)  # NaN == NaN for assert_array_equal
    assert got.has_sorted_indices


def _blobs(k: int, h: int, w: int, seed: int) -> np.ndarray:
    """``(k, h, w)`` float64 blobs on zeros, as Minian stores footprints."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((k, h, w))
    for i in range(k):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        out[i] = np.where(blob > 0.05, blob, 0.0)
    return out


def test_dense_to_csc_matches_reference_on_blobs() -> None:
    stack = _blobs(9, 17, 23, seed=1)
    stack[3] = 0.0  # an empty unit
    assert_same_csc(dense_to_csc(stack), reference_csc(stack))


def test_dense_to_csc_edge_values_follow_the_float32_cast() -> None:
    """-0.0 and values below float32's range are zeros, NaN and inf are kept, as in the cast."""
    stack = np.zeros((3, 4, 5))
    stack[0, 1, 2] = -0.0
    stack[0, 2, 3] = 1e-50  # nonzero bits in float64, 0 in float32
    stack[1, 0, 0] = np.nan
    stack[1, 3, 4] = np.inf
    stack[2, 2, 2] = -1.5
    got = dense_to_csc(stack)
    assert_same_csc(got, reference_csc(stack))
    assert got.nnz == 3


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i2", "|u1", "|b1", "<f2"])
def test_dense_to_csc_any_stored_dtype(dtype: str) -> None:
    stack = (_blobs(4, 6, 7, seed=2) * 3).astype(dtype)
    assert_same_csc(dense_to_csc(stack), reference_csc(stack))


def test_dense_to_csc_non_contiguous_and_empty() -> None:
    stack = np.ascontiguousarray(_blobs(5, 8, 6, seed=3).transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not stack.flags.c_contiguous
    assert_same_csc(dense_to_csc(stack), reference_csc(stack))
    empty = dense_to_csc(np.zeros((0, 8, 6)))
    assert empty.shape == (48, 0) and empty.nnz == 0 and empty.dtype == np.float32


def test_footprint_block_units_bounds_bytes() -> None:
    assert footprint_block_units(20, 30) == FOOTPRINT_BLOCK
    units = footprint_block_units(480, 752, itemsize=8)
    assert 1 <= units < FOOTPRINT_BLOCK and units * 480 * 752 * 8 <= 32 << 20
    assert footprint_block_units(10_000, 10_000) == 1
