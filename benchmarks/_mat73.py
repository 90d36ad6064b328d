"""Rewrite a simulated CNMF-E ``results`` .mat (MATLAB v5, as ``cellsift simulate`` writes
it) as MATLAB v7.3 would save it: HDF5 with the 512-byte MAT header, every matrix stored
transposed (column-major), chunked and deflate-compressed, ``A`` as a sparse group.

The flat-memory benchmarks need it: a v5 ``.mat`` can only be read whole (scipy), while
cellsift reads the traces of a v7.3 file a block of units at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["results_to_v73", "write_results_v73"]

_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 ."


def _dense(group: Any, name: str, value: Any) -> None:
    arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    big = arr.size > 4096
    ds = group.create_dataset(
        name,
        data=arr.T,  # MATLAB is column-major: HDF5 holds the transpose
        chunks=True if big else None,
        compression="gzip" if big else None,
        compression_opts=3 if big else None,
    )
    ds.attrs["MATLAB_class"] = np.bytes_("double")


def _sparse(group: Any, name: str, value: sp.spmatrix) -> None:
    csc = sp.csc_matrix(value)
    csc.sort_indices()
    sub = group.create_group(name)
    sub.attrs["MATLAB_class"] = np.bytes_("double")
    sub.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
    sub.create_dataset("data", data=csc.data.astype(np.float64), compression="gzip", compression_opts=3)
    sub.create_dataset("ir", data=csc.indices.astype(np.uint64), compression="gzip", compression_opts=3)
    sub.create_dataset("jc", data=csc.indptr.astype(np.uint64))


def _struct(group: Any, struct: Any) -> None:
    group.attrs["MATLAB_class"] = np.bytes_("struct")
    for name in struct._fieldnames:
        value = getattr(struct, name)
        if hasattr(value, "_fieldnames"):
            _struct(group.create_group(name), value)
        elif sp.issparse(value):
            _sparse(group, name, value)
        elif isinstance(value, str):
            ds = group.create_dataset(name, data=np.array([ord(c) for c in value], dtype=np.uint16)[:, None])
            ds.attrs["MATLAB_class"] = np.bytes_("char")
        else:
            _dense(group, name, value)


def results_to_v73(src: Path, dst: Path) -> Path:
    """Write ``src``'s ``results`` struct to ``dst`` as a MATLAB v7.3 file; return ``dst``."""
    import h5py
    import scipy.io

    mat = scipy.io.loadmat(str(src), struct_as_record=False, squeeze_me=False, variable_names=["results"])
    results = mat["results"][0, 0]
    _squeeze_struct(results)
    with h5py.File(dst, "w", userblock_size=512) as handle:
        _struct(handle.create_group("results"), results)
    header = _HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(dst, "r+b") as fh:
        fh.write(header)
    return dst


class _Struct:
    """A plain struct for :func:`_struct` (what scipy's ``mat_struct`` offers)."""

    def __init__(self, **fields: Any) -> None:
        self._fieldnames = list(fields)
        for name, value in fields.items():
            setattr(self, name, value)


def write_results_v73(
    path: Path,
    *,
    A: sp.spmatrix,
    C: np.ndarray,
    C_raw: np.ndarray,
    S: np.ndarray,
    height: int,
    width: int,
    fps: float,
) -> Path:
    """Write a CNMF-E ``results`` struct (``A`` column-major pixels, traces ``K x T``) as v7.3."""
    import h5py

    k = A.shape[1]
    results = _Struct(
        A=sp.csc_matrix(A, dtype=np.float64),
        C=C,
        C_raw=C_raw,
        S=S,
        ids=np.arange(1, k + 1, dtype=np.float64)[None, :],
        options=_Struct(d1=float(height), d2=float(width)),
        Fs=float(fps),
    )
    with h5py.File(path, "w", userblock_size=512) as handle:
        _struct(handle.create_group("results"), results)
    header = _HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)
    return path


def _squeeze_struct(struct: Any) -> None:
    """Unwrap the 1x1 object arrays scipy leaves around nested structs and strings."""
    for name in struct._fieldnames:
        value = getattr(struct, name)
        if isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
            value = value.reshape(-1)[0]
        if isinstance(value, np.ndarray) and value.dtype.kind == "U":
            value = str(value.reshape(-1)[0]) if value.size else ""
        if hasattr(value, "_fieldnames"):
            _squeeze_struct(value)
        setattr(struct, name, value)
