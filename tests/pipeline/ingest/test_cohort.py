"""Tests of ingest: raw cohort files -> zarr session datasets + catalog rows + labels table."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr

from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.store import STATUS_FAILED, STATUS_INGESTED, Catalog
from cellsift.pipeline.ingest import (
    IngestOptions,
    IngestResult,
    SessionSpec,
    ingest_cohort,
    ingest_session,
    read_manifest,
)
from cellsift.pipeline.ingest import inputs as inputs_module
from cellsift.pipeline.ingest import writer as writer_module
from cellsift.pipeline.readers import MiniscopeAviReader
from cellsift.schemas.dataset import validate_session_dataset
from cellsift.schemas.dims import DATASET_SCHEMA_VERSION
from cellsift.schemas.errors import ParameterError
from cellsift.schemas.tables import LABELS_SCHEMA
from tests.conftest import tiny_config
from tests.pipeline.fixtures import (
    SyntheticSession,
    make_session,
    write_cnmfe_v5,
    write_manifest_csv,
)

H, W = 32, 40


def _decode_avis(folder: Path) -> np.ndarray:
    frames = []
    for index in range(len(list(folder.glob("*.avi")))):
        with av.open(str(folder / f"{index}.avi")) as container:
            frames += [f.to_ndarray() for f in container.decode(video=0)]
    return np.stack(frames)


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """Every file below ``root`` with its size and mtime."""
    return sorted(
        (p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticSession]]:
    """Two good sessions (v5 and v7.3 .mat) and their manifest; copy before changing."""
    raw = tmp_path_factory.mktemp("raw")
    s1 = make_session(raw / "m1" / "d1", seed=1, mat="v5")
    s2 = make_session(raw / "m1" / "d2", seed=2, mat="v73", codec="rawvideo", ids=np.array([3, 1, 2]))
    write_manifest_csv(
        raw / "cohort.csv",
        [
            s1.row("c1", "m1", "d1", stage="conditioning", day=1),
            s2.row("c1", "m1", "d2", stage="extinction", day=2, fps=25),
        ],
    )
    return raw, [s1, s2]


@pytest.fixture
def raw(cohort: tuple[Path, list[SyntheticSession]], tmp_path: Path) -> Path:
    """A private copy of the raw cohort, with a manifest of relative paths."""
    src, sessions = cohort
    dst = tmp_path / "raw"
    shutil.copytree(src, dst)
    rows = []
    for spec in read_manifest(src / "cohort.csv"):
        row = {
            "cohort": spec.cohort,
            "animal": spec.animal,
            "session": spec.session,
            "stage": spec.stage,
            "day": spec.day,
            "fps": spec.fps or "",
        }
        for column in ("video", "extraction", "events", "labels"):
            row[column] = Path(getattr(spec, column)).relative_to(src.resolve()).as_posix()
        rows.append(row)
    write_manifest_csv(dst / "cohort.csv", rows)
    return dst


# =========================================================================== round trip


def test_round_trip(raw: Path, cohort: tuple[Path, list[SyntheticSession]], tmp_path: Path) -> None:
    _, truth = cohort
    lake = tmp_path / "lake"
    seen: list[IngestResult] = []
    results = ingest_cohort(raw / "cohort.csv", lake, progress=seen.append)
    assert [r.status for r in results] == ["ingested", "ingested"], results
    assert seen == results
    catalog = Catalog(lake)
    for result, session, fps in zip(results, truth, (20.0, 25.0), strict=True):
        assert (result.n_frames, result.n_units) == (60, 3)
        rec = catalog.get("c1", "m1", result.session)
        assert rec is not None and rec.status == STATUS_INGESTED and rec.dataset_path == result.dataset_path
        assert rec.dataset_path == f"sessions/c1/m1/{result.session}/{rec.input_hash[:16]}.zarr"
        assert (rec.n_frames, rec.height, rec.width, rec.n_units, rec.fps) == (60, H, W, 3, fps)
        assert rec.events == str((raw / "m1" / result.session / "events.csv").resolve())
        assert rec.source_format == "cnmfe_mat"
        store = lake / rec.dataset_path
        ds = xr.open_zarr(store)
        validate_session_dataset(ds, path=store, check_values=True)
        # movie pixels are the AVI frames
        np.testing.assert_array_equal(
            ds.movie.values, _decode_avis(raw / "m1" / result.session / "miniscope")
        )
        assert ds.movie.dtype == np.uint8
        np.testing.assert_array_equal(ds.max_proj.values, ds.movie.values.max(axis=0))
        # footprints where they were drawn, traces equal
        np.testing.assert_allclose(ds.A.values, session.footprints, rtol=1e-6)
        for k, (y, x) in enumerate([(5, 6), (H - 8, W // 2), (H // 2, W - 7)]):
            assert np.unravel_index(int(np.argmax(ds.A.values[k])), (H, W)) == (y, x)
        np.testing.assert_allclose(ds.C.values, session.C, rtol=1e-6)
        np.testing.assert_allclose(ds.C_raw.values, session.C_raw, rtol=1e-6)
        np.testing.assert_allclose(ds.S.values, session.S, rtol=1e-6)
        np.testing.assert_array_equal(ds.unit_id.values, session.unit_ids)
        assert ds.A.dtype == np.float32 and ds.C.dtype == np.float32
        # time from timeStamps.csv (20 fps -> 50 ms steps), relative to the first frame
        np.testing.assert_allclose(ds.time_s.values[:3], [0, 0.05, 0.1], atol=1e-3)
        attrs = ds.attrs
        assert attrs["schema_version"] == DATASET_SCHEMA_VERSION
        assert (attrs["cohort"], attrs["animal"], attrs["session"]) == ("c1", "m1", result.session)
        assert attrs["fps"] == fps and attrs["source_format"] == "cnmfe_mat"
        assert attrs["input_hash"] == rec.input_hash
        hashes = json.loads(attrs["source_hashes"])
        assert str((raw / "m1" / result.session / "miniscope" / "0.avi").resolve()) in hashes
        assert len(hashes) == 7  # 2 AVIs, timestamps, metadata, .mat, events, labels
        assert attrs["source_video"] == str((raw / "m1" / result.session / "miniscope").resolve())
        assert {"cellsift_version", "ingested_at", "source_extraction"} <= set(attrs)
        assert ds.movie.encoding["chunks"] == (60, H, W)  # min(chunk_frames, n_frames)
        assert ds.A.encoding["chunks"] == (3, H, W)
        ds.close()
        # labels table
        labels = pq.read_table(LakeLayout(lake).table_file("labels", "c1", "m1", result.session))
        assert labels.schema.equals(LABELS_SCHEMA, check_metadata=False)
        frame = labels.to_pandas()
        assert list(frame["unit_id"]) == list(session.unit_ids)
        assert list(frame["label"]) == ["good", "good", "bad"]
        assert frame["reason"].iloc[-1] == "dendrite" and frame["reason"].isna().iloc[0]
        assert set(frame["source"]) == {"csv"}
    assert not any((lake / "tmp").iterdir())
    assert fps == 25.0  # the manifest's fps wins over metaData.json


def test_chunking_and_streaming(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = MiniscopeAviReader.iter_blocks

    def spy(self: MiniscopeAviReader, n_frames: int):  # type: ignore[no-untyped-def]
        for block in original(self, n_frames):
            sizes.append(len(block))
            yield block

    monkeypatch.setattr(MiniscopeAviReader, "iter_blocks", spy)
    written: list[list[int]] = []
    original_aligned = writer_module.aligned_blocks

    def spy_aligned(blocks, chunk):  # type: ignore[no-untyped-def]
        written.append([])
        for block in original_aligned(blocks, chunk):
            written[-1].append(len(block))
            yield block

    monkeypatch.setattr(writer_module, "aligned_blocks", spy_aligned)
    lake = tmp_path / "lake"
    options = IngestOptions(chunk_frames=8, decode_block_frames=7)
    results = ingest_cohort(raw / "cohort.csv", lake, options=options)
    assert [r.status for r in results] == ["ingested", "ingested"]
    assert max(sizes) <= 7 and sum(sizes) == 120
    for per_session in written:  # whole zarr chunks per write, only the last may be partial
        assert sum(per_session) == 60 and all(n % 8 == 0 for n in per_session[:-1])
    ds = xr.open_zarr(lake / results[0].dataset_path)
    assert ds.movie.encoding["chunks"] == (8, H, W)
    np.testing.assert_array_equal(ds.movie.values, _decode_avis(raw / "m1" / "d1" / "miniscope"))
    assert ds.attrs["chunk_frames"] == 8


def test_options_are_checked() -> None:
    with pytest.raises(ParameterError, match="chunk_frames"):
        IngestOptions(chunk_frames=0)
    with pytest.raises(ParameterError, match="decode_block_frames"):
        IngestOptions(decode_block_frames=-1)


# =========================================================================== re-ingest


def test_reingest_unchanged_does_nothing(raw: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = ingest_cohort(raw / "cohort.csv", lake)
    before = _listing(lake)
    store = lake / first[0].dataset_path
    mtime = store.stat().st_mtime_ns
    again = ingest_cohort(raw / "cohort.csv", lake)
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    assert [(r.n_frames, r.n_units, r.dataset_path) for r in again] == [
        (r.n_frames, r.n_units, r.dataset_path) for r in first
    ]
    assert store.stat().st_mtime_ns == mtime
    assert _listing(lake) == before


def test_changed_input_replaces_store(raw: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = ingest_cohort(raw / "cohort.csv", lake)
    old_store = lake / first[0].dataset_path
    # new curation labels for d1
    (raw / "m1" / "d1" / "labels.csv").write_text("unit_id,label,reason\n10,bad,merged\n")
    second = ingest_cohort(raw / "cohort.csv", lake)
    assert [r.status for r in second] == ["ingested", "unchanged"]
    new_store = lake / second[0].dataset_path
    assert new_store != old_store and new_store.is_dir() and not old_store.exists()
    assert sorted(p.name for p in new_store.parent.iterdir()) == [new_store.name]
    rec = Catalog(lake).get("c1", "m1", "d1")
    assert rec is not None and rec.dataset_path == second[0].dataset_path
    labels = pq.read_table(LakeLayout(lake).table_file("labels", "c1", "m1", "d1")).to_pandas()
    assert list(labels["label"]) == ["bad"]
    # changing an output-relevant option re-ingests too
    third = ingest_cohort(raw / "cohort.csv", lake, options=IngestOptions(chunk_frames=10))
    assert [r.status for r in third] == ["ingested", "ingested"]


# =========================================================================== bad sessions


def _break(kind: str, folder: Path, session: SyntheticSession) -> str:
    """Break one session in place; return a text the error must contain."""
    mat = folder / "cnmfe_results.mat"
    if kind == "truncated_mat":
        data = mat.read_bytes()
        mat.write_bytes(data[: len(data) // 3])
        return "truncated or corrupt"
    if kind == "missing_chunk":
        (folder / "miniscope" / "0.avi").unlink()
        return "0.avi is missing"
    if kind == "truncated_avi":
        avi = folder / "miniscope" / "1.avi"
        data = avi.read_bytes()
        avi.write_bytes(data[: len(data) // 2])
        return "1.avi: field 'video': chunk is truncated or corrupt"
    from tests.pipeline.fixtures import to_cnmfe_A

    A, C, C_raw, S, d1 = to_cnmfe_A(session.footprints), session.C, session.C_raw, session.S, H
    if kind == "trace_length":
        C, C_raw, S = C[:, :-5], C_raw[:, :-5], S[:, :-5]
        expected = "traces have 55 frames but the video"
    elif kind == "pixel_count":
        A = A[: (H - 2) * W]
        d1 = H - 2
        expected = "footprints are 30x40 px (height x width) but the video"
    elif kind == "nan_C":
        C = C.copy()
        C[1, 7] = np.nan
        expected = "field 'C': contains NaN"
    else:  # pragma: no cover
        raise ValueError(kind)
    write_cnmfe_v5(mat, A=A, C=C, C_raw=C_raw, S=S, d1=d1, d2=W, ids=session.unit_ids)
    return expected


BAD_KINDS = ["truncated_mat", "missing_chunk", "truncated_avi", "trace_length", "pixel_count", "nan_C"]


def test_bad_sessions_fail_others_ingest(cohort: tuple[Path, list[SyntheticSession]], tmp_path: Path) -> None:
    _, (good, _) = cohort
    raw = tmp_path / "raw"
    rows = []
    expected: dict[str, str] = {}
    for kind in ["good", *BAD_KINDS]:
        folder = raw / "m1" / kind
        shutil.copytree(good.folder, folder)
        if kind != "good":
            expected[kind] = _break(kind, folder, good)
        rows.append(
            {
                "cohort": "c1",
                "animal": "m1",
                "session": kind,
                "stage": "s",
                "day": 1,
                "video": f"m1/{kind}/miniscope",
                "extraction": f"m1/{kind}/cnmfe_results.mat",
                "labels": f"m1/{kind}/labels.csv",
            }
        )
    rows.append({**rows[0], "session": "nofile", "extraction": "m1/nofile/cnmfe_results.mat"})
    manifest = write_manifest_csv(raw / "cohort.csv", rows)
    results = {r.session: r for r in ingest_cohort(manifest, tmp_path / "lake")}
    assert results["good"].status == "ingested"
    catalog = Catalog(tmp_path / "lake")
    for kind, text in expected.items():
        result = results[kind]
        assert result.status == "failed", kind
        assert text in result.error, (kind, result.error)
        assert str(raw / "m1" / kind) in result.error  # names the file
        assert "\n" not in result.error and "Fix:" in result.error
        rec = catalog.get("c1", "m1", kind)
        assert rec is not None and rec.status == STATUS_FAILED and rec.error == result.error
        assert rec.dataset_path == ""
        assert (rec.input_hash == "") == (kind == "missing_chunk")  # fails before hashing
        assert not (tmp_path / "lake" / "sessions" / "c1" / "m1" / kind).exists()
    missing = results["nofile"]
    assert missing.status == "failed"
    assert "cohort.csv" in missing.error and "line 9" in missing.error and "extraction" in missing.error
    assert not any((tmp_path / "lake" / "tmp").iterdir())


def test_failed_reingest_keeps_good_version_byte_identical(raw: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert [r.status for r in ingest_cohort(raw / "cohort.csv", lake)] == ["ingested", "ingested"]
    before = _listing(lake)
    good_row = Catalog(lake).get("c1", "m1", "d1")
    # truncate a video chunk: fails while streaming, after the staging store was created
    avi = raw / "m1" / "d1" / "miniscope" / "1.avi"
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])
    results = ingest_cohort(raw / "cohort.csv", lake)
    assert [r.status for r in results] == ["failed", "unchanged"]
    assert "1.avi: field 'video': chunk is truncated" in results[0].error
    assert _listing(lake) == before
    assert Catalog(lake).get("c1", "m1", "d1") == good_row
    # same for an extraction that no longer matches
    mat = raw / "m1" / "d1" / "cnmfe_results.mat"
    mat.write_bytes(mat.read_bytes()[:100])
    assert ingest_cohort(raw / "cohort.csv", lake)[0].status == "failed"
    assert _listing(lake) == before


def test_unexpected_error_recorded(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(inputs_module, "open_extraction", boom)
    results = ingest_cohort(raw / "cohort.csv", tmp_path / "lake")
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == "RuntimeError: disk on fire"
    rec = Catalog(tmp_path / "lake").get("c1", "m1", "d1")
    assert rec is not None and rec.status == STATUS_FAILED and rec.error == "RuntimeError: disk on fire"


def test_ingest_session_directly_and_labels_source(
    cohort: tuple[Path, list[SyntheticSession]], tmp_path: Path
) -> None:
    _, (good, _) = cohort
    folder = tmp_path / "s"
    shutil.copytree(good.folder, folder)
    (folder / "truth.json").write_text("{}")
    spec = SessionSpec(
        cohort="c2",
        animal="a",
        session="s",
        stage="x",
        day=0,
        video=folder / "miniscope",
        extraction=folder / "cnmfe_results.mat",
        events=None,
        labels=folder / "labels.csv",
        fps=None,
        format=None,
    )
    result = ingest_session(spec, tmp_path / "lake", options=IngestOptions())
    assert result.status == "ingested"
    labels = pq.read_table(LakeLayout(tmp_path / "lake").table_file("labels", "c2", "a", "s")).to_pandas()
    assert set(labels["source"]) == {"simulator"}
    assert ingest_session(spec, tmp_path / "lake").status == "unchanged"
    # a missing file of a spec not from a manifest: SessionNotFoundError text
    bad = SessionSpec("c2", "a", "t", "x", 0, folder / "nope", folder / "cnmfe_results.mat")
    failed = ingest_session(bad, tmp_path / "lake")
    assert failed.status == "failed" and "video of session c2/a/t does not exist" in failed.error


def test_labels_checked(raw: Path, tmp_path: Path) -> None:
    (raw / "m1" / "d1" / "labels.csv").write_text("unit_id,label,reason\n999,good,\n")
    (raw / "m1" / "d2" / "labels.csv").write_text("unit_id,label,reason\n1,maybe,\n")
    results = ingest_cohort(raw / "cohort.csv", tmp_path / "lake")
    assert [r.status for r in results] == ["failed", "failed"]
    assert "unit ids the extraction does not have" in results[0].error
    assert "label 'maybe'" in results[1].error


def test_demo_folder_without_manifest(raw: Path, tmp_path: Path) -> None:
    os.remove(raw / "cohort.csv")
    results = ingest_cohort(raw, tmp_path / "lake")
    assert [(r.animal, r.session, r.status) for r in results] == [
        ("m1", "d1", "ingested"),
        ("m1", "d2", "ingested"),
    ]
    rec = Catalog(tmp_path / "lake").get(raw.name, "m1", "d2")
    assert rec is not None and rec.day == 2 and rec.fps == 20.0  # no manifest fps: metaData.json


# =========================================================================== simulator


def test_simulated_cohort_ingests(tmp_path: Path) -> None:
    try:
        from cellsift.pipeline.sim.cohort import simulate_cohort
    except ImportError as exc:  # pragma: no cover - the simulator is built in parallel
        pytest.skip(f"cellsift.pipeline.sim.cohort is not available yet ({exc})")
    config = tiny_config(n_animals=1, n_frames=300, seed=3)
    manifest = simulate_cohort(tmp_path / "raw", config, n_workers=1)
    results = ingest_cohort(tmp_path / "raw", tmp_path / "lake")
    assert [r.status for r in results] == ["ingested", "ingested"], results
    lake = tmp_path / "lake"
    for result in results:
        ds = xr.open_zarr(lake / result.dataset_path)
        validate_session_dataset(ds, check_values=True)
        assert ds.sizes["frame"] == 300 and ds.sizes["height"] == 64 and ds.sizes["unit_id"] == result.n_units
        assert ds.attrs["cohort"] == "tiny" and ds.attrs["fps"] == 20.0
        labels = pq.read_table(
            LakeLayout(lake).table_file("labels", "tiny", "m01", result.session)
        ).to_pandas()
        assert set(labels["source"]) == {"simulator"} and len(labels) == result.n_units
        ds.close()
    assert manifest.name == "cohort.csv"
