"""The registry of formats: detection from names and folder contents, aliases, opening,
the files to hash, and that every format is registered once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.readers import (
    EXTRACTION_FORMATS,
    FORMATS,
    VIDEO_FORMATS,
    CaimanHdf5Reader,
    CnmfeMatReader,
    MinianZarrReader,
    Suite2pReader,
    detect_extraction_format,
    detect_video_format,
    list_companion_video_files,
    list_extraction_files,
    list_video_files,
    normalise_extraction_format,
    normalise_video_format,
    open_extraction,
    open_video,
)
from cellsift.schemas.errors import InputFormatError, SessionNotFoundError
from tests.pipeline.fixtures import (
    blob_footprints,
    synthetic_traces,
    write_minian,
    write_miniscope_v4,
    write_suite2p_bin,
    write_suite2p_plane,
    write_tiff_stack,
)

H, W, K = 24, 30, 3
CENTRES = [(5, 6), (18, 12), (10, 24)]


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    fp = blob_footprints(H, W, CENTRES)
    C, C_raw, S = synthetic_traces(K, 50, seed=4)
    return fp, C, C_raw, S


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (40, H, W), dtype=np.uint8)


# =========================================================================== the registry


def test_every_format_is_registered_once() -> None:
    assert EXTRACTION_FORMATS == ("cnmfe_mat", "caiman_hdf5", "minian_zarr", "suite2p", "nwb")
    assert VIDEO_FORMATS == ("miniscope_avi", "tiff", "hdf5", "suite2p_bin", "nwb")
    for kind in ("extraction", "video"):
        entries = [f for f in FORMATS if f.kind == kind]
        assert len({f.name for f in entries}) == len(entries)
        names = [n for f in entries for n in (f.name, *f.aliases)]
        assert len(set(names)) == len(names), f"an alias names two {kind} formats"
        suffixes = [s for f in entries for s in f.suffixes]
        assert len(set(suffixes)) == len(suffixes), f"a suffix means two {kind} formats"
        for entry in entries:
            assert entry.reader.format == entry.name  # type: ignore[attr-defined]


def test_aliases_normalise_to_the_canonical_name(tmp_path: Path) -> None:
    assert normalise_extraction_format(" CNMF-E ", path=tmp_path) == "cnmfe_mat"
    assert normalise_extraction_format("minian", path=tmp_path) == "minian_zarr"
    assert normalise_extraction_format(None, path=tmp_path) is None
    assert normalise_video_format("V3", path=tmp_path) == "miniscope_avi"
    assert normalise_video_format("suite2p", path=tmp_path) == "suite2p_bin"
    with pytest.raises(InputFormatError, match="unknown video format 'mkv'") as info:
        normalise_video_format("mkv", path=tmp_path)
    assert info.value.field == "video_format"


# =========================================================================== extraction


def test_open_extraction_formats(tmp_path: Path) -> None:
    assert isinstance(open_extraction(tmp_path / "r.mat", "CNMFE"), CnmfeMatReader)
    with pytest.raises(InputFormatError, match="unknown extraction format"):
        open_extraction(tmp_path / "r.mat", "xyz")
    with pytest.raises(InputFormatError, match="format"):
        open_extraction(tmp_path / "r.npz")


def test_detect_extraction_format(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    assert detect_extraction_format(write_minian(tmp_path / "mn", footprints=fp, C=C)) == "minian_zarr"
    assert (
        detect_extraction_format(write_suite2p_plane(tmp_path / "s" / "plane0", footprints=fp, F=C).parent)
        == "suite2p"
    )
    for name, fmt in (
        ("a.mat", "cnmfe_mat"),
        ("a.hdf5", "caiman_hdf5"),
        ("a.h5", "caiman_hdf5"),
        ("a.nwb", "nwb"),
    ):
        (tmp_path / name).write_bytes(b"x")
        assert detect_extraction_format(tmp_path / name) == fmt
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputFormatError, match="neither Suite2p"):
        detect_extraction_format(tmp_path / "folder")
    for alias, cls in (
        ("CaImAn", CaimanHdf5Reader),
        ("minian", MinianZarrReader),
        ("cnmf-e", CnmfeMatReader),
    ):
        assert isinstance(open_extraction(tmp_path / "a.mat", alias), cls)


def test_suite2p_is_detected_before_minian(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    plane = write_suite2p_plane(tmp_path / "plane0", footprints=fp, F=C)
    (plane / "A.zarr").mkdir()
    assert detect_extraction_format(plane) == "suite2p"
    assert isinstance(open_extraction(plane), Suite2pReader)


def test_extraction_files_to_hash(tmp_path: Path, truth, movie: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    plane = write_suite2p_plane(tmp_path / "suite2p" / "plane0", footprints=fp, F=C, movie=movie[:, :H, :W])
    names = ["stat.npy", "F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "ops.npy"]
    assert list_extraction_files(plane.parent) == [plane / n for n in names]
    assert list_companion_video_files(plane.parent) == [plane / "data.bin"]
    minian = write_minian(tmp_path / "mn", footprints=fp, C=C)
    files = list_extraction_files(minian)
    assert files and all(f.is_file() and f.relative_to(minian).parts[0].endswith(".zarr") for f in files)
    assert list_companion_video_files(minian) == []
    (tmp_path / "r.mat").write_bytes(b"x")
    assert list_extraction_files(tmp_path / "r.mat") == [tmp_path / "r.mat"]
    with pytest.raises(SessionNotFoundError):
        list_extraction_files(tmp_path / "missing.mat")


# =========================================================================== video


def test_detect_video_format(tmp_path: Path, movie: np.ndarray) -> None:
    ms = write_miniscope_v4(tmp_path / "ms", movie[:5], frames_per_file=5)
    assert detect_video_format(ms) == "miniscope_avi"
    assert detect_video_format(write_tiff_stack(tmp_path / "a.tiff", movie[:3])) == "tiff"
    assert detect_video_format(write_suite2p_bin(tmp_path / "p", movie[:3]).parent) == "suite2p_bin"
    (tmp_path / "x.mp4").write_bytes(b"0")
    with pytest.raises(InputFormatError, match="unsupported video file type"):
        detect_video_format(tmp_path / "x.mp4")
    with pytest.raises(InputFormatError, match="unknown video format 'webm'"):
        open_video(ms, format="webm")
    with pytest.raises(SessionNotFoundError):
        open_video(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="cannot tell the video format"):
        open_video(tmp_path / "empty")


def test_suite2p_bin_is_detected_before_avi_files(tmp_path: Path, movie: np.ndarray) -> None:
    plane = write_suite2p_bin(tmp_path / "plane0", movie[:3]).parent
    write_miniscope_v4(plane / "exports", movie[:5], frames_per_file=5)
    assert detect_video_format(plane) == "suite2p_bin"


def test_avi_format_refuses_other_files(tmp_path: Path, movie: np.ndarray) -> None:
    tiff = write_tiff_stack(tmp_path / "a.tif", movie[:3])
    for call in (open_video, list_video_files):
        with pytest.raises(InputFormatError, match="unsupported video file type '.tif'") as info:
            call(tiff, format="avi")
        assert info.value.fix is not None and "tiff" in info.value.fix
    assert list_video_files(tiff) == [tiff]
