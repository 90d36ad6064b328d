"""Fixtures of the export tests: the tiny lake, processed and analysed once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def analysed_lake(_tiny_lake_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny lake after ``cellsift run`` and ``cellsift analyze`` (no classifier); read only."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline import build_analysis_tables, run_pipeline

    lake = tmp_path_factory.mktemp("export_lake") / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        summary = run_pipeline(lake, client=client)
    assert summary.count("processed") == 4, summary
    analysis = build_analysis_tables(lake)
    assert analysis.n_failed == 0, analysis
    return lake


@pytest.fixture()
def lake_copy(analysed_lake: Path, tmp_path: Path) -> Path:
    """A private copy of the analysed lake (for tests that change it)."""
    lake = tmp_path / "lake"
    shutil.copytree(analysed_lake, lake)
    return lake
