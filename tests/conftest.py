"""Shared fixtures: a tiny simulated cohort, ingested once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def tiny_config(**overrides):
    from cellsift.pipeline.sim.cohort import SimulationConfig

    values = dict(
        n_animals=2,
        stages=("conditioning", "extinction"),
        n_frames=400,
        height=64,
        width=64,
        seed=7,
        cohort="tiny",
    )
    values.update(overrides)
    return SimulationConfig(**values)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A simulated cohort of 2 animals x 2 sessions (400 frames, 64x64); returns its folder."""
    from cellsift.pipeline.sim.cohort import simulate_cohort

    out = tmp_path_factory.mktemp("tiny_cohort")
    simulate_cohort(out, tiny_config())
    return out


@pytest.fixture(scope="session")
def _tiny_lake_master(tiny_cohort, tmp_path_factory) -> Path:
    from cellsift.pipeline.ingest import ingest_cohort

    lake = tmp_path_factory.mktemp("tiny_lake") / "lake"
    results = ingest_cohort(tiny_cohort, lake)
    bad = [r for r in results if r.status != "ingested"]
    if bad:
        raise RuntimeError(f"tiny cohort failed to ingest: {bad}")
    return lake


@pytest.fixture
def tiny_lake(_tiny_lake_master, tmp_path) -> Path:
    """A private copy of the ingested tiny cohort's lake."""
    lake = tmp_path / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    return lake
