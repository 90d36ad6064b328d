"""Video readers beyond plain Miniscope V4: V3 folders, nested V4 sessions, numbered AVI
series, TIFF / BigTIFF, HDF5 and MATLAB movies, Suite2p data.bin, NWB photon series."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.readers import (
    Hdf5VideoReader,
    MiniscopeAviReader,
    NwbVideoReader,
    Suite2pBinReader,
    TiffStackReader,
    VideoReader,
    list_video_files,
    open_video,
)
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import (
    blob_footprints,
    write_avi,
    write_hdf5_movie,
    write_miniscope_v3,
    write_miniscope_v4,
    write_nwb,
    write_suite2p_bin,
    write_tiff_stack,
)

H, W, T = 24, 30, 40


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (T, H, W), dtype=np.uint8)


def _all(reader: VideoReader, block: int = 7) -> np.ndarray:
    blocks = list(reader.iter_blocks(block))
    assert all(len(b) <= block for b in blocks)
    assert all(b.shape[1:] == (reader.height, reader.width) for b in blocks)
    return np.concatenate(blocks)


# =========================================================================== AVI layouts


def test_miniscope_v3_folder_picks_mscam_and_its_timestamps(tmp_path: Path, movie: np.ndarray) -> None:
    folder = write_miniscope_v3(tmp_path / "v3", movie, frames_per_file=15, fps=30.0)
    reader = open_video(folder)
    assert isinstance(reader, MiniscopeAviReader)
    assert [p.name for p in reader.chunks] == ["msCam1.avi", "msCam2.avi", "msCam3.avi"]
    assert reader.n_frames == T and (reader.height, reader.width) == (H, W)
    np.testing.assert_array_equal(_all(reader), movie)
    ts = reader.timestamps_s
    assert ts is not None and ts[0] == 0.0  # the bogus first sysClock was replaced
    np.testing.assert_allclose(np.diff(ts), 1 / 30.0, atol=1.5e-3)
    assert folder / "timestamp.dat" in reader.files


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_v4_session_folder_two_levels_up_with_start_time(
    tmp_path: Path, movie: np.ndarray, layout: str
) -> None:
    session = tmp_path / "2024_03_05" / "14_07_09"
    write_miniscope_v4(session / "My_V4_Miniscope", movie, frames_per_file=20, start_time_layout=layout)
    (session / "BehavCam_0").mkdir()
    write_avi(session / "BehavCam_0" / "0.avi", iter(movie[:5]), height=H, width=W)
    reader = open_video(tmp_path / "2024_03_05")  # two levels above the AVIs
    assert reader.chunks[0].parent.name == "My_V4_Miniscope"  # not the behaviour camera
    assert reader.start_time == "2024-03-05T14:07:09.250"
    assert session / "metaData.json" in reader.files
    np.testing.assert_array_equal(_all(reader), movie)


def test_numbered_series_with_prefix(tmp_path: Path, movie: np.ndarray) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(4):  # org_part1.avi .. org_part4.avi, as the Minian demo's raw video
        write_avi(folder / f"org_part{i + 1}.avi", iter(movie[i * 10 : (i + 1) * 10]), height=H, width=W)
    (folder / "frame_index.csv").write_text("part,frame_in_part,original_frame_index\n")
    reader = open_video(folder)
    assert [p.name for p in reader.chunks] == [f"org_part{i}.avi" for i in range(1, 5)]
    np.testing.assert_array_equal(_all(reader), movie)
    (folder / "org_part1.avi").unlink()
    with pytest.raises(InputFormatError, match=r"org_part1\.avi is missing") as info:
        open_video(folder)
    assert info.value.path.endswith("org_part1.avi")


def test_out_of_order_chunk_detected_by_frames_per_file(tmp_path: Path, movie: np.ndarray) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=15)  # 15 + 15 + 10 frames
    (folder / "1.avi").rename(tmp_path / "tmp.avi")
    (folder / "2.avi").rename(folder / "1.avi")  # the short last chunk renamed into the middle
    (tmp_path / "tmp.avi").rename(folder / "2.avi")
    with pytest.raises(InputFormatError, match="out of order") as info:
        open_video(folder)
    assert info.value.path.endswith("1.avi") and "framesPerFile" in str(info.value)


def test_out_of_order_without_metadata_and_duplicates(tmp_path: Path, movie: np.ndarray) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=15, metadata=False, timestamps=False)
    (folder / "1.avi").rename(tmp_path / "x.avi")
    (folder / "2.avi").rename(folder / "1.avi")
    (tmp_path / "x.avi").rename(folder / "2.avi")
    with pytest.raises(InputFormatError, match="the other chunks"):
        open_video(folder)
    dup = write_miniscope_v4(tmp_path / "dup", movie, frames_per_file=20)
    (dup / "01.avi").write_bytes((dup / "1.avi").read_bytes())
    with pytest.raises(InputFormatError, match="appears twice"):
        open_video(dup)


def test_several_avi_folders_is_an_error(tmp_path: Path, movie: np.ndarray) -> None:
    write_miniscope_v4(tmp_path / "s" / "camA", movie[:5], frames_per_file=5)
    write_miniscope_v4(tmp_path / "s" / "camB", movie[:5], frames_per_file=5)
    with pytest.raises(InputFormatError, match="several folders hold AVI"):
        open_video(tmp_path / "s")


# =========================================================================== TIFF


@pytest.mark.parametrize(("bigtiff", "compression"), [(False, None), (True, None), (True, "zlib")])
def test_tiff_stacks(tmp_path: Path, movie: np.ndarray, bigtiff: bool, compression: str | None) -> None:
    path = write_tiff_stack(tmp_path / "m.tif", movie, bigtiff=bigtiff, compression=compression)
    reader = open_video(path)
    assert isinstance(reader, TiffStackReader) and reader.format == "tiff"
    assert (reader.n_frames, reader.height, reader.width, reader.dtype) == (T, H, W, np.uint8)
    np.testing.assert_array_equal(_all(reader), movie)
    if not bigtiff:
        assert reader.fps == pytest.approx(20.0)


def test_tiff_is_memory_mapped_when_uncompressed(
    tmp_path: Path, movie: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tifffile

    path = write_tiff_stack(tmp_path / "m.tif", movie.astype(np.uint16) * 200, bigtiff=True)
    calls: list[str] = []
    original = tifffile.memmap

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        calls.append(type(result).__name__)
        return result

    monkeypatch.setattr(tifffile, "memmap", spy)
    reader = open_video(path)
    assert reader.dtype == np.uint16
    np.testing.assert_array_equal(_all(reader), movie.astype(np.uint16) * 200)
    assert calls == ["memmap"]


def test_tiff_folder_of_parts_and_errors(tmp_path: Path, movie: np.ndarray) -> None:
    folder = tmp_path / "tifs"
    folder.mkdir()
    write_tiff_stack(folder / "rec_1.tif", movie[:25])
    write_tiff_stack(folder / "rec_2.tif", movie[25:])
    reader = open_video(folder, format="tiff")
    assert reader.n_frames == T
    np.testing.assert_array_equal(_all(reader), movie)
    rgb = tmp_path / "rgb.tif"
    import tifffile

    tifffile.imwrite(rgb, np.zeros((4, H, W, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputFormatError, match="single-channel"):
        open_video(rgb)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + bytes(50))
    with pytest.raises(InputFormatError, match="bad.tif"):
        open_video(bad)


# =========================================================================== HDF5 / MATLAB


def test_hdf5_movie_python_layout(tmp_path: Path, movie: np.ndarray) -> None:
    path = write_hdf5_movie(tmp_path / "m.h5", movie, dataset="mov")
    reader = open_video(path)
    assert isinstance(reader, Hdf5VideoReader) and reader.dataset == "mov"
    np.testing.assert_array_equal(_all(reader), movie)
    custom = write_hdf5_movie(tmp_path / "c.h5", movie, dataset="group_data")
    with pytest.raises(InputFormatError, match="no movie dataset") as info:
        open_video(custom)
    assert info.value.field == "video_dataset" and "group_data" in str(info.value)
    np.testing.assert_array_equal(_all(open_video(custom, dataset="group_data")), movie)


def test_matlab_v73_movie_is_transposed_back(tmp_path: Path, movie: np.ndarray) -> None:
    path = write_hdf5_movie(tmp_path / "Y.mat", movie, dataset="Y", matlab=True)
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    reader = open_video(path)
    assert (reader.height, reader.width) == (H, W)  # not (W, H): MATLAB's d1 x d2 x T
    np.testing.assert_array_equal(_all(reader), movie)


def test_matlab_v5_movie(tmp_path: Path, movie: np.ndarray) -> None:
    path = write_hdf5_movie(tmp_path / "Y5.mat", movie, dataset="Y")
    reader = open_video(path)
    assert (reader.n_frames, reader.height, reader.width) == (T, H, W)
    np.testing.assert_array_equal(_all(reader), movie)


# =========================================================================== Suite2p / NWB


def test_suite2p_bin(tmp_path: Path, movie: np.ndarray) -> None:
    binary = write_suite2p_bin(tmp_path / "plane0", movie.astype(np.int16) - 20, fs=15.0)
    for target in (binary, binary.parent):
        reader = open_video(target)
        assert isinstance(reader, Suite2pBinReader) and reader.dtype == np.int16 and reader.fps == 15.0
        np.testing.assert_array_equal(_all(reader), movie.astype(np.int16) - 20)
    assert list_video_files(binary.parent) == [binary, binary.parent / "ops.npy"]
    data = binary.read_bytes()
    binary.write_bytes(data[: len(data) - 7])
    with pytest.raises(InputFormatError, match="truncated"):
        open_video(binary)
    binary.write_bytes(data[: H * W * 2 * 10])
    with pytest.raises(InputFormatError, match="nframes = 40"):
        open_video(binary)


def test_nwb_photon_series(tmp_path: Path, movie: np.ndarray) -> None:
    fp = blob_footprints(H, W, [(5, 5), (15, 20)])
    path = write_nwb(
        tmp_path / "s.nwb", footprints=fp, F=np.ones((2, T)), movie=movie, fps=12.5, photon="TwoPhotonSeries"
    )
    reader = open_video(path)
    assert isinstance(reader, NwbVideoReader) and reader.series == "TwoPhotonSeries" and reader.fps == 12.5
    np.testing.assert_array_equal(_all(reader), movie)
    no_movie = write_nwb(tmp_path / "n.nwb", footprints=fp, F=np.ones((2, T)))
    with pytest.raises(InputFormatError, match="no OnePhotonSeries or TwoPhotonSeries"):
        open_video(no_movie)
    with pytest.raises(InputFormatError, match="no photon series 'nope'"):
        open_video(path, dataset="nope")


# =========================================================================== choosing


def test_broken_metadata_json_named(
    tmp_path: Path, movie: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", movie[:10], frames_per_file=10)
    meta = json.loads((folder / "metaData.json").read_text())
    meta["ROI"] = {"height": H + 1, "width": W}
    (folder / "metaData.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        open_video(folder)
    assert "differs from the AVI frame size" in caplog.text
