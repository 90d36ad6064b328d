"""``--cluster slurm``: ingest, run and analyze on a real single-node SLURM give the LocalCluster's tables.

The fixture starts Debian's munged, slurmctld and slurmd on loopback (see
:mod:`tests.cli.slurm_cluster`); each command submits a batch job through dask-jobqueue
that runs ``dask worker`` from this virtual environment and connects back to the
scheduler inside the ``cellsift`` process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.lake_tables import assert_same_tables
from tests.cli.slurm_cluster import single_node_slurm, slurm_unavailable
from tests.commands import BIN

_WHY_NOT = slurm_unavailable()
pytestmark = pytest.mark.skipif(bool(_WHY_NOT), reason=_WHY_NOT)


@pytest.fixture
def slurm(tmp_path):
    with single_node_slurm(tmp_path / "slurm") as env:
        yield env


def _cellsift(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [str(BIN / "cellsift"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"cellsift {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_ingest_run_analyze_on_slurm_give_the_local_tables(tiny_cohort, slurm, tmp_path):
    local, batch = tmp_path / "local" / "lake", tmp_path / "batch" / "lake"
    logs = tmp_path / "job-logs"
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "cluster: slurm\n"
        "walltime: '00:15:00'\n"
        "interface: lo\n"  # the node is this machine: workers reach the scheduler on loopback
        f"log_directory: {logs}\n"
        f"local_directory: {tmp_path / 'worker-scratch'}\n"
    )
    on_slurm = ["--jobs", "1", "--cores", "2", "--memory", "2GiB", "--cluster-config", str(config)]
    steps = (
        ["ingest", str(tiny_cohort)],
        ["run", "--no-progress"],
        ["analyze"],
    )
    for step in steps:
        command, *rest = step
        _cellsift(
            [command, *rest, "--lake", str(local), "--workers", "1", "--dashboard-port", "0"], slurm, tmp_path
        )
        out = _cellsift(
            [command, *rest, "--lake", str(batch), "--dashboard-port", "0", *on_slurm], slurm, tmp_path
        )
        assert "slurm: 1 job(s) of 2 core(s), 2GiB, 00:15:00" in out, out

    # the work ran in SLURM jobs: one job per command, each job's log shows its dask workers
    job_logs = sorted(logs.glob("*.err"))
    assert len(job_logs) == 3, job_logs
    for log in job_logs:
        text = log.read_text()
        assert "Start worker" in text and "Registered to" in text, text[-2000:]
    tables = assert_same_tables(batch, local)
    assert {"cells", "sessions", "traces", "cell_summary", "catalog"} <= set(tables)
    assert len(tables["catalog"]) == 4 and (tables["catalog"]["status"] == "ingested").all()
    assert len(tables["cells"]) > 0 and tables["cells"]["p_good"].notna().all()  # classified on SLURM too
    assert not any((batch / "tmp").iterdir())
