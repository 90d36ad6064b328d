"""Reading zarr v2 chunk files directly (``ChunkRows``) gives exactly what zarr reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr

from cellsift.pipeline.readers.zarr_chunks import ChunkRows


def _write(
    path: Path,
    values: np.ndarray,
    chunks: tuple[int, ...],
    *,
    compressor: Any = "blosc",
    separator: str = ".",
    filters: Any = None,
    zarr_format: int = 2,
) -> Path:
    """Write ``values`` as a zarr array at ``path`` (every chunk written)."""
    codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1) if compressor == "blosc" else compressor
    kwargs: dict[str, Any] = {"compressors": codec if zarr_format == 2 else None}
    if zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": separator}
        kwargs["filters"] = filters
    arr = zarr.create_array(
        store=str(path),
        shape=values.shape,
        chunks=chunks,
        dtype=values.dtype,
        zarr_format=zarr_format,  # type: ignore[arg-type]
        fill_value=np.nan if values.dtype.kind == "f" else 0,
        **kwargs,
    )
    arr[...] = values
    return path


def _values(shape: tuple[int, ...], dtype: str = "<f8", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.normal(size=shape)
    out[out < 0.5] = 0.0
    return out.astype(dtype)


@pytest.mark.parametrize(
    ("shape", "chunks", "compressor", "separator", "dtype"),
    [
        ((7, 6, 5), (1, 6, 5), "blosc", ".", "<f8"),  # Minian's footprints: a unit per chunk
        ((10, 6, 5), (3, 6, 5), "blosc", ".", "<f8"),  # a partial last chunk
        ((10, 6, 5), (4, 4, 2), "blosc", "/", "<f8"),  # chunked in space too, nested keys
        ((9, 40), (2, 15), numcodecs.Zstd(level=1), ".", "<f4"),  # traces, chunked in time
        ((9, 40), (9, 40), None, ".", ">i2"),  # uncompressed, big-endian
    ],
)
def test_rows_equal_zarr(
    tmp_path: Path,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    compressor: Any,
    separator: str,
    dtype: str,
) -> None:
    values = _values(shape, dtype)
    path = _write(tmp_path / "a", values, chunks, compressor=compressor, separator=separator)
    rows = ChunkRows.open(path)
    assert rows is not None and rows.shape == shape and rows.block_rows == chunks[0]
    stored = zarr.open_array(str(path), mode="r")
    for start, stop in [(0, shape[0]), (0, 1), (2, 7), (shape[0] - 1, shape[0] + 5)]:
        got = rows.rows(start, stop)
        assert got is not None and got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, stored[start:stop])


def test_dims_come_from_xarray_attributes(tmp_path: Path) -> None:
    import xarray as xr

    da = xr.DataArray(_values((4, 3, 2)), dims=("unit_id", "height", "width"), name="A")
    da.to_dataset().to_zarr(tmp_path / "A.zarr", zarr_format=2, consolidated=False)
    rows = ChunkRows.open(tmp_path / "A.zarr" / "A")
    assert rows is not None and rows.dims == ("unit_id", "height", "width")
    bare = ChunkRows.open(_write(tmp_path / "bare", _values((4, 3)), (2, 3)))
    assert bare is not None and bare.dims is None


def test_missing_or_corrupt_chunk_gives_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "a", _values((6, 4, 4)), (2, 4, 4))
    rows = ChunkRows.open(path)
    assert rows is not None
    (path / "1.0.0").unlink()
    assert rows.rows(0, 2) is not None  # chunks before the gap still read
    assert rows.rows(0, 6) is None and rows.rows(2, 3) is None
    (path / "2.0.0").write_bytes(b"\x02\x01garbage-not-blosc")
    assert rows.rows(4, 6) is None


def test_layouts_left_to_zarr(tmp_path: Path) -> None:
    values = _values((4, 6))
    filtered = _write(tmp_path / "f", values, (2, 6), filters=[numcodecs.Delta(dtype="<f8")])
    v3 = _write(tmp_path / "v3", values, (2, 6), zarr_format=3)
    assert ChunkRows.open(filtered) is None  # filters
    assert ChunkRows.open(v3) is None  # zarr v3 metadata (zarr.json)
    assert ChunkRows.open(tmp_path / "nothing") is None
