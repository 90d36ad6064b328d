"""Extraction readers: CNMF-E (results, neuron_results, Sources2D object), CaImAn HDF5,
Minian zarr folders, Suite2p plane folders and NWB; per-unit columns
and embedded labels."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    CaimanHdf5Reader,
    CnmfeMatReader,
    Extraction,
    MinianZarrReader,
    NwbExtractionReader,
    Suite2pReader,
    list_extraction_files,
    open_extraction,
)
from cellsift.pipeline.readers.orientation import footprint_image
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import (
    blob_footprints,
    cnmfe_arrays,
    synthetic_traces,
    to_cnmfe_A,
    write_caiman_hdf5,
    write_cnmfe_neuron,
    write_cnmfe_v5,
    write_cnmfe_v73,
    write_minian,
    write_nwb,
    write_suite2p_plane,
)

H, W, K, T = 24, 30, 3, 50
CENTRES = [(5, 6), (18, 12), (10, 24)]


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    fp = blob_footprints(H, W, CENTRES)
    C, C_raw, S = synthetic_traces(K, T, seed=4)
    return fp, C, C_raw, S


def _images(ext: Extraction) -> np.ndarray:
    """Footprints as (K, H, W) read in the extraction's pixel order."""
    h, w = ext.dims
    return np.stack(
        [footprint_image(ext.A[:, k].toarray().ravel(), h, w, ext.pixel_order) for k in range(ext.n_units)]
    )


def _check_common(ext: Extraction, fp: np.ndarray, C: np.ndarray) -> None:
    assert ext.dims == (H, W) and ext.n_units == K and ext.n_frames == T
    assert sp.issparse(ext.A) and ext.A.dtype == np.float32 and ext.C.dtype == np.float32
    np.testing.assert_allclose(_images(ext), fp, atol=1e-6)
    np.testing.assert_allclose(ext.C, C, rtol=1e-5, atol=1e-6)


# =========================================================================== CNMF-E


@pytest.mark.parametrize("variable", ["results", "neuron_results"])
def test_cnmfe_struct_variables(tmp_path: Path, truth, variable: str) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    path = write_cnmfe_v5(
        tmp_path / "r.mat",
        **cnmfe_arrays(fp, C, C_raw, S),
        fps=10.0,
        ids=np.array([3, 7, 9]),
        variable=variable,
        tags=np.array([0, 2, 9]),
    )
    ext = CnmfeMatReader(path).read()
    _check_common(ext, fp, C)
    assert ext.pixel_order == "F" and ext.fps == 10.0 and ext.ids_from_file
    np.testing.assert_array_equal(ext.unit_ids, [3, 7, 9])
    np.testing.assert_array_equal(ext.unit_vars["cnmfe_tags"], [0, 2, 9])  # bitmask kept as a column


