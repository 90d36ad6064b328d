"""The typer layer: real commands in subprocesses and via CliRunner; errors are one line, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cellsift.cli import app

BIN = Path(sys.executable).parent
runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "ingest", "run", "query", "catalog", "demo"):
        assert command in result.output


def test_missing_lake_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run([str(BIN / "cellsift"), "query", "--lake", str(tmp_path / "nolake"), "SELECT 1"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "catalog.sqlite is missing" in proc.stderr and "cellsift ingest" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([str(BIN / "cellsift"), "run", "--lake", str(tmp_path / "nolake")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_bad_manifest_is_one_line(tmp_path):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("cohort,animal\nx,y\n")
    proc = subprocess.run([str(BIN / "cellsift"), "ingest", str(manifest), "--lake", str(tmp_path / "lake")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert str(manifest) in proc.stderr


def test_run_then_query_to_csv_and_parquet(tiny_lake, tmp_path):
    result = runner.invoke(app, ["run", "--lake", str(tiny_lake), "--workers", "2", "--dashboard-port", "0",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Dask dashboard: http://" in result.output
    assert "4 processed" in result.output
    sql = "SELECT animal, count(*) AS n FROM cells GROUP BY animal ORDER BY animal"
    result = runner.invoke(app, ["query", "--lake", str(tiny_lake), sql])
    assert result.exit_code == 0, result.output
    assert "animal" in result.output and "(2 rows)" in result.output
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"result{suffix}"
        result = runner.invoke(app, ["query", "--lake", str(tiny_lake), sql, "--output", str(out)])
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert list(frame.columns) == ["animal", "n"] and len(frame) == 2 and (frame["n"] > 0).all()
    result = runner.invoke(app, ["query", "--lake", str(tiny_lake), "SELECT nope FROM cells"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["catalog", "--lake", str(tiny_lake)])
    assert result.exit_code == 0 and "ingested" in result.output


def test_local_cluster_dashboard_serves(tmp_path):
    import urllib.request

    from cellsift.cli.app import _start_client

    client, cluster = _start_client(None, 1, 1, "2GiB", 0)
    try:
        link = client.dashboard_link
        assert link.startswith("http://")
        with urllib.request.urlopen(link, timeout=30) as response:
            assert response.status == 200
            page = response.read().decode("utf-8", "replace")
        assert "Dask" in page
    finally:
        client.close()
        cluster.close()


def test_analyze_and_report_commands(tiny_lake, tmp_path):
    for args in (["run"], ["analyze"]):
        result = runner.invoke(app, [*args, "--lake", str(tiny_lake), "--workers", "1", "--dashboard-port", "0"]
                               + (["--no-progress"] if args == ["run"] else []))
        assert result.exit_code == 0, result.output
    assert "analysis: 4 processed" in result.output
    result = runner.invoke(app, ["query", "--lake", str(tiny_lake),
                                 "SELECT count(*) AS n FROM trial_responses"])
    assert result.exit_code == 0 and "(1 rows)" in result.output
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--lake", str(tiny_lake), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and list(out.glob("*.png"))
