"""Cluster options shared by ingest, run and analyze: the YAML config, batch systems, the dashboard's address."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

import psutil
import pytest
from typer.testing import CliRunner

from cellsift.cli import app
from cellsift.cli._common import dask_client
from cellsift.cli.cluster import ClusterKind, ClusterSpec, cluster_spec
from cellsift.schemas import ParameterError

runner = CliRunner()


def _listening_on(port: int) -> set[str]:
    """The addresses this process listens on at ``port``."""
    me = psutil.Process(os.getpid())
    return {
        c.laddr.ip for c in me.net_connections(kind="tcp") if c.status == "LISTEN" and c.laddr.port == port
    }


@pytest.mark.parametrize(("host", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_dashboard_listens_on_loopback_unless_opened(host, expected):
    extra = {} if host is None else {"dashboard_host": host}
    with dask_client(scheduler=None, workers=1, memory_limit="1GiB", dashboard_port=0, **extra) as client:
        port = urlparse(client.dashboard_link).port
        assert port and _listening_on(port) == {expected}
        assert client.submit(sum, [1, 2]).result() == 3


def test_adaptive_local_cluster_computes():
    with dask_client(
        scheduler=None, workers=2, memory_limit="1GiB", dashboard_port=0, cluster=ClusterSpec(adapt=True)
    ) as client:
        assert client.map(abs, [-1, -2, -3]) and client.gather(client.map(abs, [-1, -2])) == [1, 2]


def test_command_line_wins_over_the_config_file(tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "cluster: slurm\njobs: 8\ncores: 4\nmemory: 16GiB\nwalltime: '04:00:00'\nadapt: true\n"
        "minimum-jobs: 1\nqueue: normal\njob_extra_directives: ['--qos=long']\n"
    )
    spec = cluster_spec(config=config, jobs=2, memory="8GiB")
    assert spec == ClusterSpec(
        kind="slurm",
        jobs=2,
        cores=4,
        memory="8GiB",
        walltime="04:00:00",
        adapt=True,
        minimum_jobs=1,
        extra={"queue": "normal", "job_extra_directives": ["--qos=long"]},
        source=str(config),
    )
    assert cluster_spec(config=config, cluster=ClusterKind.local).kind == "local"
    assert cluster_spec(config=config, adapt=False).adapt is False


def test_no_config_file_means_a_local_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr("cellsift.cli.cluster.DEFAULT_CLUSTER_CONFIG", tmp_path / "absent.yaml")
    spec = cluster_spec()
    assert spec.kind == "local" and not spec.is_batch and spec.source == ""
    assert cluster_spec(cluster="pbs", jobs=3).is_batch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cluster: kubernetes\n", "unknown cluster 'kubernetes'"),
        ("jobs: many\n", "'jobs' must be a whole number"),
        ("- slurm\n", "not a mapping"),
        ("cluster: [slurm\n", "cannot read the cluster config"),
    ],
)
def test_bad_config_is_one_line(tmp_path, text, message):
    config = tmp_path / "cluster.yaml"
    config.write_text(text)
    with pytest.raises(ParameterError) as info:
        cluster_spec(config=config)
    assert message in info.value.one_line() and "\n" not in info.value.one_line()


def test_cluster_errors_come_before_any_cluster_starts(tiny_cohort, tiny_lake, tmp_path):
    missing = tmp_path / "nope.yaml"
    for command in ("run", "analyze"):
        result = runner.invoke(app, [command, "--lake", str(tiny_lake), "--cluster-config", str(missing)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: ") and "cluster config not found" in result.output
        assert "Dask dashboard" not in result.output


@pytest.mark.skipif(shutil.which("bsub") is not None, reason="an LSF login node: bsub can submit here")
def test_batch_system_without_its_commands_is_one_line(tiny_cohort, tmp_path):
    result = runner.invoke(
        app, ["ingest", str(tiny_cohort), "--lake", str(tmp_path / "lake"), "--cluster", "lsf"]
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "'bsub' is not on PATH" in result.output and "pass --cluster local" in result.output
