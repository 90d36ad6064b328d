"""Which ``RoiResponseSeries`` of an NWB file is the raw trace: ``Fluorescence`` before ``DfOverF``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellsift.pipeline.readers import NwbExtractionReader
from tests.pipeline.fixtures import write_nwb


def _add_dff(path: Path, dff: np.ndarray) -> None:
    """Add a ``DfOverF`` container (as neuroconv writes it) beside the file's ``Fluorescence``."""
    import warnings

    from pynwb import NWBHDF5IO
    from pynwb.ophys import DfOverF, RoiResponseSeries

    with warnings.catch_warnings(), NWBHDF5IO(str(path), "a") as io:
        warnings.simplefilter("ignore")
        nwbfile = io.read()
        module = nwbfile.processing["ophys"]
        ps = module["ImageSegmentation"]["PlaneSegmentation"]
        region = ps.create_roi_table_region(region=list(range(dff.shape[0])), description="all ROIs")
        series = RoiResponseSeries(name="RoiResponseSeries", data=dff.T, rois=region, unit="n.a.", rate=20.0)
        module.add(DfOverF(roi_response_series=series))
        io.write(nwbfile)


def test_raw_trace_comes_from_fluorescence_not_dff(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    footprints = np.zeros((3, 12, 12), dtype=np.float32)
    for i in range(3):
        footprints[i, 2 + 3 * i : 5 + 3 * i, 2:6] = 1.0
    F = rng.normal(100.0, 5.0, (3, 50)).astype(np.float32)
    dff = (F - 100.0) / 100.0
    path = write_nwb(tmp_path / "s.nwb", footprints=footprints, F=F)
    _add_dff(path, dff)  # "DfOverF" sorts before "Fluorescence": the reader must not just take the first
    ext = NwbExtractionReader(path).read()
    np.testing.assert_allclose(np.asarray(ext.C_raw), F, rtol=1e-6)


def test_dff_alone_is_still_read(tmp_path: Path) -> None:
    import h5py

    footprints = np.zeros((2, 10, 10), dtype=np.float32)
    footprints[0, 1:4, 1:4] = footprints[1, 5:8, 5:8] = 1.0
    F = np.linspace(0.0, 1.0, 80, dtype=np.float32).reshape(2, 40)
    path = write_nwb(tmp_path / "d.nwb", footprints=footprints, F=F)
    _add_dff(path, F * 2.0)
    with h5py.File(path, "a") as fh:  # drop the Fluorescence container: only ΔF/F is left
        del fh["processing/ophys/Fluorescence"]
    ext = NwbExtractionReader(path).read()
    np.testing.assert_allclose(np.asarray(ext.C_raw), F * 2.0, rtol=1e-6)
