"""The Minian reader gives exactly what a straightforward whole-array conversion gives,
whatever the chunking and axis order, while reading footprints a block of chunks at a time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.readers import Extraction, MinianZarrReader
from cellsift.pipeline.readers.base import footprint_block_units
from cellsift.pipeline.readers.zarr_chunks import ChunkRows
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import write_minian
from tests.pipeline.readers.test_base import assert_same_csc, reference_csc

H, W, K, T = 20, 26, 40, 60


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A Minian folder of ``K`` blob footprints (float64, a unit per chunk), C, S, YrA."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W]
    fp = np.zeros((K, H, W))
    for i in range(K):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 5.0) * rng.uniform(0.5, 2.0)
        fp[i] = np.where(blob > 0.05, blob, 0.0)
    fp[5, 0, 0] = 1e-50  # zero once cast to float32, as before
    C = np.abs(rng.normal(size=(K, T))).cumsum(axis=1) / 10
    S = np.where(rng.uniform(size=(K, T)) > 0.9, 1.0, 0.0)
    YrA = rng.normal(scale=0.1, size=(K, T))
    ids = np.arange(K) * 3 + 2
    labels = ids.copy()
    labels[[3, 9]] = -1
    return write_minian(
        tmp_path / "minian", footprints=fp, C=C, S=S, YrA=YrA, unit_ids=ids, unit_labels=labels
    )


def _rewrite(folder: Path, name: str, *, chunks: tuple[int, ...] | None = None, dims: Any = None) -> None:
    """Store ``<name>.zarr`` again with other chunks, axis order or unit order (zarr v2)."""
    import xarray as xr

    ds = xr.open_zarr(folder / f"{name}.zarr", consolidated=False, chunks=None).load()
    shutil.rmtree(folder / f"{name}.zarr")
    for var in ds.variables.values():
        var.encoding = {}
    if dims == "reversed_units":
        ds = ds.isel(unit_id=slice(None, None, -1))
    elif dims is not None:
        ds = ds.transpose(*dims)
    encoding = {name: {"chunks": chunks}} if chunks is not None else {}
    ds.to_zarr(folder / f"{name}.zarr", zarr_format=2, consolidated=False, encoding=encoding)


def _reference(folder: Path) -> dict[str, Any]:
    """Every array read whole through xarray and converted the straightforward way."""
    import xarray as xr

    def var(name: str, dims: tuple[str, ...]) -> Any:
        return xr.open_zarr(folder / f"{name}.zarr", consolidated=False, chunks=None)[name].transpose(*dims)

    a = var("A", ("unit_id", "height", "width"))
    ids = a["unit_id"].values
    traces = {
        n: var(n, ("unit_id", "frame")).sel(unit_id=ids).values.astype(np.float32) for n in ("C", "S", "YrA")
    }
    return {
        "A": reference_csc(a.values),
        "ids": ids,
        "C": traces["C"],
        "C_raw": traces["C"] + traces["YrA"],
        "S": traces["S"],
        "max_proj": var("max_proj", ("height", "width")).values.astype(np.float32),
        "labels": a["unit_labels"].values,
    }


def _assert_matches(ext: Extraction, ref: dict[str, Any]) -> None:
    assert_same_csc(ext.A, ref["A"])
    np.testing.assert_array_equal(ext.unit_ids, ref["ids"])
    for name in ("C", "C_raw", "S"):
        values = getattr(ext, name)
        assert isinstance(values, np.ndarray) and values.dtype == np.float32 and values.flags.c_contiguous
        np.testing.assert_array_equal(values, ref[name])
    np.testing.assert_array_equal(ext.extras["max_proj_extraction"], ref["max_proj"])
    np.testing.assert_array_equal(ext.unit_vars["minian_unit_labels"], ref["labels"])
    assert ext.c_raw_source == "C + YrA" and ext.pixel_order == "C" and ext.dims == (H, W)


@pytest.mark.parametrize(
    "layout",
    [
        {},  # as save_minian writes it: a unit per chunk
        {"A": {"chunks": (3, H, W)}},  # several units per chunk, a partial last chunk
        {"A": {"chunks": (2, 7, 9)}, "max_proj": {"chunks": (6, 5)}},  # chunked in space too
        {"C": {"dims": "reversed_units"}, "S": {"dims": "reversed_units"}},  # units in another order
        {"A": {"dims": ("width", "unit_id", "height")}, "C": {"dims": ("frame", "unit_id")}},  # read by zarr
        {"A": {"chunks": (64, H, W)}},  # one chunk larger than a block
    ],
)
def test_reader_matches_whole_array_conversion(folder: Path, layout: dict[str, dict[str, Any]]) -> None:
    for name, how in layout.items():
        _rewrite(folder, name, **how)
    _assert_matches(MinianZarrReader(folder).read(), _reference(folder))


def test_footprints_read_in_chunk_aligned_bounded_blocks(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rewrite(folder, "A", chunks=(3, H, W))
    calls: list[tuple[int, int]] = []
    real_rows = ChunkRows.rows

    def spy(self: ChunkRows, start: int, stop: int) -> np.ndarray | None:
        if self.folder.name == "A":
            calls.append((start, stop))
        return real_rows(self, start, stop)

    monkeypatch.setattr(ChunkRows, "rows", spy)
    ext = MinianZarrReader(folder).read()
    step = footprint_block_units(H, W, itemsize=8)
    assert calls == [(0, 30), (30, 60)] and step >= 30  # whole chunks, at most one block of units
    assert ext.A.shape == (H * W, K) and ext.A.nnz > 0


def test_missing_chunk_is_read_by_zarr(folder: Path) -> None:
    """A missing chunk file is zarr's fill value (NaN for Minian), so the footprint is refused."""
    (folder / "A.zarr" / "A" / "7.0.0").unlink()
    with pytest.raises(InputFormatError, match="A"):
        MinianZarrReader(folder).read()


def test_reference_conversion_is_the_plain_one(folder: Path) -> None:
    """The reference itself: dense footprints read back from the sparse matrix."""
    ref = _reference(folder)
    dense = np.asarray(ref["A"].toarray()).T.reshape(K, H, W)
    assert (
        isinstance(ref["A"], sp.csc_matrix)
        and dense[5, 0, 0] == 0
        and np.count_nonzero(dense) == ref["A"].nnz
    )
