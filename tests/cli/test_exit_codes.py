"""Exit codes a Makefile or a SLURM job array can trust, and a locked lake refused up front."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from cellsift.cli import app

runner = CliRunner()


def _hold_lock(lake: Path, run_id: str = "other-run") -> Path:
    """Write ``run.lock`` as a live run on this host would (this test process is alive)."""
    path = lake / "run.lock"
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id}))
    return path


def test_ingest_exits_1_when_one_session_failed(tiny_cohort, tmp_path):
    source = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, source)
    bad = source / "m02" / "d2_extinction" / "cnmfe_results.mat"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated, as an interrupted copy leaves it
    lake = tmp_path / "lake"

    result = runner.invoke(app, ["ingest", str(source), "--lake", str(lake)])
    assert result.exit_code == 1, result.output
    assert "ingest done: 3 ingested, 0 unchanged, 1 failed" in result.output  # the rest finished first
    assert "FAILED    tiny/m02/d2_extinction" in result.output

    again = runner.invoke(app, ["ingest", str(source), "--lake", str(lake), "--allow-failures"])
    assert again.exit_code == 0, again.output
    assert "0 ingested, 3 unchanged, 1 failed" in again.output


def test_locked_lake_is_refused_before_a_cluster_starts(tiny_lake):
    _hold_lock(tiny_lake)
    for command in (["run"], ["analyze"]):
        started = time.perf_counter()
        result = runner.invoke(
            app, [*command, "--lake", str(tiny_lake), "--workers", "1", "--dashboard-port", "0"]
        )
        assert result.exit_code == 1, result.output
        assert "another run (other-run" in result.output and "--wait" in result.output
        assert "Dask dashboard" not in result.output, "a cluster was started before the lock was checked"
        assert time.perf_counter() - started < 10


def test_wait_waits_for_the_other_run(tiny_cohort, tiny_lake):
    lock = _hold_lock(tiny_lake)
    releaser = threading.Timer(1.5, lock.unlink)
    releaser.start()
    try:
        started = time.perf_counter()
        result = runner.invoke(app, ["ingest", str(tiny_cohort), "--lake", str(tiny_lake), "--wait"])
    finally:
        releaser.cancel()
    assert result.exit_code == 0, result.output
    assert "waiting for run other-run" in result.output
    assert "4 unchanged, 0 failed" in result.output
    assert time.perf_counter() - started >= 1.4
    assert not lock.exists()


def test_a_stale_lock_of_a_dead_process_is_not_a_holder(tiny_lake):
    from cellsift.catalog import lock_holder

    (tiny_lake / "run.lock").write_text(
        json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "run_id": "dead"})
    )
    assert lock_holder(tiny_lake) is None
    (tiny_lake / "run.lock").write_text(json.dumps({"pid": 1, "host": "another-machine", "run_id": "remote"}))
    assert lock_holder(tiny_lake) == {"pid": 1, "host": "another-machine", "run_id": "remote"}
