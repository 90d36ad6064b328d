"""Miniscope recordings (V4 folders of numbered AVIs, one AVI): layout, decoding,
timestamps and metadata."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest

from cellsift.pipeline.readers import (
    MiniscopeAviReader,
    VideoReader,
    open_video,
    parse_fps,
)
from cellsift.schemas.errors import InputFormatError, SessionNotFoundError
from tests.pipeline.fixtures import (
    write_avi,
    write_miniscope_v4,
)

H, W = 32, 40


def _movie(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W), dtype=np.uint8)


def _decode_all(folder: Path) -> np.ndarray:
    return np.concatenate(list(open_video(folder).iter_blocks(1000)))


@pytest.mark.parametrize("codec", ["ffv1", "rawvideo"])
def test_miniscope_round_trip(tmp_path: Path, codec: str) -> None:
    movie = _movie(60)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=30, codec=codec)
    reader = open_video(folder)
    assert isinstance(reader, VideoReader)
    assert (reader.n_frames, reader.height, reader.width) == (60, H, W)
    assert reader.dtype == np.uint8
    assert reader.fps == 20.0
    assert [p.name for p in reader.files] == ["0.avi", "1.avi", "timeStamps.csv", "metaData.json"]
    np.testing.assert_array_equal(_decode_all(folder), movie)
    # timestamps: ms -> s relative to the first frame
    assert reader.timestamps_s is not None
    assert reader.timestamps_s[0] == 0.0
    np.testing.assert_allclose(reader.timestamps_s[:3], [0.0, 0.05, 0.1], atol=1e-3)


def test_blocks_span_chunks_and_respect_size(tmp_path: Path) -> None:
    movie = _movie(60)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=25)
    blocks = list(MiniscopeAviReader(folder).iter_blocks(16))
    assert [len(b) for b in blocks] == [16, 16, 16, 12]
    np.testing.assert_array_equal(np.concatenate(blocks), movie)
    assert blocks[0] is not blocks[1] and not np.shares_memory(blocks[0], blocks[1])


def test_chunks_sorted_numerically(tmp_path: Path) -> None:
    movie = _movie(24)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=2)  # 0.avi .. 11.avi
    reader = MiniscopeAviReader(folder)
    assert [p.name for p in reader.chunks][9:12] == ["9.avi", "10.avi", "11.avi"]
    np.testing.assert_array_equal(_decode_all(folder), movie)


def test_missing_chunk_named(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(40), frames_per_file=10)
    (folder / "2.avi").unlink()
    with pytest.raises(InputFormatError, match=r"2\.avi is missing") as info:
        MiniscopeAviReader(folder)
    assert info.value.path is not None and info.value.path.endswith("2.avi")


def test_truncated_chunk(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(60), frames_per_file=30)
    data = (folder / "1.avi").read_bytes()
    (folder / "1.avi").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match="1.avi") as info:
        reader = MiniscopeAviReader(folder)
        for _ in reader.iter_blocks(16):
            pass
    assert "truncated" in str(info.value) or "cannot" in str(info.value)


def test_garbage_avi(tmp_path: Path) -> None:
    folder = tmp_path / "ms"
    folder.mkdir()
    (folder / "0.avi").write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(InputFormatError, match=r"0\.avi"):
        MiniscopeAviReader(folder)


def test_missing_and_empty_video(tmp_path: Path) -> None:
    with pytest.raises(SessionNotFoundError):
        MiniscopeAviReader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="no AVI files"):
        MiniscopeAviReader(tmp_path / "empty")


def test_different_frame_sizes(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(20), frames_per_file=10)
    write_avi(folder / "1.avi", iter(np.zeros((10, 16, 16), np.uint8)), height=16, width=16)
    with pytest.raises(InputFormatError, match="differs"):
        MiniscopeAviReader(folder)


def test_single_avi_and_nested_folder(tmp_path: Path) -> None:
    movie = _movie(12)
    write_avi(tmp_path / "one.avi", iter(movie), height=H, width=W, fps=15)
    reader = open_video(tmp_path / "one.avi")
    assert reader.n_frames == 12 and reader.fps is None and reader.timestamps_s is None
    assert reader.container_fps == 15.0
    np.testing.assert_array_equal(np.concatenate(list(reader.iter_blocks(5))), movie)
    # Miniscope software nests the AVIs one folder down
    write_miniscope_v4(tmp_path / "session" / "My_V4_Miniscope", movie, frames_per_file=6)
    assert open_video(tmp_path / "session").n_frames == 12


def test_timestamps_length_mismatch_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(20), frames_per_file=10)
    lines = (folder / "timeStamps.csv").read_text().splitlines()
    (folder / "timeStamps.csv").write_text("\n".join(lines[:-3]) + "\n")
    with caplog.at_level(logging.WARNING):
        reader = MiniscopeAviReader(folder)
    assert reader.timestamps_s is None
    assert "timestamps" in caplog.text


def test_bad_timestamps_and_metadata(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(10), frames_per_file=10)
    (folder / "timeStamps.csv").write_text("Frame Number,Time Stamp (ms)\n0,abc\n")
    with pytest.raises(InputFormatError, match="timestamps"):
        MiniscopeAviReader(folder)
    (folder / "timeStamps.csv").unlink()
    (folder / "metaData.json").write_text("{not json")
    with pytest.raises(InputFormatError, match="metaData.json"):
        MiniscopeAviReader(folder)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20FPS", 20.0),
        ("30 fps", 30.0),
        (20, 20.0),
        ("15", 15.0),
        (12.5, 12.5),
        ("fast", None),
        (0, None),
        (None, None),
    ],
)
def test_parse_fps(value: object, expected: float | None) -> None:
    assert parse_fps(value) == expected


def test_numeric_frame_rate(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(10), frames_per_file=10, frame_rate=30)
    assert MiniscopeAviReader(folder).fps == 30.0


def test_av_reader_matches_pyav(tmp_path: Path) -> None:
    """The reader's frames are exactly what PyAV decodes from the chunk files."""
    movie = _movie(20, seed=5)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=20)
    with av.open(str(folder / "0.avi")) as container:
        direct = np.stack([f.to_ndarray() for f in container.decode(video=0)])
    np.testing.assert_array_equal(_decode_all(folder), direct)