def test_cnmfe_neuron_results_v73(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    path = write_cnmfe_v73(tmp_path / "r.mat", **cnmfe_arrays(fp, C, C_raw, S), variable="neuron_results")
    _check_common(CnmfeMatReader(path).read(), fp, C)


@pytest.mark.parametrize("version", ["v7.3", "v7"])
@pytest.mark.parametrize("sparse", [True, False])
def test_cnmfe_sources2d_object(tmp_path: Path, truth, version: str, sparse: bool) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    path = write_cnmfe_neuron(
        tmp_path / "ws.mat",
        **cnmfe_arrays(fp, C, C_raw, S, sparse=sparse),
        fps=5.02,
        version=version,
        Cn=fp.max(axis=0).astype(np.float64),
    )
    ext = open_extraction(path).read()
    _check_common(ext, fp, C)
    np.testing.assert_allclose(ext.C_raw, C_raw, rtol=1e-5, atol=1e-6)
    assert ext.fps == pytest.approx(5.02) and not ext.ids_from_file
    np.testing.assert_array_equal(ext.unit_ids, [1, 2, 3])  # ids empty in the object: numbered 1..K
    assert ext.extras["Cn"].shape == (H, W)


def test_cnmfe_viewneurons_workspace_obj(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    path = write_cnmfe_neuron(tmp_path / "ws.mat", **cnmfe_arrays(fp, C), variable="obj")
    ext = CnmfeMatReader(path).read()
    assert ext.n_units == K


def test_cnmfe_dims_from_cn_and_ssub(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    """Flat A/C at the top level without options.d1/d2 (as jf-lab's files): the frame size
    comes from the full-resolution Cn and ssub."""
    fp, C, C_raw, S = truth
    cn_full = np.kron(fp.max(axis=0), np.ones((2, 2)))  # 48 x 60
    scipy.io.savemat(
        str(tmp_path / "flat.mat"),
        {
            "A": to_cnmfe_A(fp).toarray(),
            "C": C,
            "S": S,
            "Cn": cn_full,
            "ssub": np.uint8(2),
            "keep": np.array([[0, 2]], dtype=np.int64),
        },
    )
    ext = CnmfeMatReader(tmp_path / "flat.mat").read()
    assert ext.dims == (H, W)
    np.testing.assert_allclose(ext.extras["Cn"], fp.max(axis=0), atol=1e-6)
    np.testing.assert_array_equal(
        ext.unit_vars["keep"], [True, False, True]
    )  # kept as a column, not as labels
    assert ext.labels == ()


def test_cnmfe_unknown_variables_listed(tmp_path: Path) -> None:
    scipy.io.savemat(str(tmp_path / "x.mat"), {"footprints": np.zeros((4, 2)), "traces": np.zeros((2, 5))})
    with pytest.raises(
        InputFormatError, match=r"variables: footprints \(double\), traces \(double\)"
    ) as info:
        CnmfeMatReader(tmp_path / "x.mat").read()
    assert info.value.field == "results" and "obj2struct" in info.value.fix


def test_cnmfe_transposed_c_named(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    path = write_cnmfe_v5(tmp_path / "r.mat", **cnmfe_arrays(fp, C.T.copy()))
    with pytest.raises(InputFormatError, match="C looks transposed") as info:
        CnmfeMatReader(path).read()
    assert info.value.field == "C"


# =========================================================================== CaImAn


def test_caiman_round_trip(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    path = write_caiman_hdf5(
        tmp_path / "cnm.hdf5",
        A=to_cnmfe_A(fp),
        C=C,
        S=S,
        YrA=C_raw - C,
        dims=(H, W),
        fr=30.0,
        idx_components=np.array([0, 2]),
        idx_components_bad=np.array([1]),
    )
    reader = open_extraction(path)
    assert isinstance(reader, CaimanHdf5Reader)
    ext = reader.read()
    _check_common(ext, fp, C)
    np.testing.assert_allclose(ext.C_raw, C_raw, rtol=1e-5, atol=1e-5)  # C + YrA
    assert ext.c_raw_source == "C + YrA" and ext.fps == 30.0 and ext.pixel_order == "F"
    np.testing.assert_array_equal(ext.unit_ids, [0, 1, 2])
    (labels,) = ext.labels
    assert labels.source == "caiman_idx_components" and labels.labels == ("good", "bad", "good")
    assert set(ext.unit_vars) == {"caiman_snr", "caiman_r_value", "caiman_cnn_pred"}


def test_caiman_without_evaluation_or_yra(tmp_path: Path, truth, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, S = truth
    path = write_caiman_hdf5(tmp_path / "cnm.hdf5", A=to_cnmfe_A(fp), C=C, S=S, dims=(H, W))
    with caplog.at_level(logging.WARNING):
        ext = CaimanHdf5Reader(path).read()
    assert ext.labels == () and ext.c_raw_source == "C" and "YrA" in caplog.text


def test_caiman_structure_errors(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    with h5py.File(tmp_path / "noest.hdf5", "w") as handle:
        handle["dims"] = np.array([H, W])
    with pytest.raises(InputFormatError, match="no 'estimates' group"):
        CaimanHdf5Reader(tmp_path / "noest.hdf5").read()
    path = write_caiman_hdf5(
        tmp_path / "bad.hdf5", A=to_cnmfe_A(fp), C=C, dims=(H, W), idx_components=np.array([0, 5])
    )
    with pytest.raises(InputFormatError, match="idx_components holds indices outside"):
        CaimanHdf5Reader(path).read()
    with h5py.File(path, "r+") as handle:
        del handle["estimates/A/indptr"]
    with pytest.raises(InputFormatError, match="lacks the sparse parts indptr"):
        CaimanHdf5Reader(path).read()


# =========================================================================== Minian


def test_minian_round_trip_and_labels(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    folder = write_minian(
        tmp_path / "minian",
        footprints=fp,
        C=C,
        S=S,
        YrA=C_raw - C,
        unit_ids=np.array([4, 8, 15]),
        unit_labels=np.array([4, -1, 15]),
    )
    reader = open_extraction(folder)
    assert isinstance(reader, MinianZarrReader)
    ext = reader.read()
    _check_common(ext, fp, C)
    assert ext.pixel_order == "C" and ext.c_raw_source == "C + YrA"
    np.testing.assert_array_equal(ext.unit_ids, [4, 8, 15])
    (labels,) = ext.labels
    assert labels.source == "minian_unit_labels" and labels.labels == ("good", "bad", "good")
    assert "max_proj_extraction" in ext.extras
    files = list_extraction_files(folder)
    assert files and all(f.is_file() for f in files) and any(f.parts[-3] == "A.zarr" for f in files)


def test_minian_identity_labels_are_not_curation(
    tmp_path: Path, truth, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    folder = write_minian(tmp_path / "minian", footprints=fp, C=C, extra_vars=("mystery",))
    with caplog.at_level(logging.INFO):
        ext = MinianZarrReader(folder).read()
    assert ext.labels == () and "not curated" in caplog.text
    assert "mystery.zarr" in caplog.text  # unknown variables are reported
    assert ext.c_raw_source == "C" and not ext.S.any()


def test_minian_dims_matched_by_name(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    import xarray as xr

    fp, C, _, _ = truth
    folder = write_minian(tmp_path / "minian", footprints=fp, C=C)
    a = xr.open_zarr(folder / "A.zarr", consolidated=False).load()
    shutil.rmtree(folder / "A.zarr")
    a.transpose("width", "unit_id", "height").to_zarr(folder / "A.zarr", zarr_format=2, consolidated=False)
    np.testing.assert_allclose(_images(MinianZarrReader(folder).read()), fp, atol=1e-6)


def test_minian_missing_variable(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    folder = write_minian(tmp_path / "minian", footprints=fp, C=C)
    shutil.rmtree(folder / "C.zarr")
    with pytest.raises(InputFormatError, match=r"no C\.zarr"):
        MinianZarrReader(folder).read()


# =========================================================================== Suite2p


def test_suite2p_round_trip(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    plane = write_suite2p_plane(
        tmp_path / "suite2p" / "plane0",
        footprints=fp,
        F=C_raw + 1.0,
        Fneu=np.ones_like(C_raw),
        spks=S,
        iscell=np.array([1, 0, 1]),
        fs=30.0,
        movie=np.zeros((T, H, W)),
    )
    for target in (plane, plane.parent):
        reader = open_extraction(target)
        assert isinstance(reader, Suite2pReader)
        ext = reader.read()
        assert ext.dims == (H, W) and ext.pixel_order == "C"
        np.testing.assert_allclose(_images(ext), fp, atol=1e-6)
        np.testing.assert_allclose(ext.C_raw, C_raw + 1.0 - 0.7, rtol=1e-5, atol=1e-5)  # F - 0.7 Fneu
        assert ext.fps == 30.0 and ext.companion_video == plane / "data.bin"
        assert ext.labels[0].source == "suite2p_iscell" and ext.labels[0].labels == ("good", "bad", "good")
        assert "suite2p_iscell_prob" in ext.unit_vars
    assert [p.name for p in list_extraction_files(plane)] == [
        "stat.npy",
        "F.npy",
        "Fneu.npy",
        "spks.npy",
        "iscell.npy",
        "ops.npy",
    ]


def test_suite2p_folder_errors(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, _, _ = truth
    write_suite2p_plane(tmp_path / "s2p" / "plane0", footprints=fp, F=C)
    write_suite2p_plane(tmp_path / "s2p" / "plane1", footprints=fp, F=C)
    with pytest.raises(InputFormatError, match="several planes"):
        Suite2pReader(tmp_path / "s2p").read()
    plane = tmp_path / "s2p" / "plane1"
    np.save(plane / "iscell.npy", np.ones((K + 1, 2)))
    with pytest.raises(InputFormatError, match="iscell.npy has 4 rows for 3 ROIs"):
        Suite2pReader(plane).read()
    (plane / "stat.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputFormatError, match="cannot read stat.npy"):
        Suite2pReader(plane).read()


# =========================================================================== NWB


@pytest.mark.parametrize("mask", ["image", "pixel"])
def test_nwb_round_trip(tmp_path: Path, truth, mask: str) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, S = truth
    movie = np.zeros((T, H, W), np.uint8)
    path = write_nwb(
        tmp_path / "s.nwb",
        footprints=fp,
        F=C_raw,
        spikes=S,
        movie=movie,
        mask=mask,
        fps=15.0,
        roi_ids=np.array([11, 12, 13]),
    )
    reader = open_extraction(path)
    assert isinstance(reader, NwbExtractionReader)
    ext = reader.read()
    np.testing.assert_allclose(_images(ext), fp, atol=1e-6)
    np.testing.assert_allclose(ext.C_raw, C_raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ext.S, S, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ext.unit_ids, [11, 12, 13])
    assert (
        ext.fps == 15.0 and ext.companion_video == path and ext.companion_video_dataset == "OnePhotonSeries"
    )
    assert ext.labels[0].source == "nwb_iscell"


def test_nwb_errors(tmp_path: Path, truth) -> None:  # type: ignore[no-untyped-def]
    fp, C, C_raw, _ = truth
    path = write_nwb(tmp_path / "t.nwb", footprints=fp, F=C_raw, traces_time_first=False)
    with pytest.raises(InputFormatError, match="looks ROI x time"):
        NwbExtractionReader(path).read()
    pixel_only = write_nwb(tmp_path / "p.nwb", footprints=fp, F=C_raw, mask="pixel")
    with pytest.raises(InputFormatError, match="pixel masks but no frame size"):
        NwbExtractionReader(pixel_only).read()
    (tmp_path / "g.nwb").write_bytes(b"not hdf5")
    with pytest.raises(InputFormatError, match="not an HDF5 NWB file"):
        NwbExtractionReader(tmp_path / "g.nwb").read()


# =========================================================================== choosing
