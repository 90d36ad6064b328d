"""The Dask options declared once (``cluster_options``) and the client of a lake (``lake_client``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cellsift.cli.client import DEFAULT_CLUSTER_OPTIONS, ClusterOptions, cluster_options, lake_client
from cellsift.cli.cluster import ClusterKind
from cellsift.schemas import CellsiftError

runner = CliRunner()


def _command(seen: list[tuple[str, ClusterOptions, bool]]):
    @cluster_options(workers_help="Workers, one per thing.", local=("memory_limit",))
    def command(
        name: str,
        dask: ClusterOptions = DEFAULT_CLUSTER_OPTIONS,
        flag: bool = False,
    ) -> None:
        """A command with the Dask options."""
        seen.append((name, dask, flag))

    return command


def test_options_take_the_place_of_the_parameter_in_python_and_on_the_command_line(tmp_path):
    seen: list[tuple[str, ClusterOptions, bool]] = []
    command = _command(seen)
    command("a", workers=3, dashboard_port=0, flag=True)
    assert seen[-1] == ("a", ClusterOptions(workers=3, dashboard_port=0), True)

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: typer then wants the command's name
    config = tmp_path / "c.yaml"
    args = ["command", "b", "--cluster", "slurm", "--jobs", "2", "--memory-limit", "2GiB"]
    result = runner.invoke(app, [*args, "--cluster-config", str(config), "--no-adapt", "--flag"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == (
        "b",
        ClusterOptions(
            cluster=ClusterKind.slurm, jobs=2, memory_limit="2GiB", cluster_config=config, adapt=False
        ),
        True,
    )

    help_text = runner.invoke(app, ["command", "--help"], env={"COLUMNS": "300"}).output
    listed = re.findall(r"^│[ *]+(--[a-z-]+)", help_text, flags=re.MULTILINE)
    assert listed == [
        *("--scheduler", "--scheduler-timeout", "--workers", "--memory-limit", "--cluster", "--jobs"),
        *("--cores", "--memory", "--walltime", "--adapt", "--cluster-config", "--dashboard-host"),
        *("--dashboard-port", "--flag", "--help"),
    ], help_text
    assert "Workers, one per thing." in help_text and "--threads-per-worker" not in help_text


def test_a_command_needs_one_options_parameter():
    def no_slot(name: str) -> None:
        """No options parameter."""

    with pytest.raises(TypeError, match="exactly one parameter annotated ClusterOptions"):
        cluster_options(workers_help="w")(no_slot)
    with pytest.raises(TypeError, match="unknown local-cluster options"):
        cluster_options(workers_help="w", local=("threads",))


def test_options_resolve_over_the_cluster_config(tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text("cluster: pbs\njobs: 4\ncores: 8\n")
    spec = ClusterOptions(cluster_config=config, cores=2).spec()
    assert (spec.kind, spec.jobs, spec.cores, spec.source) == ("pbs", 4, 2, str(config))


def test_lake_client_checks_the_lake_before_starting_a_cluster(tmp_path):
    options = ClusterOptions(workers=1, memory_limit="1GiB", dashboard_port=0)
    with pytest.raises(CellsiftError) as info, lake_client(tmp_path / "no-lake", options, wait=False):
        pytest.fail("a cluster started for a folder that is not a lake")
    assert "no-lake" in info.value.one_line()
    bad = ClusterOptions(cluster_config=tmp_path / "absent.yaml")
    with (
        pytest.raises(CellsiftError, match="cluster config not found"),
        lake_client(tmp_path, bad, wait=False),
    ):
        pytest.fail("a cluster started with a missing cluster config")


def test_lake_client_for_a_new_lake_computes(tmp_path: Path):
    lake = tmp_path / "new-lake"
    options = ClusterOptions(workers=1, memory_limit="1GiB", dashboard_port=0)
    with lake_client(lake, options, wait=False, new=True) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        assert len(client.scheduler_info()["workers"]) == 1
    assert not lake.exists()  # the client creates nothing; ingest does
