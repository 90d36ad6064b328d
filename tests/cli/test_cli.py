"""The typer layer: real commands in subprocesses and via CliRunner; errors are one line, exit 1."""

from __future__ import annotations

import socketserver
import subprocess
import threading

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellsift.cli import app
from cellsift.pipeline.classify import DEFAULT_RECIPE
from tests.commands import BIN, dask_command_args, run_args

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "ingest", "run", "query", "catalog", "demo", "train", "evaluate", "models"):
        assert command in result.output


def test_missing_lake_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run(
        [str(BIN / "cellsift"), "query", "--lake", str(tmp_path / "nolake"), "SELECT 1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "catalog.sqlite is missing" in proc.stderr and "cellsift ingest" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [str(BIN / "cellsift"), "run", "--lake", str(tmp_path / "nolake")], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_bad_manifest_is_one_line(tmp_path):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("cohort,animal\nx,y\n")
    proc = subprocess.run(
        [str(BIN / "cellsift"), "ingest", str(manifest), "--lake", str(tmp_path / "lake")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert str(manifest) in proc.stderr


def test_run_then_query_to_csv_and_parquet(tiny_lake, tmp_path):
    # with progress shown: CliRunner's stdout is no terminal, so plain lines, no progress bar
    result = runner.invoke(app, dask_command_args("run", tiny_lake, workers=2))
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "[####" not in result.output
    assert "4/4 sessions done" in result.output
    assert "Dask dashboard: http://" in result.output
    assert "4 processed" in result.output
    # every cell classified by the shipped model; flagged cells keep their flag
    assert f"classification ({DEFAULT_RECIPE.model_id}):" in result.output
    cells = pd.read_parquet(tiny_lake / "tables" / "cells", partitioning=None)
    assert cells["p_good"].between(0, 1).all() and set(cells["label"]) <= {"good", "bad"}
    assert (cells["model_id"] == DEFAULT_RECIPE.model_id).all()
    assert cells.loc[cells["label"] == "good", "reason"].isna().all()
    assert cells["overlap_flag"].any()
    # a second run finds everything up to date, also the classification
    again = runner.invoke(app, run_args(tiny_lake))
    assert again.exit_code == 0 and "already classified" in again.output, again.output
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
    # DuckDB's own hints stay, on the one error line
    for sql, hint in (
        ("SELECT * FROM cell", 'Did you mean "cells"?'),
        ("SELECT noise FROM cells", 'Candidate bindings: "noise_sd"'),
    ):
        result = runner.invoke(app, ["query", "--lake", str(tiny_lake), sql])
        assert result.exit_code == 1 and hint in result.output, result.output
        assert result.output.strip().count("\n") == 0 and result.output.startswith("error: ")
    result = runner.invoke(app, ["catalog", "--lake", str(tiny_lake)])
    assert result.exit_code == 0 and "ingested" in result.output


def test_local_cluster_dashboard_serves(tmp_path):
    import urllib.request

    from cellsift.cli._common import dask_client

    with dask_client(scheduler=None, workers=1, memory_limit="2GiB", dashboard_port=0) as client:
        link = client.dashboard_link
        assert link.startswith("http://")
        with urllib.request.urlopen(link, timeout=30) as response:
            assert response.status == 200
            page = response.read().decode("utf-8", "replace")
        assert "Dask" in page


def test_analyze_and_report_commands(tiny_lake, tmp_path):
    for args in (run_args(tiny_lake), dask_command_args("analyze", tiny_lake)):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "analysis: 4 processed" in result.output
    result = runner.invoke(
        app, ["query", "--lake", str(tiny_lake), "SELECT count(*) AS n FROM trial_responses"]
    )
    assert result.exit_code == 0 and "(1 rows)" in result.output
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--lake", str(tiny_lake), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and list(out.glob("*.png"))


def test_train_evaluate_and_models_list(tiny_lake, tmp_path):
    result = runner.invoke(app, run_args(tiny_lake, "--no-classify"))
    assert result.exit_code == 0 and "classification" not in result.output, result.output
    result = runner.invoke(
        app,
        [
            "train",
            "--lake",
            str(tiny_lake),
            "--kind",
            "features",
            "--model-id",
            "lab-v1",
            "--source",
            "simulator",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tiny_lake / "models" / "lab-v1" / "card.json").is_file()
    result = runner.invoke(app, ["models", "list", "--lake", str(tiny_lake)])
    assert result.exit_code == 0 and "lab-v1" in result.output and "default" in result.output
    report = tmp_path / "report"
    result = runner.invoke(
        app, ["evaluate", "--lake", str(tiny_lake), "--model", "default", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "balanced accuracy" in result.output and (report / "report.json").is_file()
    result = runner.invoke(app, run_args(tiny_lake, "--model", "lab-v1"))
    assert result.exit_code == 0 and "classification (lab-v1)" in result.output, result.output
    result = runner.invoke(
        app, ["montage", "--lake", str(tiny_lake), "--out", str(tmp_path / "calls.png"), "--n", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "calls.png").stat().st_size > 10_000
    result = runner.invoke(app, run_args(tiny_lake, "--model", "no-such-model"))
    assert result.exit_code == 1 and "no-such-model" in result.output
    result = runner.invoke(app, ["train", "--kind", "features"])
    assert result.exit_code == 1 and "--lake" in result.output


def test_usage_errors_are_one_error_line_like_ours(tmp_path):
    for args, message in (
        (["run", "--lake", str(tmp_path), "--no-such-option"], "error: No such option: --no-such-option"),
        (["report", "--lake", str(tmp_path)], "error: Missing option '--out'"),
        (["classify", "--lake", str(tmp_path)], "error: No such command 'classify'"),
        (["models", "lst"], "error: No such command 'lst'"),
    ):
        proc = subprocess.run([str(BIN / "cellsift"), *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
        assert "Error" not in proc.stderr and "Traceback" not in proc.stderr and "╭" not in proc.stderr
    result = runner.invoke(app, ["run", "--lake", str(tmp_path), "--no-such-option"])
    assert result.exit_code == 2 and "error: No such option" in result.output


def test_analyze_help_lists_every_table():
    result = runner.invoke(app, ["analyze", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for table in ("traces", "events", "trial_responses", "cell_summary", "behaviour", "cell_registry"):
        assert table in text


def test_duckdb_error_keeps_its_hints():
    import duckdb

    from cellsift.catalog.lake import duckdb_error_line

    con = duckdb.connect()
    con.execute("CREATE TABLE cells (noise_sd INT)")
    with pytest.raises(duckdb.Error) as info:
        con.execute("SELECT * FROM cell")
    line = duckdb_error_line(info.value)
    assert line.startswith("Catalog Error: Table with name cell does not exist!")
    assert line.endswith('Did you mean "cells"?') and "\n" not in line and "LINE 1" not in line


class _NotDask(socketserver.BaseRequestHandler):
    """Answers like a web server would, whatever it is sent."""

    def handle(self) -> None:
        self.request.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False


@pytest.mark.parametrize("server", ["http", "replies"])
def test_scheduler_that_is_not_dask_is_one_error_line(tiny_lake, server):
    import http.server

    handler = http.server.SimpleHTTPRequestHandler if server == "http" else _NotDask
    with _Server(("127.0.0.1", 0), handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        address = f"tcp://127.0.0.1:{srv.server_address[1]}"
        try:
            proc = subprocess.run(
                [str(BIN / "cellsift"), "run", "--lake", str(tiny_lake), "--scheduler", address]
                + ["--scheduler-timeout", "3"],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            srv.shutdown()
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert address in lines[0] and "dask scheduler" in lines[0] and "Fix:" in lines[0]
