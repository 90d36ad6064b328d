"""CNMF-E results in MATLAB v5 and v7.3 files: round trips, defaults, checks and errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    CnmfeMatReader,
    Extraction,
    ExtractionReader,
    open_extraction,
)
from cellsift.schemas.errors import CellsiftError, InputFormatError, SessionNotFoundError
from tests.pipeline.fixtures import (
    blob_footprints,
    cnmfe_arrays,
    synthetic_traces,
    to_cnmfe_A,
    write_cnmfe_v5,
    write_cnmfe_v73,
)

H, W = 32, 40


def _extraction_inputs(k: int = 3, t: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Footprints (k, H, W) and traces C, C_raw, S (k, t)."""
    centres = [(5, 6), (20, 30), (12, 35)][:k]
    fp = blob_footprints(H, W, centres)
    C, C_raw, S = synthetic_traces(k, t, seed=3)
    return fp, C, C_raw, S


@pytest.mark.parametrize("writer", [write_cnmfe_v5, write_cnmfe_v73])
@pytest.mark.parametrize("sparse", [True, False])
def test_cnmfe_round_trip(tmp_path: Path, writer, sparse: bool) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = _extraction_inputs()
    path = writer(
        tmp_path / "r.mat",
        **cnmfe_arrays(fp, C, C_raw, S, sparse=sparse),
        fps=20.0,
        ids=np.array([4, 8, 15]),
        Cn=fp.max(axis=0),
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
    fp, C, _, _ = _extraction_inputs()
    path = writer(tmp_path / "r.mat", **cnmfe_arrays(fp, C), fps=None)
    with caplog.at_level(logging.WARNING):
        ext = CnmfeMatReader(path).read()
    np.testing.assert_array_equal(ext.unit_ids, [1, 2, 3])
    np.testing.assert_array_equal(ext.C_raw, ext.C)
    assert not np.any(ext.S) and ext.S.shape == ext.C.shape
    assert ext.fps is None
    assert "no S" in caplog.text


def test_cnmfe_single_unit_squeezed(tmp_path: Path) -> None:
    fp, C, C_raw, S = _extraction_inputs(k=1)
    path = write_cnmfe_v5(
        tmp_path / "r.mat", **cnmfe_arrays(fp, C, C_raw, S, sparse=False), ids=np.array([7])
    )
    ext = CnmfeMatReader(path).read()
    assert ext.C.shape == (1, 50) and ext.A.shape == (H * W, 1)
    np.testing.assert_array_equal(ext.unit_ids, [7])


def test_cnmfe_v73_is_real_hdf5_with_mat_header(tmp_path: Path) -> None:
    fp, C, _, _ = _extraction_inputs()
    path = write_cnmfe_v73(tmp_path / "r.mat", **cnmfe_arrays(fp, C))
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(str(path))  # scipy cannot read it: the h5py path is needed


@pytest.mark.parametrize("writer", [write_cnmfe_v5, write_cnmfe_v73])
def test_cnmfe_truncated(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = _extraction_inputs(t=400)
    path = writer(tmp_path / "r.mat", **cnmfe_arrays(fp, C, C_raw, S))
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
    fp, C, _, _ = _extraction_inputs()
    scipy.io.savemat(str(tmp_path / "flat.mat"), {"A": to_cnmfe_A(fp), "C": C, "options": {"d1": H, "d2": W}})
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
    fp, C, C_raw, S = _extraction_inputs()
    A = to_cnmfe_A(fp).toarray()
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


def test_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "g.mat").write_bytes(b"\x00" * 300)
    with pytest.raises(CellsiftError) as info:
        CnmfeMatReader(tmp_path / "g.mat").read()
    assert "\n" not in str(info.value)
