"""End to end on real data: the Minian demo session (a real Miniscope V3 recording, Minian
output of 410 units x 2000 frames and the raw frames, every second one, as FFV1 AVIs) and
a real CNMF-E ``neuron`` object (-v7.3, 27 components), ingested and run through the
pipeline on a local Dask cluster; plus the other real CNMF-E files.

The data live in ``<repo>/../shared/data/real`` (read-only); the tests skip if it is missing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import xarray as xr

import cellsift
from cellsift.catalog.store import Catalog
from cellsift.pipeline.ingest import ingest_cohort
from cellsift.pipeline.readers import CnmfeMatReader, open_extraction, open_video
from cellsift.schemas.dataset import validate_session_dataset
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import write_manifest_csv

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
MINIAN = REAL / "minian_demo"
NEURON = REAL / "cnmfe_matlab_vergaloy" / "neuron1--1000.mat"
WORKSPACE = REAL / "cnmfe_matlab_vergaloy" / "matlab_neruon1--1000.mat"
JFLAB = REAL / "cnmfe_reviewer_jflab" / "unlabeled_rois.mat"

pytestmark = pytest.mark.skipif(
    not (MINIAN.is_dir() and NEURON.is_file()), reason=f"real data not found under {REAL}"
)


def _row(session: str, **values: object) -> dict[str, object]:
    return {"cohort": "real", "animal": "demo", "session": session, "stage": "baseline", "day": 1, **values}


def _minian_row(**values: object) -> dict[str, object]:
    """The Minian demo session: its raw video at 20 Hz and the Minian output."""
    video, extraction = str(MINIAN / "raw_video_ffv1"), str(MINIAN / "minian_output")
    return _row("minian_demo", video=video, extraction=extraction, fps=20, **values)


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("real")
    manifest = write_manifest_csv(
        root / "cohort.csv",
        [
            # the raw video holds every 2nd frame of the 2000 the traces cover: declared
            _minian_row(temporal_downsample=2),
            # a CNMF-E Sources2D object saved by save_workspace (-v7.3); no movie
            _row("cnmfe_neuron", video="", extraction=str(NEURON)),
        ],
    )
    lake = root / "lake"
    results = ingest_cohort(manifest, lake)
    return lake, results


def test_real_sessions_ingest(real_lake: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    lake, (minian, neuron) = real_lake
    assert minian.status == "ingested", minian.error
    assert neuron.status == "ingested", neuron.error
    assert (minian.n_units, minian.n_frames) == (410, 1000)
    assert (neuron.n_units, neuron.n_frames) == (27, 1000)

    ds = xr.open_zarr(lake / minian.dataset_path)
    validate_session_dataset(ds, check_values=True)
    assert dict(ds.sizes) == {"unit_id": 410, "height": 480, "width": 752, "frame": 1000}
    assert ds.attrs["fps"] == 10.0 and ds.attrs["downsampled"] == "traces"
    assert (ds.attrs["source_trace_frames"], ds.attrs["source_video_frames"]) == (2000, 1000)
    assert ds.attrs["orientation_check"] == "confirmed"  # footprints match the raw movie at the cells' peaks
    scores = json.loads(ds.attrs["orientation_scores"])
    assert scores["C"] > 0.1 > scores["F"]  # Minian's dense (height, width) footprints, row-major
    assert 85 not in ds.unit_id.values and ds.unit_id.values.max() == 415  # ids removed by Minian stay absent
    raw_c = xr.open_zarr(MINIAN / "minian_output" / "C.zarr", consolidated=False)["C"]
    np.testing.assert_allclose(
        ds.C.values[:, :5], raw_c.values[:, 0:10:2], rtol=1e-6
    )  # sampled at the video's frames
    first = next(open_video(MINIAN / "raw_video_ffv1").iter_blocks(2))
    np.testing.assert_array_equal(ds.movie[:2].values, first)
    ds.close()

    nds = xr.open_zarr(lake / neuron.dataset_path)
    assert dict(nds.sizes) == {"unit_id": 27, "height": 261, "width": 351, "frame": 1000}
    assert "movie" not in nds and nds.attrs["fps"] == pytest.approx(5.02)
    assert nds.Cn.shape == (261, 351)
    nds.close()
    rec = Catalog(lake).get("real", "demo", "cnmfe_neuron")
    assert rec is not None and rec.source_format == "cnmfe_mat" and rec.video == ""


def test_real_sessions_run_through_the_pipeline(real_lake: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    from distributed import Client, LocalCluster

    from cellsift.pipeline.stages import run_pipeline

    lake, _ = real_lake
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            summary = run_pipeline(lake, client=client)
    assert summary.count("processed") == 2, [(o.session, o.status, o.error) for o in summary.outcomes]
    lake_view = cellsift.open_lake(lake)
    cells, sessions = lake_view.cells, lake_view.sessions
    counts = cells.groupby("session").size().to_dict()
    assert counts == {"minian_demo": 410, "cnmfe_neuron": 27}
    minian = cells[cells["session"] == "minian_demo"]
    assert minian["spatial_corr"].notna().all() and minian["spatial_corr"].median() > 0.1  # the movie agrees
    assert cells[cells["session"] == "cnmfe_neuron"]["spatial_corr"].isna().all()  # no movie: not measured
    assert minian["area_px"].between(20, 1300).all()  # Minian's footprints: 29 to 1216 px
    assert 0.0 <= minian["overlap_flag"].mean() < 0.2
    assert set(sessions["n_frames"]) == {1000}


def test_real_sessions_are_classified_by_the_shipped_model(real_lake: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    """The Minian session (10 Hz: clips resampled to the model's 20 Hz) and the movie-less
    CNMF-E neuron (scored by the ensemble's table-only model) are both classified."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline.classify import classify_lake
    from cellsift.pipeline.stages import run_pipeline

    lake, _ = real_lake
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            run_pipeline(lake, client=client)  # up to date if the test above ran
            preds = classify_lake(lake, "default", client=client)
    assert preds.attrs["failed"] == []
    cells = cellsift.open_lake(lake).cells
    assert cells["p_good"].between(0, 1).all() and cells["label"].isin(["good", "bad"]).all()
    frac_good = cells.groupby("session")["label"].apply(lambda s: (s == "good").mean())
    # real CNMF-E / Minian output has both real cells and artifacts
    assert 0.05 < frac_good["minian_demo"] < 0.95 and 0.05 < frac_good["cnmfe_neuron"] <= 1.0
    assert cells.loc[cells["label"] == "bad", "reason"].notna().mean() > 0.5


def test_real_minian_without_declared_downsampling(tmp_path: Path) -> None:
    manifest = write_manifest_csv(tmp_path / "cohort.csv", [_minian_row()])
    (result,) = ingest_cohort(manifest, tmp_path / "lake")
    assert result.status == "failed"
    assert "traces have 2000 frames" in result.error and "has 1000" in result.error
    assert "temporal_downsample: 2" in result.error and "minian_output" in result.error


def test_real_viewneurons_workspace_reads_like_the_neuron() -> None:
    if not WORKSPACE.is_file():
        pytest.skip(f"{WORKSPACE} not found")
    neuron = CnmfeMatReader(NEURON).read()
    workspace = CnmfeMatReader(WORKSPACE).read()  # the viewNeurons dump: Sources2D 'obj'
    assert (workspace.n_units, workspace.dims) == (27, (261, 351))
    assert abs(workspace.A - neuron.A).max() == 0
    np.testing.assert_array_equal(workspace.C, neuron.C)


@pytest.mark.skipif(not JFLAB.is_file(), reason=f"{JFLAB} not found")
def test_real_jflab_rois(tmp_path: Path) -> None:
    """jf-lab's CNMF-E ROIs: C_raw is shorter than C in this file (the README says so), a
    clear error; without it the file ingests with its frame size taken from Cn and ssub,
    and the footprints' column-major order is confirmed against Cn."""
    with pytest.raises(
        InputFormatError, match=r"C_raw has shape \(25, 1800\), expected \(25, 2400\)"
    ) as info:
        open_extraction(JFLAB).read()
    assert str(JFLAB) in str(info.value)
    mat = {k: v for k, v in scipy.io.loadmat(str(JFLAB)).items() if not k.startswith("__") and k != "C_raw"}
    fixed = tmp_path / "rois_without_C_raw.mat"
    scipy.io.savemat(str(fixed), mat)
    manifest = write_manifest_csv(tmp_path / "cohort.csv", [_row("jflab", extraction=str(fixed), fps=10)])
    (result,) = ingest_cohort(manifest, tmp_path / "lake")
    assert result.status == "ingested", result.error
    ds = xr.open_zarr(tmp_path / "lake" / result.dataset_path)
    assert dict(ds.sizes) == {"unit_id": 25, "height": 243, "width": 324, "frame": 2400}
    assert ds.attrs["orientation_check"] == "confirmed"
    assert int(ds["keep"].sum()) == 18  # the AutoML 'keep' is a column, not labels
    assert json.loads(ds.attrs["labels_sources"]) == []
    ds.close()
    shutil.rmtree(tmp_path / "lake")
