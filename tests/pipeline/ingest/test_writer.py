"""Writing a session store: whole-chunk movie writes, chunk copies, footprint blocks in
either pixel order, the labels table; the decoding thread (errors reach the caller, nothing
is left behind) and stores that are the same whether the traces were read whole (v5) or
a block of units at a time (v7.3)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

from cellsift.pipeline.ingest import ingest_cohort
from cellsift.pipeline.ingest.inputs import read_session_inputs
from cellsift.pipeline.ingest.manifest import read_manifest
from cellsift.pipeline.ingest.streaming import ChunkFiles, chunk_copies
from cellsift.pipeline.ingest.writer import (
    aligned_blocks,
    footprint_block,
    labels_table,
    write_session_store,
)
from cellsift.pipeline.readers import LazyTraces, UnitLabels
from cellsift.schemas import LABELS_SCHEMA, InputFormatError
from tests.pipeline.fixtures import make_session, write_manifest_csv


def test_aligned_blocks_cover_whole_chunks() -> None:
    frames = np.arange(23)[:, None, None] * np.ones((1, 2, 3))
    blocks = [frames[i : i + 7] for i in range(0, 23, 7)]  # 7, 7, 7, 2
    out = list(aligned_blocks(iter(blocks), 5))
    assert [len(b) for b in out] == [5, 5, 10, 3]
    np.testing.assert_array_equal(np.concatenate(out), frames)


def test_footprint_block_reads_either_pixel_order() -> None:
    h, w = 3, 4
    images = np.arange(2 * h * w, dtype=np.float32).reshape(2, h, w)
    column_major = sp.csc_matrix(np.stack([im.ravel(order="F") for im in images], axis=1))
    row_major = sp.csc_matrix(np.stack([im.ravel(order="C") for im in images], axis=1))
    np.testing.assert_array_equal(footprint_block(column_major, 0, 2, h, w, "F"), images)
    np.testing.assert_array_equal(footprint_block(row_major, 1, 2, h, w, "C"), images[1:])


def test_labels_table() -> None:
    assert labels_table("c", "m", "s", []) is None
    sets = [
        UnitLabels(np.array([1, 2]), ("good", "bad"), source="csv", reasons=(None, "dendrite")),
        UnitLabels(np.array([2]), ("good",), source="suite2p_iscell"),
    ]
    table = labels_table("c", "m", "s", sets)
    assert table is not None and table.schema.equals(LABELS_SCHEMA)
    rows = table.to_pylist()
    assert [(r["unit_id"], r["label"], r["source"]) for r in rows] == [
        (1, "good", "csv"),
        (2, "bad", "csv"),
        (2, "good", "suite2p_iscell"),
    ]
    assert {r["cohort"] for r in rows} == {"c"} and rows[1]["reason"] == "dendrite"


def test_chunk_copies_are_fresh_whole_chunks_of_the_stored_dtype() -> None:
    frames = np.arange(23 * 2 * 3, dtype=np.float64).reshape(23, 2, 3)
    blocks = [frames[:7], frames[7:9], frames[9:]]
    out = list(chunk_copies(iter(blocks), 5, np.dtype(np.float32)))
    assert [len(b) for b in out] == [5, 5, 5, 5, 3]
    assert all(b.dtype == np.float32 for b in out)
    assert not any(np.shares_memory(b, frames) for b in out)
    np.testing.assert_array_equal(np.concatenate(out), frames.astype(np.float32))
    assert list(chunk_copies(iter([]), 5, np.dtype(np.uint8))) == []


def _session(tmp_path: Path, mat: str) -> Path:
    s = make_session(tmp_path / mat, n_frames=70, frames_per_file=25, seed=3, mat=mat)
    return write_manifest_csv(tmp_path / f"{mat}.csv", [s.row("c", "m", "d1", fps=20)])


def test_v73_and_v5_give_the_same_store(tmp_path: Path) -> None:
    stores = []
    for mat in ("v5", "v73"):
        (result,) = ingest_cohort(_session(tmp_path, mat), tmp_path / f"lake-{mat}")
        assert result.status == "ingested", result.error
        stores.append(xr.open_zarr(tmp_path / f"lake-{mat}" / result.dataset_path))
    v5, v73 = stores
    for name in ("movie", "A", "C", "C_raw", "S", "max_proj", "time_s"):
        np.testing.assert_array_equal(v5[name].values, v73[name].values, err_msg=name)
        assert v5[name].encoding["chunks"] == v73[name].encoding["chunks"], name
    assert v5.attrs["orientation_check"] == v73.attrs["orientation_check"] == "confirmed"


def test_a_decoding_error_reaches_the_caller_and_nothing_is_left(tmp_path: Path) -> None:
    (spec,) = read_manifest(_session(tmp_path, "v73"))
    inputs = read_session_inputs(spec, decode_block_frames=16, check_orientation=True)
    assert isinstance(inputs.ext.C, LazyTraces)  # v7.3: the traces stay in the file
    good = inputs.frames
    assert good is not None

    def failing() -> Iterator[np.ndarray]:
        yield next(good)
        raise InputFormatError("chunk 1.avi is truncated", path=tmp_path / "1.avi", field="video")

    before = {t.name for t in threading.enumerate()}
    staging, final = tmp_path / "staging", tmp_path / "final.zarr"
    staging.mkdir()
    with pytest.raises(InputFormatError, match="truncated"):
        write_session_store(
            staging,
            final,
            inputs=dataclasses.replace(inputs, frames=failing()),
            attrs={"cohort": "c"},
            chunk_frames=8,
            check_orientation=True,
            extraction=spec.extraction,
        )
    assert not final.exists() and not any(staging.iterdir())
    assert "ingest-decode" not in {t.name for t in threading.enumerate()} - before


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_chunk_files_read_back_through_zarr(tmp_path: Path, dtype: str) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    movie = group.create_array(
        "movie", shape=(25, 6, 7), chunks=(10, 6, 7), dtype=dtype, compressors=[ZstdCodec(level=1)]
    )
    frames = (np.arange(25 * 6 * 7) % 251).reshape(25, 6, 7).astype(dtype)
    direct = ChunkFiles.of(movie, tmp_path / "s.zarr")
    assert direct is not None
    direct.write(0, frames[:10])
    direct.write(1, frames[10:20])
    movie[20:25] = frames[20:]  # the last, partial chunk goes through zarr
    np.testing.assert_array_equal(zarr.open_group(tmp_path / "s.zarr", mode="r")["movie"][...], frames)
    tiled = group.create_array("tiled", shape=(25, 6, 7), chunks=(10, 3, 7), dtype=dtype)
    assert ChunkFiles.of(tiled, tmp_path / "s.zarr") is None  # chunks not spanning the frame: zarr writes
