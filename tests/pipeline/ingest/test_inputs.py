"""A session's inputs: ingest of every supported format, the files hashed, temporal
downsampling, extraction-only sessions, the extraction's own video, orientation checks and
imported labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import xarray as xr

from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.store import Catalog
from cellsift.pipeline.ingest import SessionSpec, compute_input_hash, ingest_cohort, session_input_files
from cellsift.schemas.dataset import validate_session_dataset
from tests.pipeline.fixtures import (
    EXTRACTION_WRITERS,
    VIDEO_WRITERS,
    blob_footprints,
    make_session,
    render_frames,
    synthetic_traces,
    to_cnmfe_A,
    write_cnmfe_v5,
    write_manifest_csv,
    write_miniscope_v4,
)

H, W = 32, 40


def _ingest(tmp_path: Path, rows: list[dict]) -> tuple[Path, list]:  # type: ignore[type-arg]
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest_csv(tmp_path / "cohort.csv", rows)
    lake = tmp_path / "lake"
    return lake, ingest_cohort(manifest, lake)


def _row(**fields: object) -> dict[str, object]:
    """A manifest row of session c/m/s (stage x, day 1) with ``fields``."""
    return {"cohort": "c", "animal": "m", "session": "s", "stage": "x", "day": 1, **fields}


def _spec(**files: Any) -> SessionSpec:
    """The session c/m1/s (baseline, day 1) of ``files`` (video, extraction, events, labels)."""
    return SessionSpec(cohort="c", animal="m1", session="s", stage="baseline", day=1, **files)


def _open(lake: Path, result) -> xr.Dataset:  # type: ignore[no-untyped-def]
    assert result.status == "ingested", result.error
    ds = xr.open_zarr(lake / result.dataset_path)
    validate_session_dataset(ds, check_values=True)
    return ds


# =========================================================================== every format


@pytest.mark.parametrize("extraction", sorted(EXTRACTION_WRITERS))
def test_every_extraction_format_ingests(tmp_path: Path, extraction: str) -> None:
    session = make_session(tmp_path / "raw", extraction=extraction, seed=3)
    lake, (result,) = _ingest(tmp_path, [session.row("c", "m1", "d1")])
    ds = _open(lake, result)
    np.testing.assert_allclose(ds.A.values, session.footprints, atol=1e-6)
    np.testing.assert_allclose(ds.C_raw.values, session.C_raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ds.unit_id.values, session.unit_ids)
    assert ds.attrs["orientation_check"] == "confirmed"
    assert ds.movie.shape == (60, H, W)
    labels = pq.read_table(LakeLayout(lake).table_file("labels", "c", "m1", "d1")).to_pandas()
    assert "csv" in set(labels["source"])
    embedded = {"caiman": "caiman_idx_components", "suite2p": "suite2p_iscell", "nwb": "nwb_iscell"}.get(
        extraction
    )
    if embedded:  # labels inside the extraction file are stored apart, with their own source
        assert embedded in set(labels["source"])
        assert json.loads(ds.attrs["labels_sources"]) == [embedded, "csv"]
    ds.close()


@pytest.mark.parametrize("video", sorted(set(VIDEO_WRITERS) - {"miniscope_v4", "suite2p_bin", "nwb", "none"}))
def test_every_video_format_ingests(tmp_path: Path, video: str) -> None:
    session = make_session(tmp_path / "raw", video=video, seed=4)
    lake, (result,) = _ingest(tmp_path, [session.row("c", "m1", "d1", fps=20)])
    ds = _open(lake, result)
    np.testing.assert_array_equal(ds.movie.values, session.movie)
    np.testing.assert_array_equal(ds.max_proj.values, session.movie.max(axis=0))
    assert ds.attrs["orientation_check"] == "confirmed"
    ds.close()


@pytest.mark.parametrize(("extraction", "video"), [("suite2p", "suite2p_bin"), ("nwb", "nwb")])
def test_extraction_own_video_used_when_video_is_empty(tmp_path: Path, extraction: str, video: str) -> None:
    session = make_session(tmp_path / "raw", extraction=extraction, video=video, seed=5)
    assert session.video is None
    lake, results = _ingest(
        tmp_path, [session.row("c", "m1", "d1"), session.row("c", "m1", "d2", video="none")]
    )
    with_movie = _open(lake, results[0])
    np.testing.assert_array_equal(with_movie.movie.values, session.movie.astype(with_movie.movie.dtype))
    assert with_movie.attrs["video_format"] == video
    without = _open(lake, results[1])
    assert "movie" not in without and "max_proj" not in without  # 'none': not even the extraction's own
    with_movie.close()
    without.close()


# =========================================================================== extraction only


def test_extraction_only_session(tmp_path: Path) -> None:
    session = make_session(tmp_path / "raw", video="none", seed=6)
    lake, (result,) = _ingest(tmp_path, [session.row("c", "m1", "d1", fps=12.5)])
    ds = _open(lake, result)
    assert "movie" not in ds and ds.sizes["frame"] == 60 and ds.attrs["fps"] == 12.5
    np.testing.assert_allclose(ds.time_s.values[:3], [0, 0.08, 0.16])
    assert ds.attrs["orientation_check"] == "confirmed"  # against the correlation image Cn
    rec = Catalog(lake).get("c", "m1", "d1")
    assert rec is not None and rec.video == "" and (rec.height, rec.width) == (H, W)
    ds.close()


def test_extraction_only_needs_the_frame_size(tmp_path: Path) -> None:
    import scipy.io

    fp = blob_footprints(H, W, [(5, 5), (20, 20)])
    C, _, _ = synthetic_traces(2, 30)
    scipy.io.savemat(str(tmp_path / "flat.mat"), {"A": to_cnmfe_A(fp), "C": C})
    row = _row(extraction="flat.mat", fps=10)
    _, (result,) = _ingest(tmp_path, [row])
    assert (
        result.status == "failed"
        and "the frame size is unknown" in result.error
        and "flat.mat" in result.error
    )


# =========================================================================== downsampling


def _downsample_session(tmp_path: Path, *, longer: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    fp = blob_footprints(H, W, [(6, 7), (22, 12), (15, 30)])
    C, C_raw, S = synthetic_traces(3, 120, seed=7)
    movie = render_frames(fp, C, seed=7)  # 120 frames at the full rate
    if longer == "traces":  # the video keeps every 2nd frame (as the Minian demo's raw video)
        video_frames, trace = movie[::2], (C, C_raw, S)
    else:  # the traces were computed on 2-frame averages (CNMF-E tsub = 2)
        video_frames = movie
        trace = tuple(x.reshape(3, 60, 2).mean(axis=2) for x in (C, C_raw, S))
    folder = write_miniscope_v4(
        tmp_path / "raw" / "ms", video_frames, frames_per_file=30, fps=10.0 if longer == "traces" else 20.0
    )
    write_cnmfe_v5(
        tmp_path / "raw" / "r.mat", A=to_cnmfe_A(fp), C=trace[0], C_raw=trace[1], S=trace[2], d1=H, d2=W
    )
    row = _row(video=str(folder), extraction=str(tmp_path / "raw" / "r.mat"), fps=20)
    return row, movie, np.asarray(trace[0]), np.asarray(trace[2])


def test_traces_twice_as_long_as_the_video(tmp_path: Path) -> None:
    row, movie, C, S = _downsample_session(tmp_path, longer="traces")
    _, (failed,) = _ingest(tmp_path / "a", [row])
    assert failed.status == "failed"
    assert "traces have 120 frames but the video" in failed.error and "has 60" in failed.error
    assert "temporal_downsample: 2" in failed.error and "r.mat" in failed.error
    lake, (result,) = _ingest(tmp_path / "b", [{**row, "temporal_downsample": 2}])
    ds = _open(lake, result)
    assert ds.sizes["frame"] == 60 and ds.attrs["fps"] == 10.0 and ds.attrs["downsampled"] == "traces"
    assert (ds.attrs["source_trace_frames"], ds.attrs["source_video_frames"]) == (120, 60)
    np.testing.assert_allclose(ds.C.values, C[:, ::2], rtol=1e-6)  # sampled at the video's frames
    np.testing.assert_allclose(ds.S.values, S.reshape(3, 60, 2).sum(axis=2), rtol=1e-5)  # spikes summed
    np.testing.assert_array_equal(ds.movie.values, movie[::2])
    np.testing.assert_allclose(ds.time_s.values[:3], [0, 0.1, 0.2], atol=2e-3)  # the video's own timestamps
    assert ds.attrs["orientation_check"] == "confirmed"
    ds.close()


def test_video_twice_as_long_as_the_traces(tmp_path: Path) -> None:
    row, movie, C, _ = _downsample_session(tmp_path, longer="video")
    lake, (result,) = _ingest(tmp_path, [{**row, "temporal_downsample": 2}])
    ds = _open(lake, result)
    assert ds.sizes["frame"] == 60 and ds.attrs["fps"] == 10.0 and ds.attrs["downsampled"] == "movie"
    averaged = np.rint(movie.reshape(60, 2, H, W).mean(axis=1)).astype(np.uint8)
    np.testing.assert_array_equal(ds.movie.values, averaged)
    np.testing.assert_allclose(ds.time_s.values[:2], [0.025, 0.125], atol=2e-3)  # mean time of each pair
    ds.close()


# =========================================================================== orientation


def test_row_major_footprints_fail_then_ingest_with_pixel_order(tmp_path: Path) -> None:
    fp = blob_footprints(H, W, [(6, 7), (22, 12), (15, 30), (26, 33)])
    C, C_raw, S = synthetic_traces(4, 200, seed=8)
    folder = write_miniscope_v4(tmp_path / "raw" / "ms", render_frames(fp, C, seed=8), frames_per_file=100)
    row_major = sp.csc_matrix(np.stack([f.ravel() for f in fp], axis=1).astype(np.float64))
    write_cnmfe_v5(tmp_path / "raw" / "r.mat", A=row_major, C=C, C_raw=C_raw, S=S, d1=H, d2=W)
    row = _row(video=str(folder), extraction=str(tmp_path / "raw" / "r.mat"))
    lake, (failed,) = _ingest(tmp_path / "a", [row])
    assert failed.status == "failed" and "row-major/column-major mixed up" in failed.error
    assert str(tmp_path / "raw" / "r.mat") in failed.error and "pixel_order: C" in failed.error
    assert not (lake / "sessions" / "c").exists() and not any((lake / "tmp").iterdir())
    lake, (result,) = _ingest(tmp_path / "b", [{**row, "pixel_order": "C"}])
    ds = _open(lake, result)
    np.testing.assert_allclose(ds.A.values, fp, atol=1e-6)
    assert ds.attrs["pixel_order"] == "C" and ds.attrs["orientation_check"] == "confirmed"
    ds.close()


# =========================================================================== labels


def test_labels_from_extraction_and_file_and_their_removal(tmp_path: Path) -> None:
    session = make_session(tmp_path / "raw", extraction="caiman", seed=9)
    inscopix = tmp_path / "raw" / "status.csv"
    inscopix.write_text("Name,Status\nC00,accepted\nC01,rejected\nC02,undecided\n")
    row = session.row("c", "m1", "d1", labels=str(inscopix))
    lake, (result,) = _ingest(tmp_path, [row])
    assert result.status == "ingested", result.error
    table = LakeLayout(lake).table_file("labels", "c", "m1", "d1")
    labels = pq.read_table(table).to_pandas()
    assert sorted(set(labels["source"])) == ["caiman_idx_components", "inscopix_cell_status"]
    inscopix_rows = labels[labels["source"] == "inscopix_cell_status"]
    assert inscopix_rows["unit_id"].tolist() == [0, 1] and inscopix_rows["label"].tolist() == ["good", "bad"]
    # re-ingest without a labels file: only the extraction's labels remain
    write_manifest_csv(tmp_path / "cohort.csv", [session.row("c", "m1", "d1", labels="")])
    (again,) = ingest_cohort(tmp_path / "cohort.csv", lake)
    assert again.status == "ingested"
    assert set(pq.read_table(table).to_pandas()["source"]) == {"caiman_idx_components"}


# =========================================================================== files and hashes


def test_input_files_and_hash_do_not_depend_on_the_location(tmp_path: Path) -> None:
    session = make_session(tmp_path / "a" / "s", extraction="suite2p", video="suite2p_bin")
    spec = _spec(
        video=session.video, extraction=session.extraction, events=session.events, labels=session.labels
    )
    roles = [role for role, _ in session_input_files(spec)]
    assert roles == [
        "extraction/stat.npy",
        "extraction/F.npy",
        "extraction/Fneu.npy",
        "extraction/spks.npy",
        "extraction/iscell.npy",
        "extraction/ops.npy",
        "video/data.bin",
        "events",
        "labels",
    ]
    first, hashes = compute_input_hash(spec, chunk_frames=100, check_orientation=True)
    assert len(first) == 64 and set(hashes) == {str(p.resolve()) for _, p in session_input_files(spec)}
    assert compute_input_hash(spec, chunk_frames=50, check_orientation=True)[0] != first
    assert compute_input_hash(spec, chunk_frames=100, check_orientation=False)[0] != first
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    spec_moved = _spec(
        video=None,
        extraction=moved / "s" / session.extraction.relative_to(tmp_path / "a" / "s"),
        events=moved / "s" / "events.csv",
        labels=moved / "s" / "labels.csv",
    )
    assert compute_input_hash(spec_moved, chunk_frames=100, check_orientation=True)[0] == first
