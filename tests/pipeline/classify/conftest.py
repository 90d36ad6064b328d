"""Fixtures of the classification tests: synthetic cells, a trained ensemble, a processed tiny lake."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.ensemble import EnsembleClassifier, EnsembleConfig
from cellsift.pipeline.classify.feature_model import FeatureModelConfig
from tests.pipeline.classify.synthetic import TINY_CLIPS, synthetic_cells


@pytest.fixture(scope="session")
def train_test() -> tuple[CellData, CellData]:
    return synthetic_cells(120, seed=1), synthetic_cells(60, seed=2, cohort="syn2")


@pytest.fixture(scope="session")
def ensemble(train_test) -> EnsembleClassifier:
    train, _ = train_test
    cfg = EnsembleConfig(features=FeatureModelConfig(max_iter=40), clips=TINY_CLIPS, n_folds=2)
    return EnsembleClassifier(cfg).fit(train)


@pytest.fixture(scope="session")
def processed_lake(_tiny_lake_master, tmp_path_factory) -> Path:
    """The tiny simulated cohort, ingested and processed (cells, sessions, clip stores)."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline.stages import run_pipeline

    lake = tmp_path_factory.mktemp("classifier_lake") / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            summary = run_pipeline(lake, client=client)
    assert summary.n_failed == 0, summary
    return lake


@pytest.fixture(scope="session")
def lake_model(processed_lake, tmp_path_factory) -> Path:
    """A tiny clip model trained on the tiny lake, saved as a model folder."""
    from dataclasses import replace

    from cellsift.pipeline.classify.clip_model import ClipClassifier
    from cellsift.pipeline.classify.lake_data import load_cell_data

    data = load_cell_data(processed_lake, model_crop=TINY_CLIPS.model_crop, pool=TINY_CLIPS.pool)
    model = ClipClassifier(replace(TINY_CLIPS, epochs=3, min_epochs=1)).fit(data)
    return model.save(tmp_path_factory.mktemp("models") / "tiny-clips")


def one_session(lake: Path):
    """``(cells, clip store, fps)`` of the lake's first session (by animal, session)."""
    import cellsift

    lk = cellsift.open_lake(lake)
    row = lk.sessions.sort_values(["animal", "session"]).iloc[0]
    cells = lk.cells
    cells = cells[(cells["animal"] == row["animal"]) & (cells["session"] == row["session"])]
    return cells, lake / row["clips_path"], float(row["fps"])
