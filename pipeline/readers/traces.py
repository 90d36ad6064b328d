"""Traces read in blocks of units, so a long session's ``(K, T)`` traces are never held whole.

An :class:`~cellsift.pipeline.readers.base.Extraction` holds its traces ``C``, ``C_raw``
and ``S`` either as NumPy arrays (formats that can only be read whole, e.g. a compressed
MATLAB v5 ``.mat``) or as :class:`LazyTraces`: a ``(K, T)`` float32 view of a dataset in
a file (MATLAB v7.3 / HDF5, zarr) that reads the rows of a few units at a time. Every
step of ingest goes through :func:`iter_unit_blocks` / :func:`trace_rows`, which take
either form, so peak memory is one block of units (``block_units x T`` values), not the
whole session.

A :class:`LazyTraces` also converts to a NumPy array (``np.asarray``) and slices like
one, reading everything it is asked for, so code that needs the whole matrix still works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np

__all__ = [
    "Hdf5Rows",
    "TRACE_BLOCK_BYTES",
    "TRACE_BLOCK_UNITS",
    "LazyTraces",
    "Traces",
    "any_nonzero",
    "decimate_traces",
    "iter_unit_blocks",
    "hdf5_traces",
    "sum_traces",
    "trace_rows",
    "zero_traces",
]

#: Units read at a time (at least; a file chunked wider is read a chunk at a time).
TRACE_BLOCK_UNITS: Final = 32
#: ... but a block never holds more than about this many bytes of float64 values (long sessions).
TRACE_BLOCK_BYTES: Final = 64 << 20


class LazyTraces:
    """``(K, T)`` float32 traces in a file, read ``rows(start, stop)`` at a time.

    Parameters
    ----------
    shape
        ``(K, T)``: units by frames.
    read_rows
        ``read_rows(start, stop)`` returns units ``start:stop`` as ``(stop - start, T)``
        float32 (C-contiguous); it opens the file itself, so the object outlives the reader.
    source
        The file, named in messages.
    block_units
        Units the file stores together (its chunk width); blocks are rounded up to it.
    """

    ndim: Final = 2
    dtype: Final = np.dtype(np.float32)

    def __init__(
        self,
        shape: tuple[int, int],
        read_rows: Callable[[int, int], np.ndarray],
        *,
        source: Path,
        block_units: int = 1,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.source = Path(source)
        self.block_units = max(1, int(block_units))
        self._read_rows = read_rows

    def __repr__(self) -> str:
        return f"LazyTraces(shape={self.shape}, source={str(self.source)!r})"

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        """``K * T``."""
        return self.shape[0] * self.shape[1]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Units ``start:stop`` as ``(n, T)`` float32, C-contiguous."""
        start, stop = max(0, start), min(self.shape[0], stop)
        if stop <= start:
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        block = np.ascontiguousarray(self._read_rows(start, stop), dtype=np.float32)
        if block.shape != (stop - start, self.shape[1]):
            raise ValueError(f"{self.source}: read {block.shape}, expected {(stop - start, self.shape[1])}")
        return block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.rows(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) > 2:
                raise IndexError(f"too many indices for traces of shape {self.shape}")
            row_key, col_key = key[0], (key[1] if len(key) == 2 else slice(None))
        else:
            row_key, col_key = key, slice(None)
        if isinstance(row_key, (int, np.integer)):
            index = int(row_key) + (self.shape[0] if row_key < 0 else 0)
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"unit {row_key} out of range for {self.shape[0]} units")
            return self.rows(index, index + 1)[0][col_key]
        if isinstance(row_key, slice) and row_key.step in (None, 1):
            start, stop, _ = row_key.indices(self.shape[0])
            return self.rows(start, stop)[:, col_key]
        return np.asarray(self)[row_key][:, col_key]

    def map_rows(self, fn: Callable[[np.ndarray], np.ndarray], n_frames: int) -> LazyTraces:
        """A lazy ``fn(rows)`` of these traces, ``(K, n_frames)`` (``fn`` works row-wise)."""
        return LazyTraces(
            (self.shape[0], n_frames),
            lambda start, stop: fn(self.rows(start, stop)),
            source=self.source,
            block_units=self.block_units,
        )


#: Traces as an extraction holds them: in memory, or read from the file in blocks of units.
Traces: TypeAlias = np.ndarray | LazyTraces


class Hdf5Rows:
    """Read rows ``start:stop`` of a ``K x T`` matrix stored in an HDF5 dataset.

    ``transposed``: the dataset holds ``(T, K)`` (MATLAB v7.3 stores the transpose of a
    column-major matrix); otherwise ``(K, T)`` (CaImAn). Each call opens the file and
    returns ``(n, T)`` float32. A plain object (not a closure), so it pickles.
    """

    def __init__(self, path: Path, dataset: str, *, transposed: bool) -> None:
        self.path, self.dataset, self.transposed = Path(path), dataset, transposed

    def __call__(self, start: int, stop: int) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as handle:
            ds = handle[self.dataset]
            block = np.asarray(ds[:, start:stop]).T if self.transposed else np.asarray(ds[start:stop])
        return np.ascontiguousarray(block, dtype=np.float32)


