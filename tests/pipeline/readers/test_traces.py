"""Traces read a block of units at a time: LazyTraces, the block helpers, v7.3 CNMF-E files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.readers import (
    CnmfeMatReader,
    LazyTraces,
    any_nonzero,
    decimate_traces,
    iter_unit_blocks,
    peak_traces,
    trace_rows,
)
from cellsift.pipeline.readers.traces import zero_traces
from cellsift.schemas import InputFormatError
from tests.pipeline.fixtures import cnmfe_arrays, write_cnmfe_v5, write_cnmfe_v73

K, T = 70, 50


def _lazy(values: np.ndarray, calls: list[tuple[int, int]], chunk: int = 1) -> LazyTraces:
    def read(start: int, stop: int) -> np.ndarray:
        calls.append((start, stop))
        return values[start:stop]

    return LazyTraces(values.shape, read, source=Path("x.mat"), block_units=chunk)


def _values() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(K, T)).astype(np.float32)


def test_lazy_traces_read_only_the_rows_asked_for() -> None:
    values, calls = _values(), []
    lazy = _lazy(values, calls)
    assert lazy.shape == (K, T) and len(lazy) == K and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy[3], values[3])
    np.testing.assert_array_equal(lazy[-1], values[-1])
    np.testing.assert_array_equal(lazy[5:9, 2:7], values[5:9, 2:7])
    assert calls == [(3, 4), (K - 1, K), (5, 9)]
    np.testing.assert_array_equal(np.asarray(lazy), values)  # whole, on request
    np.testing.assert_array_equal(lazy[[4, 1]], values[[4, 1]])
    with pytest.raises(IndexError):
        lazy[K]


def test_unit_blocks_cover_every_row_once_and_follow_the_file_chunks() -> None:
    values, calls = _values(), []
    blocks = list(iter_unit_blocks(_lazy(values, calls), 32))
    assert [start for start, _ in blocks] == [0, 32, 64]
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in blocks]), values)
    calls.clear()
    list(iter_unit_blocks(_lazy(values, calls, chunk=40), 32))  # chunk 40 wide: blocks of 64
    assert calls == [(0, 64), (64, K)]
    eager = list(iter_unit_blocks(values, 32))  # arrays: views, same blocks
    assert [len(rows) for _, rows in eager] == [32, 32, 6] and np.shares_memory(eager[0][1], values)
    np.testing.assert_array_equal(trace_rows(values, 10, 12), values[10:12])


def test_decimation_of_lazy_traces_matches_arrays() -> None:
    values, calls = _values(), []
    lazy = _lazy(values, calls)
    for reduce in ("sample", "sum"):
        eager = decimate_traces(values, 3, 17, reduce=reduce)
        decimated = decimate_traces(lazy, 3, 17, reduce=reduce)
        assert isinstance(decimated, LazyTraces) and decimated.shape == (K, 17)
        np.testing.assert_array_equal(np.asarray(decimated), eager)
    np.testing.assert_array_equal(decimate_traces(values, 3, 17, reduce="sample"), values[:, ::3][:, :17])
    sums = decimate_traces(values, 3, 17, reduce="sum")  # last block padded with zeros
    np.testing.assert_allclose(sums[:, -1], values[:, 48:].sum(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="reduce"):
        decimate_traces(values, 3, 17, reduce="mean")


def test_zero_traces_and_any_nonzero() -> None:
    values, calls = _values(), []
    lazy = _lazy(values, calls)
    zeros = zero_traces(lazy, source=Path("x.mat"))
    assert isinstance(zeros, LazyTraces) and zeros.shape == (K, T)
    assert not any_nonzero(zeros) and any_nonzero(lazy) and not any_nonzero(np.zeros((2, 3)))
    assert isinstance(zero_traces(values, source=Path("x.mat")), np.ndarray)


def test_v73_traces_stay_in_the_file_and_equal_v5(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    fp = np.zeros((3, 12, 10), dtype=np.float32)
    fp[0, 2:5, 2:5] = fp[1, 6:9, 1:4] = fp[2, 8:11, 6:9] = 1.0
    C = rng.random((3, 40)).astype(np.float32)
    fields = cnmfe_arrays(fp, C, C + 0.5, (C > 0.9).astype(np.float32))
    v5 = CnmfeMatReader(write_cnmfe_v5(tmp_path / "v5.mat", **fields)).read()
    v73 = CnmfeMatReader(write_cnmfe_v73(tmp_path / "v73.mat", **fields)).read()
    for name in ("C", "C_raw", "S"):
        assert isinstance(getattr(v73, name), LazyTraces), name
        np.testing.assert_array_equal(np.asarray(getattr(v73, name)), getattr(v5, name))
    assert (v73.A != v5.A).nnz == 0
    np.testing.assert_array_equal(np.asarray(peak_traces(v73)), v5.C)


def test_nan_in_v73_traces_is_found_block_by_block(tmp_path: Path) -> None:
    fp = np.zeros((2, 12, 10), dtype=np.float32)
    fp[0, 2:5, 2:5] = fp[1, 6:9, 1:4] = 1.0
    C = np.ones((2, 30), dtype=np.float32)
    fields = cnmfe_arrays(fp, C)
    fields["C_raw"] = np.where(np.arange(30) == 7, np.nan, 1.0)[None, :].repeat(2, axis=0)
    with pytest.raises(InputFormatError, match="NaN") as info:
        CnmfeMatReader(write_cnmfe_v73(tmp_path / "nan.mat", **fields)).read()
    assert info.value.field == "C_raw"


def test_caiman_traces_stay_in_the_file(tmp_path: Path) -> None:
    from cellsift.pipeline.readers import CaimanHdf5Reader
    from tests.pipeline.fixtures import to_cnmfe_A, write_caiman_hdf5

    rng = np.random.default_rng(2)
    fp = np.zeros((3, 12, 10), dtype=np.float32)
    fp[0, 2:5, 2:5] = fp[1, 6:9, 1:4] = fp[2, 8:11, 6:9] = 1.0
    C = rng.random((3, 40)).astype(np.float32)
    yra = rng.normal(0, 0.1, (3, 40)).astype(np.float32)
    path = write_caiman_hdf5(tmp_path / "r.hdf5", A=to_cnmfe_A(fp), C=C, dims=(12, 10), YrA=yra)
    ext = CaimanHdf5Reader(path).read()
    assert isinstance(ext.C, LazyTraces) and isinstance(ext.C_raw, LazyTraces)
    np.testing.assert_array_equal(np.asarray(ext.C_raw), C + yra)  # float32 sum, as read whole
    assert ext.c_raw_source == "C + YrA" and not any_nonzero(ext.S)
