"""Tests of the raw-format readers (Miniscope V4 video, CNMF-E .mat v5 and v7.3)."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    CnmfeMatReader,
    Extraction,
    ExtractionReader,
    MiniscopeV4Reader,
    VideoReader,
    _parse_fps,
    open_extraction,
    open_video,
)
from cellsift.schemas.errors import CellsiftError, InputFormatError, SessionNotFoundError
from tests.pipeline.fixtures_formats import (
    blob_footprints,
    synthetic_traces,
    to_cnmfe_A,
    write_avi,
    write_cnmfe_v5,
    write_cnmfe_v73,
    write_miniscope_v4,
)

H, W = 32, 40


def _movie(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W), dtype=np.uint8)


def _decode_all(folder: Path) -> np.ndarray:
    return np.concatenate(list(open_video(folder).iter_blocks(1000)))


# =========================================================================== video


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
    blocks = list(MiniscopeV4Reader(folder).iter_blocks(16))
    assert [len(b) for b in blocks] == [16, 16, 16, 12]
    np.testing.assert_array_equal(np.concatenate(blocks), movie)
    assert blocks[0] is not blocks[1] and not np.shares_memory(blocks[0], blocks[1])


def test_chunks_sorted_numerically(tmp_path: Path) -> None:
    movie = _movie(24)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=2)  # 0.avi .. 11.avi
    reader = MiniscopeV4Reader(folder)
    assert [p.name for p in reader.chunks][9:12] == ["9.avi", "10.avi", "11.avi"]
    np.testing.assert_array_equal(_decode_all(folder), movie)


def test_missing_chunk_named(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(40), frames_per_file=10)
    (folder / "2.avi").unlink()
    with pytest.raises(InputFormatError, match=r"2\.avi is missing") as info:
        MiniscopeV4Reader(folder)
    assert info.value.path is not None and info.value.path.endswith("2.avi")


def test_truncated_chunk(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(60), frames_per_file=30)
    data = (folder / "1.avi").read_bytes()
    (folder / "1.avi").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match="1.avi") as info:
        reader = MiniscopeV4Reader(folder)
        for _ in reader.iter_blocks(16):
            pass
    assert "truncated" in str(info.value) or "cannot" in str(info.value)


def test_garbage_avi(tmp_path: Path) -> None:
    folder = tmp_path / "ms"
    folder.mkdir()
    (folder / "0.avi").write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(InputFormatError, match=r"0\.avi"):
        MiniscopeV4Reader(folder)


def test_missing_and_empty_video(tmp_path: Path) -> None:
    with pytest.raises(SessionNotFoundError):
        MiniscopeV4Reader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match="no AVI files"):
        MiniscopeV4Reader(tmp_path / "empty")


def test_different_frame_sizes(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(20), frames_per_file=10)
    write_avi(folder / "1.avi", iter(np.zeros((10, 16, 16), np.uint8)), height=16, width=16)
    with pytest.raises(InputFormatError, match="differs"):
        MiniscopeV4Reader(folder)


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
        reader = MiniscopeV4Reader(folder)
    assert reader.timestamps_s is None
    assert "timestamps" in caplog.text


def test_bad_timestamps_and_metadata(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(10), frames_per_file=10)
    (folder / "timeStamps.csv").write_text("Frame Number,Time Stamp (ms)\n0,abc\n")
    with pytest.raises(InputFormatError, match="timestamps"):
        MiniscopeV4Reader(folder)
    (folder / "timeStamps.csv").unlink()
    (folder / "metaData.json").write_text("{not json")
    with pytest.raises(InputFormatError, match="metaData.json"):
        MiniscopeV4Reader(folder)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20FPS", 20.0), ("30 fps", 30.0), (20, 20.0), ("15", 15.0), (12.5, 12.5), ("fast", None), (0, None), (None, None)],
)
def test_parse_fps(value: object, expected: float | None) -> None:
    assert _parse_fps(value) == expected


def test_numeric_frame_rate(tmp_path: Path) -> None:
    folder = write_miniscope_v4(tmp_path / "ms", _movie(10), frames_per_file=10, frame_rate=30)
    assert MiniscopeV4Reader(folder).fps == 30.0


# =========================================================================== extraction


def _extraction_inputs(k: int = 3, t: int = 50) -> tuple[np.ndarray, sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
    centres = [(5, 6), (20, 30), (12, 35)][:k]
    fp = blob_footprints(H, W, centres)
    C, C_raw, S = synthetic_traces(k, t, seed=3)
    return fp, to_cnmfe_A(fp), C, C_raw, S


@pytest.mark.parametrize("writer", [write_cnmfe_v5, write_cnmfe_v73])
@pytest.mark.parametrize("sparse", [True, False])
def test_cnmfe_round_trip(tmp_path: Path, writer, sparse: bool) -> None:  # type: ignore[no-untyped-def]
    fp, A, C, C_raw, S = _extraction_inputs()
    path = writer(
        tmp_path / "r.mat", A=A if sparse else A.toarray(), C=C, C_raw=C_raw, S=S, d1=H, d2=W,
        fps=20.0, ids=np.array([4, 8, 15]), Cn=fp.max(axis=0),
    )
    reader = open_extraction(path)
    assert isinstance(reader, ExtractionReader) and isinstance(reader, CnmfeMatReader)
    ext = reader.read()
    assert isinstance(ext, Extraction)
    assert (ext.d1, ext.d2, ext.fps, ext.source_format) == (H, W, 20.0, "cnmfe_mat")
    assert sp.issparse(ext.A) and ext.A.shape == (H * W, 3) and ext.A.dtype == np.float32
    np.testing.assert_array_equal(ext.unit_ids, [4, 8, 15])
    np.testing.assert_allclose(ext.C, C, rtol=1e-6)
    np.testing.assert_allclose(ext.C_raw, C_raw, rtol=1e-6)
    np.testing.assert_allclose(ext.S, S, rtol=1e-6)
    assert ext.C.dtype == np.float32
    # column-major pixels: reshaping column k with order='F' gives the drawn footprint
    for k, (y, x) in enumerate([(5, 6), (20, 30), (12, 35)]):
        image = ext.A[:, k].toarray().reshape(H, W, order="F")
        assert np.unravel_index(np.argmax(image), image.shape) == (y, x)
        np.testing.assert_allclose(image, fp[k], rtol=1e-6)
    np.testing.assert_allclose(ext.extras["Cn"], fp.max(axis=0), rtol=1e-6)


@pytest.mark.parametrize("writer", [write_cnmfe_v5, write_cnmfe_v73])
def test_cnmfe_defaults(tmp_path: Path, writer, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    _, A, C, _, _ = _extraction_inputs()
    path = writer(tmp_path / "r.mat", A=A, C=C, d1=H, d2=W, fps=None)
    with caplog.at_level(logging.WARNING):
        ext = CnmfeMatReader(path).read()
    np.testing.assert_array_equal(ext.unit_ids, [1, 2, 3])
    np.testing.assert_array_equal(ext.C_raw, ext.C)
    assert not ext.S.any() and ext.S.shape == ext.C.shape
    assert ext.fps is None
    assert "no S" in caplog.text


def test_cnmfe_single_unit_squeezed(tmp_path: Path) -> None:
    fp, A, C, C_raw, S = _extraction_inputs(k=1)
    path = write_cnmfe_v5(tmp_path / "r.mat", A=A.toarray(), C=C, C_raw=C_raw, S=S, d1=H, d2=W, ids=np.array([7]))
    ext = CnmfeMatReader(path).read()
    assert ext.C.shape == (1, 50) and ext.A.shape == (H * W, 1)
    np.testing.assert_array_equal(ext.unit_ids, [7])


def test_cnmfe_v73_is_real_hdf5_with_mat_header(tmp_path: Path) -> None:
    _, A, C, _, _ = _extraction_inputs()
    path = write_cnmfe_v73(tmp_path / "r.mat", A=A, C=C, d1=H, d2=W)
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(str(path))  # scipy cannot read it: the h5py path is needed


@pytest.mark.parametrize("writer", [write_cnmfe_v5, write_cnmfe_v73])
def test_cnmfe_truncated(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    _, A, C, C_raw, S = _extraction_inputs(t=400)
    path = writer(tmp_path / "r.mat", A=A, C=C, C_raw=C_raw, S=S, d1=H, d2=W)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError) as info:
        CnmfeMatReader(path).read()
    assert str(path) in str(info.value)
    assert "truncated or corrupt" in str(info.value)


def test_cnmfe_garbage_and_missing(tmp_path: Path) -> None:
    (tmp_path / "g.mat").write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(InputFormatError, match="g.mat"):
        CnmfeMatReader(tmp_path / "g.mat").read()
    with pytest.raises(SessionNotFoundError):
        CnmfeMatReader(tmp_path / "none.mat").read()


def test_cnmfe_no_results_variable(tmp_path: Path) -> None:
    scipy.io.savemat(str(tmp_path / "x.mat"), {"neuron": np.zeros(3)})
    with pytest.raises(InputFormatError, match="results") as info:
        CnmfeMatReader(tmp_path / "x.mat").read()
    assert info.value.field == "results"


def test_cnmfe_flat_top_level(tmp_path: Path) -> None:
    _, A, C, _, _ = _extraction_inputs()
    scipy.io.savemat(str(tmp_path / "flat.mat"), {"A": A, "C": C, "options": {"d1": H, "d2": W}})
    assert CnmfeMatReader(tmp_path / "flat.mat").read().n_units == 3


@pytest.mark.parametrize(
    ("change", "field", "pattern"),
    [
        ("nan_C", "C", "NaN or Inf"),
        ("inf_S", "S", "NaN or Inf"),
        ("nan_A", "A", "NaN or Inf"),
        ("k_mismatch", "A", "units but C has"),
        ("craw_shape", "C_raw", "expected"),
        ("pixels", "A", "pixels per footprint"),
        ("ids_len", "ids", "unit ids"),
        ("ids_dup", "ids", "not unique"),
    ],
)
def test_cnmfe_checks(tmp_path: Path, change: str, field: str, pattern: str) -> None:
    _, A, C, C_raw, S = _extraction_inputs()
    A = A.toarray()
    ids = np.array([1, 2, 3])
    d1 = H
    if change == "nan_C":
        C[1, 5] = np.nan
    elif change == "inf_S":
        S[0, 0] = np.inf
    elif change == "nan_A":
        A[3, 0] = np.nan
    elif change == "k_mismatch":
        C, C_raw, S = C[:2], C_raw[:2], S[:2]
    elif change == "craw_shape":
        C_raw = C_raw[:, :-1]
    elif change == "pixels":
        d1 = H - 1
    elif change == "ids_len":
        ids = np.array([1, 2])
    elif change == "ids_dup":
        ids = np.array([1, 1, 2])
    path = write_cnmfe_v5(tmp_path / "r.mat", A=A, C=C, C_raw=C_raw, S=S, d1=d1, d2=W, ids=ids)
    with pytest.raises(InputFormatError, match=pattern) as info:
        CnmfeMatReader(path).read()
    assert info.value.field == field
    assert info.value.path == str(path)
    assert info.value.fix


def test_open_extraction_formats(tmp_path: Path) -> None:
    assert isinstance(open_extraction(tmp_path / "r.mat", "CNMFE"), CnmfeMatReader)
    with pytest.raises(InputFormatError, match="unknown extraction format"):
        open_extraction(tmp_path / "r.mat", "xyz")
    with pytest.raises(InputFormatError, match="format"):
        open_extraction(tmp_path / "r.npz")


def test_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "g.mat").write_bytes(b"\x00" * 300)
    with pytest.raises(CellsiftError) as info:
        CnmfeMatReader(tmp_path / "g.mat").read()
    assert "\n" not in str(info.value)


def test_av_reader_matches_pyav(tmp_path: Path) -> None:
    """The reader's frames are exactly what PyAV decodes from the chunk files."""
    movie = _movie(20, seed=5)
    folder = write_miniscope_v4(tmp_path / "ms", movie, frames_per_file=20)
    with av.open(str(folder / "0.avi")) as container:
        direct = np.stack([f.to_ndarray() for f in container.decode(video=0)])
    np.testing.assert_array_equal(_decode_all(folder), direct)
