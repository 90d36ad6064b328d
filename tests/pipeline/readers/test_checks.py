"""Checks on raw files and existing-label importers: frame alignment (temporal
downsampling), footprint orientation against the movie's peak frames, component checks,
and every labels format."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    CnmfeMatReader,
    PeakFrameCheck,
    check_frame_size,
    check_orientation,
    detect_labels_format,
    frame_alignment,
    image_orientation_scores,
    read_labels_file,
    validate_extraction,
)
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures_formats import (
    blob_footprints,
    render_frames,
    synthetic_traces,
    to_cnmfe_A,
    write_cnmfe_v5,
    write_inscopix_props,
    write_inscopix_traces,
    write_labels_csv,
)

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
H, W = 40, 52


def _ext(tmp_path: Path, *, k: int = 4, t: int = 300, ids: np.ndarray | None = None, **overrides):  # type: ignore[no-untyped-def]
    centres = [(8, 9), (30, 14), (20, 40), (10, 30)][:k]
    fp = blob_footprints(H, W, centres)
    C, C_raw, S = synthetic_traces(k, t, seed=2)
    path = write_cnmfe_v5(
        tmp_path / "r.mat",
        A=to_cnmfe_A(fp),
        C=C,
        C_raw=C_raw,
        S=S,
        d1=H,
        d2=W,
        ids=np.arange(1, k + 1) if ids is None else ids,
    )
    ext = CnmfeMatReader(path).read()
    return dataclasses.replace(ext, **overrides) if overrides else ext


# =========================================================================== alignment


def test_frame_alignment_cases(tmp_path: Path) -> None:
    kw = {"extraction": tmp_path / "e.mat", "video": tmp_path / "v"}
    assert frame_alignment(100, 100, declared=None, **kw).ratio == 1
    with pytest.raises(
        InputFormatError, match="temporal_downsample is 2 but the traces and the video both have 100"
    ):
        frame_alignment(100, 100, declared=2, **kw)
    with pytest.raises(
        InputFormatError, match=r"a ratio of exactly 2, a temporal downsampling \(the video holds every 2nd"
    ) as info:
        frame_alignment(2000, 1000, declared=None, **kw)
    assert "temporal_downsample: 2" in info.value.fix and info.value.field == "temporal_downsample"
    traces_longer = frame_alignment(2000, 1000, declared=2, **kw)
    assert (traces_longer.ratio, traces_longer.longer, traces_longer.n_frames) == (2, "traces", 1000)
    with pytest.raises(InputFormatError, match=r"tsub = 3"):
        frame_alignment(100, 301, declared=None, tsub=3, **kw)
    video_longer = frame_alignment(100, 301, declared=3, **kw)  # CNMF-E keeps floor(T / tsub) frames
    assert (video_longer.longer, video_longer.n_frames) == ("video", 100)
    with pytest.raises(InputFormatError, match="differ by a factor of 2"):
        frame_alignment(2000, 1000, declared=4, **kw)
    with pytest.raises(InputFormatError, match="traces have 1500 frames but the video") as info:
        frame_alignment(1500, 1000, declared=None, **kw)
    assert info.value.field == "C"


def test_frame_size_checks(tmp_path: Path) -> None:
    ext = _ext(tmp_path)
    check_frame_size(ext, H, W, path=tmp_path / "r.mat", video=tmp_path / "v")
    with pytest.raises(InputFormatError, match="look swapped"):
        check_frame_size(ext, W, H, path=tmp_path / "r.mat", video=tmp_path / "v")
    no_dims = dataclasses.replace(ext, d1=None, d2=None)
    with pytest.raises(InputFormatError, match=r"2x spatially downsampled footprints \(ssub=2\)"):
        check_frame_size(no_dims, 2 * H, 2 * W, path=tmp_path / "r.mat", video=tmp_path / "v")


# =========================================================================== components


def test_empty_and_silent_components(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ext = _ext(tmp_path, ids=np.array([5, 6, 7, 8]))
    A = ext.A.tolil()
    A[:, 2] = 0
    with pytest.raises(InputFormatError, match="1 of 4 footprints are empty .*units 7") as info:
        validate_extraction(dataclasses.replace(ext, A=sp.csc_matrix(A)), path=tmp_path / "r.mat")
    assert info.value.field == "A"
    with pytest.raises(InputFormatError, match="every footprint is empty"):
        validate_extraction(
            dataclasses.replace(ext, A=sp.csc_matrix(ext.A.shape, dtype=np.float32)), path=tmp_path / "r.mat"
        )
    silent = ext.C_raw.copy()
    silent[1] = 0
    with caplog.at_level(logging.WARNING):
        validate_extraction(dataclasses.replace(ext, C_raw=silent), path=tmp_path / "r.mat")
    assert "all-zero traces: 6" in caplog.text
    with pytest.raises(InputFormatError, match="every raw trace is all zero"):
        validate_extraction(dataclasses.replace(ext, C_raw=np.zeros_like(silent)), path=tmp_path / "r.mat")


# =========================================================================== orientation


def _movie_and_check(footprints: np.ndarray, declared_flat: sp.csc_matrix, t: int = 300) -> dict[str, float]:
    k, h, w = footprints.shape
    C, _, _ = synthetic_traces(k, t, seed=5)
    movie = render_frames(footprints, C, seed=5)
    check = PeakFrameCheck(declared_flat, h, w, C)
    for start in range(0, t, 64):  # fed in blocks, as ingest streams it
        check.take(movie[start : start + 64], start)
    assert check.n_checked == k
    return check.scores()


def test_orientation_column_major_confirmed_and_row_major_caught(tmp_path: Path) -> None:
    fp = blob_footprints(H, W, [(8, 9), (30, 14), (20, 40), (10, 30)])
    scores = _movie_and_check(fp, to_cnmfe_A(fp))
    assert scores["F"] > 0.5 > 0.1 > scores["C"]
    assert (
        check_orientation(scores, declared="F", path=tmp_path, square=False, against="movie") == "confirmed"
    )
    row_major = sp.csc_matrix(np.stack([f.ravel() for f in fp], axis=1))  # saved with numpy's default order
    scores = _movie_and_check(fp, row_major)
    with pytest.raises(InputFormatError, match="row-major/column-major mixed up") as info:
        check_orientation(scores, declared="F", path=tmp_path / "r.mat", square=False, against="the movie")
    assert "pixel_order: C" in info.value.fix and info.value.field == "A"
    assert (
        check_orientation(scores, declared="C", path=tmp_path, square=False, against="movie") == "confirmed"
    )


def test_orientation_transposed_square_frames(tmp_path: Path) -> None:
    fp = blob_footprints(36, 36, [(5, 20), (28, 9), (18, 30)])
    transposed = to_cnmfe_A(fp.transpose(0, 2, 1))  # footprints of the transposed frame
    scores = _movie_and_check(fp, transposed)
    with pytest.raises(InputFormatError, match="footprints look transposed"):
        check_orientation(scores, declared="F", path=tmp_path, square=True, against="the movie")


def test_orientation_unclear_when_nothing_correlates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert (
            check_orientation({"F": 0.01, "C": 0.02}, declared="F", path=tmp_path, square=False, against="x")
            == "unclear"
        )
    assert "cannot confirm the footprint orientation" in caplog.text


@pytest.mark.skipif(
    not (REAL / "cellreg_sample_footprints").is_dir(), reason=f"real data not found at {REAL}"
)
def test_orientation_on_real_footprints(tmp_path: Path) -> None:
    """Real 1-photon footprints (CellReg sample, 255 x 324 px): a movie rendered from them
    tells column-major from row-major footprints."""
    import scipy.io

    mat = scipy.io.loadmat(str(REAL / "cellreg_sample_footprints" / "spatial_footprints_01.mat"))
    fp = np.asarray(mat["allFiltersMat"][:60, 40:120, 60:160], dtype=np.float32)  # a crop, 60 cells
    fp = fp[fp.reshape(len(fp), -1).max(axis=1) > 0]
    fp /= fp.reshape(len(fp), -1).max(axis=1)[:, None, None]
    scores = _movie_and_check(fp, to_cnmfe_A(fp))
    assert (
        check_orientation(scores, declared="F", path=tmp_path, square=False, against="movie") == "confirmed"
    )
    with pytest.raises(InputFormatError, match="mixed up"):
        check_orientation(scores, declared="C", path=tmp_path, square=False, against="movie")


def test_orientation_against_a_correlation_image(tmp_path: Path) -> None:
    fp = blob_footprints(H, W, [(8, 9), (30, 14), (20, 40), (10, 30)])
    scores = image_orientation_scores(to_cnmfe_A(fp), H, W, fp.max(axis=0))
    assert scores["F"] > 0.9 and abs(scores["C"]) < 0.3


# =========================================================================== labels


def test_labels_formats_detected_and_read(tmp_path: Path) -> None:
    ext = _ext(tmp_path, ids=np.array([0, 1, 2, 3]))
    kw = {"ext": ext, "fmt": None, "cohort": "c", "animal": "m1", "session": "d1"}
    plain = write_labels_csv(tmp_path / "l.csv", [0, 3], ["good", "bad"], ["", "dendrite"])
    got = read_labels_file(plain, **kw)
    assert detect_labels_format(plain) == "csv" and got.source == "csv" and got.reasons == (None, "dendrite")

    cohort = tmp_path / "cohort_labels.csv"
    cohort.write_text(
        "animal,session,unit_id,label\nm1,d1,1,keep\nm1,d2,1,bad\nm2,d1,2,bad\nm1,d1,2,exclude\n"
    )
    got = read_labels_file(cohort, **kw)
    assert detect_labels_format(cohort) == "cohort_csv"
    assert got.unit_ids.tolist() == [1, 2] and got.labels == ("good", "bad")
    assert read_labels_file(cohort, **{**kw, "animal": "m9"}) is None  # no rows for this session: no labels

    props = write_inscopix_props(
        tmp_path / "props.csv", [0, 1, 2, 3], ["accepted", "rejected", "undecided", "accepted"]
    )
    got = read_labels_file(props, **kw)
    assert detect_labels_format(props) == "inscopix_status" and got.source == "inscopix_cell_status"
    assert got.unit_ids.tolist() == [0, 1, 3] and got.labels == ("good", "bad", "good")

    traces = write_inscopix_traces(
        tmp_path / "traces.csv", [0, 2], ["rejected", "accepted"], np.zeros((2, 5))
    )
    got = read_labels_file(traces, **kw)
    assert got.unit_ids.tolist() == [0, 2] and got.labels == ("bad", "good")

    deleted = tmp_path / "deleted.csv"
    deleted.write_text("deleted_id\n2\n")
    got = read_labels_file(deleted, **kw)
    assert got.source == "cnmfe_manual_deletion" and got.labels == ("good", "good", "bad", "good")
    assert got.reasons[2] == "manually_deleted"
    flags = tmp_path / "flags.csv"
    flags.write_text("unit_id,deleted\n0,1\n1,0\n")
    assert read_labels_file(flags, **kw).labels == ("bad", "good")


def test_labels_errors(tmp_path: Path) -> None:
    ext = _ext(tmp_path)
    kw = {"ext": ext, "fmt": None, "cohort": "c", "animal": "m1", "session": "d1"}
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,label\n1,good\n1,bad\n")
    with pytest.raises(InputFormatError, match="labelled more than once"):
        read_labels_file(bad, **kw)
    bad.write_text("unit_id,label\n99,good\n")
    with pytest.raises(InputFormatError, match="unit ids the extraction does not have"):
        read_labels_file(bad, **kw)
    bad.write_text("unit_id,label\n1,maybe\n")
    with pytest.raises(InputFormatError, match="label 'maybe'"):
        read_labels_file(bad, **kw)
    bad.write_text("Name,Status\nC01,accepted\nC02,pending\n")
    with pytest.raises(InputFormatError, match="cell status 'pending'"):
        read_labels_file(bad, **kw)
    bad.write_text("deleted_id\n77\n")
    with pytest.raises(InputFormatError, match="deleted ids the extraction does not have"):
        read_labels_file(bad, **kw)
    with pytest.raises(InputFormatError, match="unknown labels format"):
        read_labels_file(bad, **{**kw, "fmt": "xml"})


def test_cnmfe_before_after_pair(tmp_path: Path) -> None:
    fp = blob_footprints(H, W, [(8, 9), (30, 14), (20, 40), (10, 30)])
    C, C_raw, S = synthetic_traces(4, 100, seed=1)
    before = CnmfeMatReader(
        write_cnmfe_v5(
            tmp_path / "before.mat", A=to_cnmfe_A(fp), C=C, d1=H, d2=W, ids=np.array([11, 12, 13, 14])
        )
    ).read()
    keep = [0, 2, 3]
    after_ids = write_cnmfe_v5(
        tmp_path / "after_ids.mat", A=to_cnmfe_A(fp[keep]), C=C[keep], d1=H, d2=W, ids=np.array([11, 13, 14])
    )
    kw = {"fmt": None, "cohort": "c", "animal": "m", "session": "s"}
    got = read_labels_file(after_ids, ext=before, **kw)
    assert detect_labels_format(after_ids) == "cnmfe_pair"
    assert got.labels == ("good", "bad", "good", "good") and got.source == "cnmfe_manual_deletion"
    # without ids: matched by footprint (a trimmed footprint still matches)
    trimmed = fp[keep].copy()
    trimmed[0][trimmed[0] < 0.3] = 0
    after_fp = write_cnmfe_v5(tmp_path / "after_fp.mat", A=to_cnmfe_A(trimmed), C=C[keep], d1=H, d2=W)
    before_no_ids = CnmfeMatReader(
        write_cnmfe_v5(tmp_path / "b2.mat", A=to_cnmfe_A(fp), C=C, d1=H, d2=W)
    ).read()
    assert read_labels_file(after_fp, ext=before_no_ids, **kw).labels == ("good", "bad", "good", "good")
    other = write_cnmfe_v5(
        tmp_path / "other.mat", A=to_cnmfe_A(fp), C=C, d1=H, d2=W, ids=np.array([11, 12, 13, 99])
    )
    with pytest.raises(InputFormatError, match="ids the extraction lacks"):
        read_labels_file(other, ext=before, **kw)
