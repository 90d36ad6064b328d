"""A processed tiny lake for the review tests (built once per test session, then copied)."""

from __future__ import annotations

import shutil
from pathlib import Path

_BUILT: dict[str, Path] = {}


def processed_tiny_lake(master: Path, scratch: Path) -> Path:
    """The tiny simulated cohort (``tests/conftest.py``), ingested and run (cells, clips), built once.

    Parameters
    ----------
    master
        The ingested tiny lake (fixture ``_tiny_lake_master``).
    scratch
        A folder for the processed master copy (used on the first call only).
    """
    if "lake" not in _BUILT:
        from distributed import Client, LocalCluster

        from cellsift.pipeline.stages import run_pipeline

        lake = scratch / "processed"
        shutil.copytree(master, lake)
        with LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster:
            with Client(cluster) as client:
                summary = run_pipeline(lake, client=client)
        if summary.n_failed:
            raise RuntimeError(f"the tiny lake did not process: {summary}")
        _BUILT["lake"] = lake
    return _BUILT["lake"]


def copy_lake(source: Path, dest: Path) -> Path:
    """A private copy of ``source`` at ``dest``."""
    shutil.copytree(source, dest)
    return dest
