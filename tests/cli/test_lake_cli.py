"""``cellsift check`` and ``cellsift status`` on real lakes: damaged files, stale rows, the repairs.

One small simulated cohort (1 animal x 2 sessions) is ingested, run and analysed once;
each test works on its own copy.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellsift.cli import app
from tests.commands import dask_command_args, run_args
from tests.conftest import tiny_config

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from cellsift.pipeline.sim.cohort import simulate_cohort

    out = tmp_path_factory.mktemp("lake_cli_cohort")
    simulate_cohort(out, tiny_config(n_animals=1, n_frames=300, seed=11, cohort="lk"))
    return out


@pytest.fixture(scope="module")
def _analysed(cohort, tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("lake_cli") / "lake"
    _ok(dask_command_args("ingest", lake, cohort))
    _ok(run_args(lake, "--no-classify"))
    _ok(dask_command_args("analyze", lake))
    return lake


@pytest.fixture
def lake(_analysed, tmp_path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(_analysed, copy)
    return copy


def _sessions(lake: Path) -> list[str]:
    return sorted(p.name for p in (lake / "tables" / "cells" / "lk" / "m01").iterdir())


def _query(lake: Path, sql: str) -> pd.DataFrame:
    import cellsift

    return cellsift.open_lake(lake).sql(sql)


def test_check_names_damage_query_fails_in_one_line_and_run_restores_the_table(lake, cohort):
    first, second = _sessions(lake)
    out = _ok(["status", "--lake", lake, "--model", "default"])
    assert "not scored by" in out  # run with --no-classify; nothing else out of date
    assert "analysis older" not in out and "not run" not in out
    assert _ok(["check", "--lake", lake]).startswith("check: ")
    cells_part = lake / "tables" / "cells" / "lk" / "m01" / first / "part-0.parquet"
    before = pd.read_parquet(cells_part).drop(columns=["run_id"])
    os.truncate(cells_part, cells_part.stat().st_size // 2)
    store = next((lake / "sessions" / "lk" / "m01" / second).glob("*.zarr"))
    chunk = next(p for p in sorted((store / "movie" / "c").rglob("*")) if p.is_file())
    os.truncate(chunk, 10)

    result = runner.invoke(app, ["check", "--lake", str(lake)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    cells_line = [ln for ln in lines if f"tables/cells/lk/m01/{first}/part-0.parquet" in ln]
    chunk_line = [ln for ln in lines if chunk.relative_to(lake).as_posix() in ln and "DAMAGED" in ln]
    assert len(cells_line) == 1 and f"repair: cellsift run --lake {lake}" in cells_line[0]
    assert len(chunk_line) == 1 and "10 bytes" in chunk_line[0]
    assert f"repair: cellsift ingest SOURCE --lake {lake}" in chunk_line[0]
    assert "2 damaged" in result.output

    result = runner.invoke(app, ["query", "--lake", str(lake), "SELECT count(*) FROM cells"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.strip().count("\n") == 0, result.output
    assert str(cells_part) in result.output and "cellsift run --lake" in result.output

    out = _ok(run_args(lake, "--no-classify"))
    assert "1 processed, 0 up to date" in out  # the session with the damaged store is left alone
    after = pd.read_parquet(cells_part).drop(columns=["run_id"])
    pd.testing.assert_frame_equal(after, before)
    assert _query(lake, "SELECT count(*) AS n FROM cells")["n"][0] > len(before)

    result = runner.invoke(app, ["check", "--lake", str(lake)])
    assert result.exit_code == 1 and "1 damaged" in result.output and "tables/cells" not in result.output
    status = _ok(["status", "--lake", lake])
    assert f"lk/m01/{second}: damaged: " in status
    assert f"cellsift ingest SOURCE --lake {lake} && cellsift run --lake {lake}" in status
    out = _ok(dask_command_args("ingest", lake, cohort))
    assert "1 ingested, 1 unchanged" in out
    assert _ok(["check", "--lake", lake]).endswith("0 damaged -> lake " + str(lake) + "\n")
    assert f"lk/m01/{second}: ingested, not run" in _ok(["status", "--lake", lake])


def _changed_manifest(cohort: Path, out: Path, session: str, other: str) -> Path:
    """The cohort's manifest with ``session`` pointing at ``other``'s recording (a changed input)."""
    with open(cohort / "cohort.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_session = {r["session"]: r for r in rows}
    for row in rows:
        source = by_session[other] if row["session"] == session else row
        for col in ("video", "extraction", "labels", "events"):
            row[col] = str((cohort / source[col]).resolve())
    path = out / "cohort.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_reingest_of_a_changed_session_leaves_no_old_rows_beside_new(lake, cohort, tmp_path):
    first, second = _sessions(lake)
    old = _query(lake, f"SELECT unit_id FROM cells WHERE session = '{first}'")
    new_units = _query(lake, f"SELECT unit_id FROM cells WHERE session = '{second}'")
    assert len(old) != len(new_units)  # so a mix would show in the counts
    tables = ["cells", "sessions", "traces", "events", "trial_responses", "cell_summary", "cell_registry"]
    for table in tables:
        assert _query(lake, f"SELECT count(*) AS n FROM {table} WHERE session = '{first}'")["n"][0] > 0, table

    manifest = _changed_manifest(cohort, tmp_path, first, second)
    assert "1 ingested, 1 unchanged" in _ok(dask_command_args("ingest", lake, manifest))
    # the old rows are gone with the old input, in every table (also across the animal's registry)
    for table in tables:
        n = _query(lake, f"SELECT count(*) AS n FROM {table} WHERE session = '{first}'")["n"][0]
        assert n == 0, table
    assert _query(lake, "SELECT count(*) AS n FROM lineage WHERE state <> 'current'")["n"][0] == 0
    labels = _query(lake, f"SELECT unit_id FROM labels WHERE session = '{first}' ORDER BY 1")
    assert labels["unit_id"].tolist() == sorted(new_units["unit_id"])
    status = _ok(["status", "--lake", lake])
    assert f"lk/m01/{first}: ingested, not run" in status
    assert (
        f"to bring the lake up to date: cellsift run --lake {lake} && cellsift analyze --lake {lake}"
        in status
    )

    assert "1 processed, 1 up to date" in _ok(run_args(lake, "--no-classify"))
    cells = _query(lake, f"SELECT unit_id FROM cells WHERE session = '{first}' ORDER BY 1")
    assert cells["unit_id"].tolist() == sorted(new_units["unit_id"])  # the new units only
    summary = _query(lake, "SELECT session, count(*) AS n FROM cell_summary GROUP BY 1")
    assert summary["session"].tolist() == [second]  # analysis of the old input is not back
    assert f"lk/m01/{first}: run, not analysed" in _ok(["status", "--lake", lake])
