"""The pipeline on real Dask processes: local cluster, external scheduler + workers, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

import cellsift
from cellsift.pipeline.stages import PipelineParams, run_pipeline
from tests.commands import BIN, run_args
from tests.pipeline.loopback_cluster import loopback_cluster


def _cells(lake: Path) -> pd.DataFrame:
    cells = cellsift.open_lake(lake).cells.drop(columns=["run_id"])
    return cells.sort_values(["cohort", "animal", "session", "unit_id"]).reset_index(drop=True)


def _local_run(lake: Path, **kwargs):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            return run_pipeline(lake, client=client, **kwargs)


@pytest.fixture(scope="module")
def reference_cells(_tiny_lake_master, tmp_path_factory) -> pd.DataFrame:
    import shutil

    lake = tmp_path_factory.mktemp("ref") / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    summary = _local_run(lake)
    assert summary.count("processed") == 4, summary
    return _cells(lake)


def test_local_run_writes_tables_and_provenance(tiny_lake, reference_cells):
    summary = _local_run(tiny_lake)
    lake = cellsift.open_lake(tiny_lake)
    cells, sessions = lake.cells, lake.sessions
    assert len(sessions) == 4
    assert len(cells) == sessions["n_units"].sum() > 0
    assert not cells.duplicated(["cohort", "animal", "session", "unit_id"]).any()
    assert set(cells["run_id"]) == {summary.run_id}
    assert cells["overlap_flag"].any(), "the simulator makes overlapping duplicates"
    for col in ("spatial_corr", "peak_to_noise", "area_px", "compactness"):
        assert cells[col].notna().all(), col
    record = json.loads(summary.record_path.read_text())
    assert record["status"] == "finished"
    assert record["versions"]["dask"] and record["params"]["clips"]["n_before"] == 10
    assert set(record["inputs"]) == {f"{r.cohort}/{r.animal}/{r.session}" for r in sessions.itertuples()}
    # clips in the lake, readable with xarray, 21 frames per clip
    import xarray as xr

    clips = xr.open_zarr(tiny_lake / sessions["clips_path"].iloc[0])
    assert clips["clips"].sizes["clip_frame"] == 21
    assert clips.sizes["unit_id"] == sessions["n_units"].iloc[0]
    pd.testing.assert_frame_equal(_cells(tiny_lake), reference_cells)
    # second run: nothing to do
    again = _local_run(tiny_lake)
    assert again.count("skipped") == 4 and again.count("processed") == 0


def test_external_scheduler_and_two_worker_processes_give_same_table(tiny_lake, reference_cells, tmp_path):
    from distributed import Client

    with loopback_cluster(tmp_path, [[], []]) as sched_file:
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            assert len(client.scheduler_info()["workers"]) == 2
            summary = run_pipeline(tiny_lake, client=client)
    assert summary.count("processed") == 4
    pd.testing.assert_frame_equal(_cells(tiny_lake), reference_cells)


def test_killed_run_resumes_without_duplicates(tiny_lake, reference_cells):
    sessions_dir = tiny_lake / "tables" / "sessions"
    proc = subprocess.Popen(
        [str(BIN / "cellsift"), *run_args(tiny_lake)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and proc.poll() is None:
            done = len(list(sessions_dir.rglob("*.parquet"))) if sessions_dir.exists() else 0
            if done >= 1:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert 1 <= done < 4, f"kill landed after {done} of 4 sessions"
    assert (tiny_lake / "run.lock").exists(), "the killed run leaves its lock behind"
    summary = _local_run(tiny_lake)
    assert summary.count("processed") + summary.count("skipped") == 4
    assert summary.count("skipped") >= 1
    cells = _cells(tiny_lake)
    assert not cells.duplicated(["cohort", "animal", "session", "unit_id"]).any()
    pd.testing.assert_frame_equal(cells, reference_cells)
    assert not (tiny_lake / "run.lock").exists()
    assert not list((tiny_lake / "tmp").glob("clips-*")), "staging of the killed run is cleaned"


def test_params_change_reprocesses(tiny_lake):
    from cellsift.pipeline.stages.overlap import OverlapParams

    _local_run(tiny_lake)
    summary = _local_run(tiny_lake, params=PipelineParams(overlap=OverlapParams(flag_above=0.9)))
    assert summary.count("processed") == 4
    sessions = cellsift.open_lake(tiny_lake).sessions
    assert sessions["params_hash"].nunique() == 1
    assert set(sessions["params_hash"]) == {
        PipelineParams(overlap=OverlapParams(flag_above=0.9)).params_hash()
    }


def test_session_without_raw_trace_leaves_noise_features_missing(tmp_path):
    from cellsift.pipeline.ingest import ingest_cohort
    from cellsift.pipeline.sim.cohort import simulate_cohort
    from cellsift.pipeline.stages import RAW_TRACE_FEATURES
    from tests.conftest import tiny_config

    raw = tmp_path / "raw"
    simulate_cohort(
        raw,
        tiny_config(n_animals=1, stages=("conditioning",), write_c_raw=False, cohort="noraw"),
        n_workers=1,
    )
    lake = tmp_path / "lake"
    [res] = ingest_cohort(raw, lake)
    assert res.status == "ingested", res.error
    assert _local_run(lake).count("processed") == 1
    cells = _cells(lake)
    assert len(cells) > 0
    for name in RAW_TRACE_FEATURES:
        assert cells[name].isna().all(), name
    for name in ("compactness", "transient_rate_per_min", "skewness", "neighbour_trace_corr"):
        assert cells[name].notna().all(), name
