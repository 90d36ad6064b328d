"""The orientation check: footprints against the movie's peak frames or a correlation
image (transposed footprints, row- or column-major pixels)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    PeakFrameCheck,
    check_orientation,
    image_orientation_scores,
)
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import (
    blob_footprints,
    render_frames,
    synthetic_traces,
    to_cnmfe_A,
)

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"


H, W = 40, 52


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
