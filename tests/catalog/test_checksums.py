"""Checksums recorded at write time: table parts (sidecars) and zarr stores (a list inside the store)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog import record_file, record_store, verify_file, verify_store, write_parquet_atomic
from cellsift.catalog.checksums import STORE_MANIFEST, read_store_manifest, sidecar_path


def _table(n: int) -> pa.Table:
    return pa.table({"unit_id": np.arange(n, dtype=np.int64), "x": np.linspace(0, 1, n)})


def test_writer_records_and_a_truncated_or_altered_part_is_damaged(tmp_path):
    part = tmp_path / "tables" / "cells" / "c" / "a" / "s" / "part-0.parquet"
    write_parquet_atomic(_table(500), part, tmp_root=tmp_path / "tmp")
    record = json.loads(sidecar_path(part).read_text())
    assert record["by"] == "writer" and record["size"] == part.stat().st_size
    assert sidecar_path(part).name.startswith(".")  # hidden: table readers skip it
    assert verify_file(part) == ("ok", "")
    # same size, one byte changed: only the full check sees it
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert verify_file(part, full=False)[0] == "ok"
    assert verify_file(part) == ("damaged", "content differs from its recorded SHA-256")
    # truncated: the size says it
    os.truncate(part, 100)
    state, detail = verify_file(part, full=False)
    assert state == "damaged" and detail.startswith("100 bytes,")
    part.unlink()
    assert verify_file(part)[0] == "missing"


def test_rewrite_keeps_previous_digest_so_an_interrupted_rename_is_not_damage(tmp_path):
    part = tmp_path / "part-0.parquet"
    write_parquet_atomic(_table(10), part, tmp_root=tmp_path / "tmp")
    old = part.read_bytes()
    # the writer of version 2 recorded its checksum, then died before the rename
    staged = tmp_path / "staged.parquet"
    pq.write_table(_table(20), staged)
    record_file(part, staged=staged)
    assert part.read_bytes() == old and verify_file(part) == ("ok", "")
    os.replace(staged, part)
    assert verify_file(part) == ("ok", "")


def test_lazy_record_is_trusted_only_until_the_file_is_rewritten(tmp_path):
    part = tmp_path / "part-0.parquet"
    pq.write_table(_table(10), part)
    assert verify_file(part)[0] == "unrecorded"
    record_file(part, by="check")
    assert verify_file(part) == ("ok", "")
    pq.write_table(_table(30), part)  # a writer that does not record rewrote it
    os.utime(part, ns=(1, 1))
    assert verify_file(part) == ("unrecorded", "rewritten since its checksum was recorded")


def test_store_checksums_catch_a_deleted_a_truncated_and_an_altered_chunk(tmp_path):
    import zarr

    store = tmp_path / "s.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=3)
    arr = group.create_array("movie", shape=(40, 8, 8), chunks=(10, 8, 8), dtype="uint16")
    arr[:] = np.arange(40 * 64, dtype=np.uint16).reshape(40, 8, 8)
    n = record_store(store)
    manifest = read_store_manifest(store)
    assert manifest is not None and n == len(manifest["files"]) >= 5  # 4 chunks + metadata
    assert STORE_MANIFEST not in manifest["files"]
    assert verify_store(store, manifest) == []
    # the store still opens, with the checksum list at its root
    assert int(zarr.open_group(str(store), mode="r")["movie"][39, 7, 7]) == 40 * 64 - 1
    chunks = sorted(p for p in (store / "movie").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunks[0].unlink()
    os.truncate(chunks[1], 3)
    data = bytearray(chunks[2].read_bytes())
    data[-1] ^= 0xFF
    chunks[2].write_bytes(bytes(data))
    found = {p.path: p.detail for p in verify_store(store, manifest)}
    assert found[chunks[0]] == "file is missing"
    assert found[chunks[1]].startswith("3 bytes,")
    assert found[chunks[2]] == "content differs from its recorded SHA-256"
    assert chunks[3] not in found
    assert {p.path for p in verify_store(store, manifest, full=False)} == {chunks[0], chunks[1]}


def test_store_checksums_reuse_the_writers_digests_of_unchanged_files(tmp_path):
    import hashlib

    import zarr

    from cellsift.catalog import note_store_files
    from cellsift.catalog.checksums import STORE_PENDING, file_digest

    store = tmp_path / "s.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=3)
    arr = group.create_array("movie", shape=(20, 4, 4), chunks=(10, 4, 4), dtype="uint8")
    arr[:] = 7
    first, second = (store / "movie/c/0/0/0"), (store / "movie/c/1/0/0")
    noted = {}
    for path in (first, second):
        stat = path.stat()
        noted[path.relative_to(store).as_posix()] = ("f" * 64, stat.st_size, stat.st_mtime_ns)
    note_store_files(store, noted)
    assert (store / STORE_PENDING).is_file()
    os.utime(second, ns=(1, 1))  # rewritten since it was noted: hashed from its content
    record_store(store)
    files = read_store_manifest(store)["files"]
    assert files["movie/c/0/0/0"][0] == "f" * 64  # the writer's digest, not read back
    assert files["movie/c/1/0/0"] == list(file_digest(second))
    assert files["movie/zarr.json"][0] == hashlib.sha256((store / "movie/zarr.json").read_bytes()).hexdigest()
    assert not (store / STORE_PENDING).exists() and STORE_PENDING not in files