def hdf5_traces(dataset: Any, *, transposed: bool) -> LazyTraces | None:
    """An open h5py ``dataset`` as :class:`LazyTraces` when it is a plain 2-D numeric
    matrix with at least one unit and one frame; else ``None`` (read it whole)."""
    import h5py

    if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 2 or dataset.dtype.kind not in "biuf":
        return None
    rows, cols = (int(s) for s in dataset.shape)
    n_units, n_frames = (cols, rows) if transposed else (rows, cols)
    if n_units == 0 or n_frames == 0:
        return None
    chunks = dataset.chunks
    path = Path(dataset.file.filename)
    return LazyTraces(
        (n_units, n_frames),
        Hdf5Rows(path, dataset.name, transposed=transposed),
        source=path,
        block_units=int(chunks[1] if transposed else chunks[0]) if chunks else 1,
    )


class _SumRows:
    """Rows of ``a + b`` (a picklable ``read_rows``)."""

    def __init__(self, a: Traces, b: Traces) -> None:
        self.a, self.b = a, b

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return trace_rows(self.a, start, stop) + trace_rows(self.b, start, stop)


def sum_traces(a: Traces, b: Traces, *, source: Path) -> Traces:
    """``a + b`` (same shapes): lazy when either is lazy, else an array."""
    if isinstance(a, LazyTraces) or isinstance(b, LazyTraces):
        chunk = max(getattr(a, "block_units", 1), getattr(b, "block_units", 1))
        return LazyTraces(a.shape, _SumRows(a, b), source=source, block_units=chunk)
    return np.asarray(a) + np.asarray(b)


class _Zeros:
    """Rows of zeros (a picklable ``read_rows``)."""

    def __init__(self, n_frames: int) -> None:
        self.n_frames = n_frames

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return np.zeros((stop - start, self.n_frames), dtype=np.float32)


def zero_traces(like: Traces, *, source: Path) -> Traces:
    """All-zero traces of ``like``'s shape: lazy for lazy ``like``, else an array."""
    if isinstance(like, LazyTraces):
        return LazyTraces(like.shape, _Zeros(like.shape[1]), source=source)
    return np.zeros(like.shape, dtype=np.float32)


def trace_rows(values: Traces, start: int, stop: int) -> np.ndarray:
    """Units ``start:stop`` of ``values`` as ``(n, T)`` (a view of an in-memory array)."""
    if isinstance(values, LazyTraces):
        return values.rows(start, stop)
    return np.asarray(values[start:stop])


def _block_size(values: Traces, block_units: int) -> int:
    """``block_units``, rounded up to a multiple that covers the file's chunk width, capped
    at :data:`TRACE_BLOCK_BYTES` of float64 values."""
    size = max(1, int(block_units))
    chunk = values.block_units if isinstance(values, LazyTraces) else 1
    if chunk > size:
        size = -(-chunk // size) * size
    cap = max(1, TRACE_BLOCK_BYTES // (8 * max(1, int(values.shape[1]))))
    return max(1, min(size, cap))


def iter_unit_blocks(
    values: Traces, block_units: int = TRACE_BLOCK_UNITS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, rows)`` over ``values`` in blocks of about ``block_units`` units.

    Blocks are a multiple of ``block_units`` that covers the file's chunk width (each
    compressed chunk is read once), and smaller for very long sessions (at most
    :data:`TRACE_BLOCK_BYTES` of float64 values).
    """
    size = _block_size(values, block_units)
    for start in range(0, int(values.shape[0]), size):
        yield start, trace_rows(values, start, start + size)


def any_nonzero(values: Traces) -> bool:
    """Whether any value of ``values`` is non-zero (read block by block)."""
    if not isinstance(values, LazyTraces):
        return bool(np.any(values))
    return any(bool(np.any(rows)) for _, rows in iter_unit_blocks(values))


def decimate_traces(values: Traces, ratio: int, n_out: int, *, reduce: str) -> Traces:
    """Traces ``ratio`` times longer than the stored frames, brought to ``n_out`` frames.

    ``reduce="sample"`` keeps every ``ratio``-th frame (``C``, ``C_raw``);
    ``reduce="sum"`` sums each block of ``ratio`` frames, zero-padded (``S``: spike counts).
    A :class:`LazyTraces` stays lazy.
    """
    idx = np.arange(n_out) * ratio

    def apply(rows: np.ndarray) -> np.ndarray:
        if reduce == "sample":
            return np.ascontiguousarray(rows[:, idx])
        full = rows[:, : n_out * ratio]
        if full.shape[1] < n_out * ratio:
            full = np.pad(full, ((0, 0), (0, n_out * ratio - full.shape[1])))
        summed = full.reshape(len(rows), n_out, ratio).sum(axis=2, dtype=np.float64)
        return np.ascontiguousarray(summed.astype(np.float32))

    if reduce not in ("sample", "sum"):
        raise ValueError(f"reduce must be 'sample' or 'sum', got {reduce!r}")
    if isinstance(values, LazyTraces):
        return values.map_rows(apply, n_out)
    return apply(np.asarray(values))
