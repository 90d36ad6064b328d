"""A worker SIGKILLed in the middle of ``cellsift run`` changes nothing: same tables, no duplicates, no staging.

(The same for ingest: ``tests/pipeline/ingest/test_cohort_dask.py``.)
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest

from cellsift.pipeline.stages import run_pipeline
from tests.cli.lake_tables import assert_same_tables

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _kill_a_worker_at(client, prefix: str, killed: list[str], stop: threading.Event) -> None:
    """SIGKILL the process of the first worker seen running a task whose key starts with ``prefix``."""
    while not stop.is_set():
        busy = [w for w, keys in client.processing().items() if any(str(k).startswith(prefix) for k in keys)]
        if busy:
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])
            return
        time.sleep(0.005)


def test_worker_killed_mid_run_changes_nothing(tiny_lake, tmp_path):
    from distributed import Client, LocalCluster

    reference = tmp_path / "reference"
    shutil.copytree(tiny_lake, reference)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        summary = run_pipeline(reference, client=client)
        assert summary.n_failed == 0, [o.error for o in summary.outcomes]

        killed: list[str] = []
        stop = threading.Event()
        killer = threading.Thread(
            target=_kill_a_worker_at, args=(client, "clips-", killed, stop), daemon=True
        )
        killer.start()
        try:
            summary = run_pipeline(tiny_lake, client=client)
        finally:
            stop.set()
            killer.join(timeout=30)
    assert len(killed) == 1, "no worker was killed while it wrote clips"
    assert summary.n_failed == 0 and summary.count("processed") == 4, [o.error for o in summary.outcomes]
    tables = assert_same_tables(tiny_lake, reference)
    assert len(tables["cells"]) > 0 and len(tables["sessions"]) == 4
    assert not any((tiny_lake / "tmp").iterdir()), list((tiny_lake / "tmp").iterdir())  # no staging left
    clip_stores = sorted((tiny_lake / "clips").rglob("*.zarr"))
    assert len(clip_stores) == 4, clip_stores  # one per session, no half-written copy beside it
