"""One session's ingest task: a new session hashed while it is read and written gives the
same store (values, chunks, attributes, input hash) as one hashed first; a failure still
records the input hash; the prefetch option is checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cellsift.pipeline.ingest import SessionSpec, compute_input_hash
from cellsift.pipeline.ingest.manifest import read_manifest
from cellsift.pipeline.ingest.staging import IngestOptions, StageRequest, stage_session
from cellsift.schemas import ParameterError
from tests.pipeline.fixtures import make_session, write_manifest_csv


def _spec(tmp_path: Path) -> SessionSpec:
    s = make_session(tmp_path / "raw", n_frames=70, frames_per_file=25, seed=3, mat="v5")
    (spec,) = read_manifest(write_manifest_csv(tmp_path / "cohort.csv", [s.row("c", "m", "d1", fps=20)]))
    return spec


def _request(spec: SessionSpec, tmp_path: Path, name: str, *, known_hash: str = "") -> StageRequest:
    staging = tmp_path / name / "tmp" / "run"
    staging.mkdir(parents=True)
    return StageRequest(
        spec=spec,
        lake=str(tmp_path / name),
        staging=str(staging),
        options=IngestOptions(chunk_frames=16, decode_block_frames=9, prefetch_mib=1),
        known_hash=known_hash,
    )


def test_hashing_alongside_gives_the_same_store_as_hashing_first(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    new = _request(spec, tmp_path, "new")
    staged_new = stage_session(None, new)
    # a good version with another hash in the lake: hashed first, then read and written
    first = stage_session(None, _request(spec, tmp_path, "old", known_hash="0" * 64))
    assert staged_new.status == first.status == "staged", (staged_new.error, first.error)
    expected, hashes = compute_input_hash(new.spec, chunk_frames=16, check_orientation=True)
    assert staged_new.input_hash == first.input_hash == expected
    assert Path(staged_new.store).name.endswith(f"-{expected[:16]}.zarr")
    assert [p.name for p in Path(new.staging).iterdir() if p.suffix == ".zarr"] == [
        Path(staged_new.store).name
    ]
    a, b = xr.open_zarr(staged_new.store), xr.open_zarr(first.store)
    assert a.attrs["input_hash"] == expected and json.loads(a.attrs["source_hashes"]) == hashes
    assert list(a.attrs) == list(b.attrs)  # same attributes in the same order
    for key in a.attrs:
        if key != "ingested_at":
            assert a.attrs[key] == b.attrs[key], key
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert a[name].encoding.get("chunks") == b[name].encoding.get("chunks"), name


def test_a_failure_records_the_hash_computed_alongside(tmp_path: Path) -> None:
    request = _request(_spec(tmp_path), tmp_path, "bad")
    request.spec.extraction.write_bytes(b"not a MATLAB file")
    failed = stage_session(None, request)
    assert failed.status == "failed" and failed.error
    assert failed.input_hash == compute_input_hash(request.spec, chunk_frames=16, check_orientation=True)[0]
    assert not any(p.suffix == ".zarr" for p in Path(request.staging).iterdir())


def test_prefetch_option_is_checked() -> None:
    with pytest.raises(ParameterError, match="prefetch_mib"):
        IngestOptions(prefetch_mib=0)
