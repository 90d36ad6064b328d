"""Classifying a lake: one model load per worker, GPU placement, lake write-back, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

import cellsift
from cellsift.pipeline.classify import apply
from cellsift.pipeline.classify.apply import (
    classify_lake,
    clear_model_cache,
    gpu_resources,
    model_load_count,
)
from tests.pipeline.loopback_cluster import loopback_cluster


def test_model_is_loaded_once_per_process(processed_lake, lake_model):
    clear_model_cache()
    before = model_load_count()
    n_sessions = cellsift.open_lake(processed_lake).sessions.shape[0]
    assert n_sessions > 1
    first = classify_lake(processed_lake, str(lake_model), write=False)
    assert first.groupby(["cohort", "animal", "session"]).ngroups == n_sessions
    assert model_load_count() == before + 1  # every session scored by one loaded model
    for _ in range(2):
        again = classify_lake(processed_lake, str(lake_model), write=False)
        pd.testing.assert_frame_equal(again, first)
    assert model_load_count() == before + 1
    clear_model_cache()
    classify_lake(processed_lake, str(lake_model), write=False)
    assert model_load_count() == before + 2


def test_gpu_resources_follow_the_workers():
    def client(resources):
        workers = {f"w{i}": {"resources": r} for i, r in enumerate(resources)}
        return SimpleNamespace(scheduler_info=lambda n_workers=-1: {"workers": workers})

    assert gpu_resources(client([{}, {}])) == {}
    assert gpu_resources(client([{"GPU": 1}, {}])) == {"GPU": 1}
    assert gpu_resources(client([{"GPU": 0}])) == {}


def test_classify_lake_on_dask_fills_the_cells_table(processed_lake, lake_model, tmp_path):
    from distributed import Client, LocalCluster

    lake = tmp_path / "lake"
    shutil.copytree(processed_lake, lake)
    before = cellsift.open_lake(lake).cells
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            preds = classify_lake(lake, str(lake_model), client=client)
    after = cellsift.open_lake(lake).cells
    assert len(preds) == len(before) == len(after)
    assert after["p_good"].notna().all() and set(after["label"]) <= {"good", "bad"}
    assert after["model_id"].nunique() == 1 and after["ood_flag"].notna().all()
    key = ["cohort", "animal", "session", "unit_id"]
    a = after.sort_values(key).reset_index(drop=True)
    b = before.sort_values(key).reset_index(drop=True)
    pd.testing.assert_series_equal(a["overlap_flag"], b["overlap_flag"])  # flags kept
    pd.testing.assert_series_equal(a["spatial_corr"], b["spatial_corr"])
    assert not (lake / "run.lock").exists()
    record = json.loads(Path(preds.attrs["record_path"]).read_text())
    assert record["kind"] == "classify" and record["model"]["model_id"] == after["model_id"].iloc[0]
    assert len(record["model"]["card_hash"]) == 16 and record["versions"]["torch"]
    assert sum(r["n_cells"] for r in record["sessions"]) == len(after) and record["failed"] == []


def test_inference_runs_on_the_gpu_worker_of_a_real_cluster(processed_lake, lake_model, tmp_path):
    """A scheduler and two worker processes on loopback, one advertising GPU=1: every
    classification task is placed on that worker (on a CPU-only machine the 'GPU' worker
    runs them on its CPU: the annotation is about placement)."""
    from distributed import Client, get_task_stream

    lake = tmp_path / "lake"
    shutil.copytree(processed_lake, lake)
    with loopback_cluster(tmp_path, [["--resources", "GPU=1"], []]) as sched_file:
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"]
            gpu_worker = [a for a, w in workers.items() if (w.get("resources") or {}).get("GPU")]
            assert len(gpu_worker) == 1 and gpu_resources(client) == {"GPU": 1}
            with get_task_stream(client) as stream:
                preds = classify_lake(lake, str(lake_model), client=client)
    placed = {t["worker"] for t in stream.data if str(t["key"]).startswith("classify-")}
    assert placed == set(gpu_worker)
    n_sessions = cellsift.open_lake(lake).sessions.shape[0]
    assert preds.groupby(["cohort", "animal", "session"]).ngroups == n_sessions


def test_one_unreadable_session_does_not_stop_the_others(processed_lake, lake_model, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(processed_lake, lake)
    sessions = cellsift.open_lake(lake).sessions.sort_values(["animal", "session"])
    broken = sessions.iloc[0]
    shutil.rmtree(lake / broken["clips_path"])
    preds = classify_lake(lake, str(lake_model))
    (failed,) = preds.attrs["failed"]
    assert failed[:3] == (broken["cohort"], broken["animal"], broken["session"])
    assert "clip store" in failed[3] and "cellsift run" in failed[3]
    assert preds.groupby(["cohort", "animal", "session"]).ngroups == len(sessions) - 1
    cells = cellsift.open_lake(lake).cells
    scored = cells["session"].ne(broken["session"]) | cells["animal"].ne(broken["animal"])
    assert cells.loc[scored, "p_good"].notna().all() and cells.loc[~scored, "p_good"].isna().all()
    record = json.loads(Path(preds.attrs["record_path"]).read_text())
    (entry,) = record["failed"]
    assert entry["error"] == failed[3] and entry["error_type"] == "LakeError"
    # skipping what is done: a second call scores nothing new
    again = classify_lake(lake, str(lake_model), only_stale=True)
    assert again.attrs["skipped"] == len(sessions) - 1 and len(again.attrs["failed"]) == 1


def test_an_unexpected_error_fails_its_session_with_a_traceback(processed_lake, lake_model, monkeypatch):
    sessions = cellsift.open_lake(processed_lake).sessions.sort_values(["cohort", "animal", "session"])
    victim = str(sessions.iloc[-1]["session"]), str(sessions.iloc[-1]["animal"])
    real = apply.classify_session

    def flaky(cells, *args, **kwargs):
        if (str(cells["session"].iloc[0]), str(cells["animal"].iloc[0])) == victim:
            raise RuntimeError("boom")
        return real(cells, *args, **kwargs)

    monkeypatch.setattr(apply, "classify_session", flaky)
    lake = Path(processed_lake)
    preds = classify_lake(lake, str(lake_model), write=False)
    (failed,) = preds.attrs["failed"]
    assert (failed[2], failed[1]) == victim
    assert "classify failed unexpectedly: RuntimeError: boom" in failed[3]
    assert preds.groupby(["cohort", "animal", "session"]).ngroups == len(sessions) - 1
