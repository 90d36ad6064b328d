"""Applying models to sessions: card checks, per-worker model cache, GPU resources, lake write-back."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import cellsift
from cellsift.pipeline.classify.apply import (
    OUTPUT_COLUMNS,
    classify_lake,
    classify_session,
    clear_model_cache,
    get_worker_model,
    gpu_resources,
    model_load_count,
)
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.store import load_model
from cellsift.pipeline.classify.training import load_cell_data
from cellsift.schemas.errors import ModelMismatchError

from tests.pipeline.loopback_cluster import loopback_cluster
from tests.pipeline.classify.test_models import TINY_CLIPS
from tests.pipeline.classify.test_training import processed_lake  # noqa: F401  (session fixture)


def _session(lake: Path) -> tuple[pd.DataFrame, Path, float]:
    lk = cellsift.open_lake(lake)
    row = lk.sessions.sort_values(["animal", "session"]).iloc[0]
    cells = lk.cells
    cells = cells[(cells["animal"] == row["animal"]) & (cells["session"] == row["session"])]
    return cells, lake / row["clips_path"], float(row["fps"])


@pytest.fixture(scope="module")
def lake_model(processed_lake, tmp_path_factory) -> Path:  # noqa: F811
    """A tiny clip model trained on the tiny lake, saved as a model folder."""
    data = load_cell_data(processed_lake, model_crop=TINY_CLIPS.model_crop, pool=TINY_CLIPS.pool)
    model = ClipClassifier(replace(TINY_CLIPS, epochs=3, min_epochs=1)).fit(data)
    return model.save(tmp_path_factory.mktemp("models") / "tiny-clips")


def test_classify_session_outputs_every_cell(processed_lake, lake_model):  # noqa: F811
    cells, clips, fps = _session(processed_lake)
    out = classify_session(cells, clips, str(lake_model), fps=fps, batch_units=7)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == len(cells) and out["unit_id"].tolist() == cells["unit_id"].tolist()
    assert out["p_good"].between(0, 1).all() and set(out["label"]) <= {"good", "bad"}
    assert out["model_id"].nunique() == 1 and out["ood_score"].notna().all()
    good = out["label"] == "good"
    assert out.loc[good, "reason"].isna().all()
    # overlap-flagged cells are outside the training data by construction: scored, not OOD-flagged
    flagged = cells["overlap_flag"].to_numpy(dtype=bool)
    assert not out.loc[flagged, "ood_flag"].any() and out.loc[flagged, "ood_score"].notna().all()
    # batching does not change the result (session-relative features use the whole session)
    whole = classify_session(cells, clips, str(lake_model), fps=fps)
    np.testing.assert_allclose(whole["p_good"], out["p_good"], atol=1e-6)


def test_default_model_scores_a_session(processed_lake):  # noqa: F811
    cells, clips, fps = _session(processed_lake)
    out = classify_session(cells, clips, "default", fps=fps)
    assert len(out) == len(cells) and out["model_id"].iloc[0] == "cellsift-default-v1"
    assert out["p_good"].between(0, 1).all()


def test_card_mismatch_refuses_with_a_clear_message(processed_lake, lake_model):  # noqa: F811
    cells, clips, fps = _session(processed_lake)
    model = load_model(lake_model)
    model.card = replace(model.card, clip_frames=31)
    with pytest.raises(ModelMismatchError) as exc:
        classify_session(cells, clips, model, fps=fps)
    assert "clip_frames" in str(exc.value) and str(clips) in str(exc.value)
    other = replace(model.card, clip_frames=21)
    model.card = replace(other, pipeline_version="9.0.0")
    with pytest.raises(ModelMismatchError, match="pipeline"):
        classify_session(cells, clips, model, fps=fps)
    out = classify_session(cells, clips, model, fps=fps, strict=False)  # warn and score anyway
    assert len(out) == len(cells)


def test_other_frame_rates_are_resampled_to_the_model_rate(processed_lake, lake_model, caplog):  # noqa: F811
    cells, clips, fps = _session(processed_lake)
    same = classify_session(cells, clips, load_model(lake_model), fps=fps)
    with caplog.at_level("WARNING"):
        faster = classify_session(cells, clips, load_model(lake_model), fps=fps * 2)
    assert f"resampled from {fps * 2:.3g} Hz to the {fps:.3g} Hz" in caplog.text
    assert len(faster) == len(cells) and not np.allclose(faster["p_good"], same["p_good"])


def test_model_is_loaded_once_per_process(lake_model):
    clear_model_cache()
    before = model_load_count()
    first = get_worker_model(str(lake_model))
    for _ in range(5):
        assert get_worker_model(str(lake_model)) is first
    assert model_load_count() == before + 1


def test_gpu_resources_follow_the_workers():
    def client(resources):
        workers = {f"w{i}": {"resources": r} for i, r in enumerate(resources)}
        return SimpleNamespace(scheduler_info=lambda n_workers=-1: {"workers": workers})

    assert gpu_resources(client([{}, {}])) == {}
    assert gpu_resources(client([{"GPU": 1}, {}])) == {"GPU": 1}
    assert gpu_resources(client([{"GPU": 0}])) == {}


def test_classify_lake_on_dask_fills_the_cells_table(processed_lake, lake_model, tmp_path):  # noqa: F811
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
    import json

    record = json.loads(Path(preds.attrs["record_path"]).read_text())
    assert record["kind"] == "classify" and record["model"]["model_id"] == after["model_id"].iloc[0]
    assert len(record["model"]["card_hash"]) == 16 and record["versions"]["torch"]
    assert sum(r["n_cells"] for r in record["sessions"]) == len(after) and record["failed"] == []


def test_inference_runs_on_the_gpu_worker_of_a_real_cluster(processed_lake, lake_model, tmp_path):  # noqa: F811
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


def test_one_unreadable_session_does_not_stop_the_others(processed_lake, lake_model, tmp_path):  # noqa: F811
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
    # skipping what is done: a second call scores nothing new
    again = classify_lake(lake, str(lake_model), only_stale=True)
    assert again.attrs["skipped"] == len(sessions) - 1 and len(again.attrs["failed"]) == 1
