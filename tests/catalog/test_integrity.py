"""No stale rows: lineage of table parts, the cascade on a new input, damaged parts, and status."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pytest

import cellsift
from cellsift.catalog import (
    CURRENT,
    DAMAGED,
    STALE,
    Catalog,
    LakeLayout,
    SessionRecord,
    invalidate_session,
    lake_status,
    scan_parts,
    write_parquet_atomic,
)
from cellsift.schemas import ANALYSIS_KEY, TABLES, LakeError

KEYS = [("demo", "m01", "d1"), ("demo", "m01", "d2")]


def _write(layout: LakeLayout, table: str, key, rows: list[dict], *, analysis_key: str | None = None) -> Path:
    schema = TABLES[table]
    if analysis_key is not None:
        schema = schema.with_metadata({**(schema.metadata or {}), ANALYSIS_KEY: analysis_key.encode()})
    full = [{"cohort": key[0], "animal": key[1], "session": key[2], **r} for r in rows]
    path = layout.table_file(table, *key)
    write_parquet_atomic(pa.Table.from_pylist(full, schema=schema), path, tmp_root=layout.tmp)
    return path


def _session_parts(layout: LakeLayout, key, *, input_hash: str, run: str, n_units: int, akey: str) -> None:
    """What ingest + run + analyze leave for one session (a few columns of each table)."""
    units = [{"unit_id": u} for u in range(n_units)]
    _write(layout, "labels", key, [{**u, "label": "good", "source": "csv"} for u in units])
    _write(
        layout,
        "sessions",
        key,
        [{"input_hash": input_hash, "params_hash": "p1", "run_id": run, "n_units": n_units}],
    )
    _write(layout, "cells", key, [{**u, "run_id": run, "pipeline_version": "1.0.0"} for u in units])
    _write(layout, "cell_summary", key, [{**u, "cells_run_id": run} for u in units], analysis_key=akey)
    _write(layout, "traces", key, [{**u, "frame": 0, "dff": 0.5} for u in units], analysis_key=akey)
    _write(layout, "cell_registry", key, [{**u, "cell_key": f"m01/c{u}"} for u in units], analysis_key="reg1")


@pytest.fixture
def lake(tmp_path) -> Path:
    """Two sessions, ingested, run and analysed: every part current."""
    cat = Catalog(tmp_path, create=True)
    for i, key in enumerate(KEYS):  # ingest, then the rest
        cat.upsert(SessionRecord(*key, input_hash=f"in{i}", dataset_path=f"sessions/{i}.zarr"))
    for i, key in enumerate(KEYS):
        _session_parts(cat.layout, key, input_hash=f"in{i}", run=f"run{i}", n_units=3 + i, akey=f"a{i}")
    return tmp_path


def _states(root: Path) -> dict[tuple[str, str], str]:
    cat = Catalog(root)
    return {(p.table, p.key[2]): p.state for p in scan_parts(cat.layout, cat.records())}


def test_every_part_is_current_and_carries_its_input(lake):
    assert set(_states(lake).values()) == {CURRENT}
    lineage = cellsift.open_lake(lake).sql(
        "SELECT DISTINCT session, input_hash, params_hash FROM lineage WHERE \"table\" <> 'labels' "
        "AND \"table\" <> 'cell_registry' ORDER BY session"
    )
    assert lineage.to_dict("records") == [
        {"session": "d1", "input_hash": "in0", "params_hash": "p1"},
        {"session": "d2", "input_hash": "in1", "params_hash": "p1"},
    ]


def test_changed_input_without_cascade_hides_old_rows_and_says_so(lake, caplog):
    # a lake written by an older cellsift: the catalog switched to a new input, the parts stayed
    cat = Catalog(lake)
    cat.upsert(SessionRecord(*KEYS[0], input_hash="in0-new", dataset_path="sessions/0b.zarr"))
    states = _states(lake)
    for table in ("sessions", "cells", "cell_summary", "traces"):
        assert states[(table, "d1")] == STALE, table
        assert states[(table, "d2")] == CURRENT, table
    assert states[("labels", "d1")] == CURRENT  # an input, not derived
    assert states[("cell_registry", "d1")] == STALE and states[("cell_registry", "d2")] == STALE
    with caplog.at_level(logging.WARNING, logger="cellsift.catalog.lake"):
        lk = cellsift.open_lake(lake)
        for table in ("cells", "sessions", "cell_summary", "traces"):
            assert set(lk.table(table)["session"]) == {"d2"}, table
            assert lk.sql(f"SELECT DISTINCT session FROM {table}")["session"].tolist() == ["d2"]
    assert len([r for r in caplog.records if "out-of-date table part(s)" in r.getMessage()]) == 1
    assert "hidden" in caplog.records[0].getMessage() and "cellsift status" in caplog.records[0].getMessage()
    reasons = lk.lineage.set_index(["table", "session"])["reason"]
    assert "the catalog now has in0-new" in reasons[("sessions", "d1")]
    shown = cellsift.open_lake(lake, include_stale=True)
    assert set(shown.cells["session"]) == {"d1", "d2"}


def test_analysis_older_than_cells_is_stale(lake):
    layout = LakeLayout(lake)
    # a new run rewrote cells and sessions of d1; analyze has not run since
    _write(layout, "sessions", KEYS[0], [{"input_hash": "in0", "params_hash": "p2", "run_id": "run9"}])
    _write(layout, "cells", KEYS[0], [{"unit_id": 0, "run_id": "run9"}])
    states = _states(lake)
    assert states[("cells", "d1")] == CURRENT
    assert states[("cell_summary", "d1")] == STALE and states[("traces", "d1")] == STALE
    assert states[("cell_summary", "d2")] == CURRENT
    # cells written by a run whose sessions row never came (killed between the two files)
    _write(layout, "cells", KEYS[1], [{"unit_id": 0, "run_id": "run10"}])
    assert _states(lake)[("cells", "d2")] == STALE
    report = lake_status(lake)
    problems = {(i.key[2], i.problem.split(" (")[0]) for i in report.items}
    assert ("d1", "analysis older than cells") in problems
    assert ("d2", "cells part stale") in problems
    assert report.command() == f"cellsift run --lake {lake} && cellsift analyze --lake {lake}"


def test_invalidate_session_removes_derived_parts_of_the_session_and_its_animals_registry(lake):
    layout = LakeLayout(lake)
    clips = layout.clips_dir(*KEYS[0]) / "p-in0.zarr"
    clips.mkdir(parents=True)
    removed = invalidate_session(layout, KEYS[0])
    assert clips in removed and not clips.exists()
    left = {(p.table, p.key[2]) for p in scan_parts(layout, Catalog(lake).records())}
    assert ("labels", "d1") in left
    assert not {t for t, s in left if s == "d1"} - {"labels"}
    assert {t for t, s in left if s == "d2"} == {"labels", "sessions", "cells", "cell_summary", "traces"}
    assert not layout.table_partition("cells", *KEYS[0]).exists()  # its checksum sidecar and folder too
    report = lake_status(lake)
    items = [(i.key[2], i.problem) for i in report.items]
    assert [p for s_, p in items if s_ == "d1"] == ["ingested, not run"]
    assert ("d2", "cell_registry part missing") in items  # the animal's registry went with d1
    assert all(p.endswith("part missing") for s_, p in items if s_ == "d2")
    assert report.command() == f"cellsift run --lake {lake} && cellsift analyze --lake {lake}"


def test_damaged_part_fails_reads_of_its_table_in_one_line(lake):
    layout = LakeLayout(lake)
    part = layout.table_file("cells", *KEYS[0])
    os.truncate(part, part.stat().st_size // 2)
    lk = cellsift.open_lake(lake)
    assert _states(lake)[("cells", "d1")] == DAMAGED
    reads = (
        lambda: lk.cells,
        lambda: lk.sql("SELECT count(*) FROM cells"),
        lambda: lk.sql('SELECT * FROM "cells"'),
    )
    for read in reads:
        with pytest.raises(LakeError) as info:
            read()
        line = str(info.value)
        assert "\n" not in line and str(part) in line and "damaged table file" in line
        assert f"cellsift run --lake {lake}" in line
    assert lk.sql("SELECT count(*) AS n FROM sessions")["n"][0] == 2  # other tables still read
    # analysis built from the cells before the damage is still shown
    assert lk.sql("SELECT count(*) AS n FROM cell_summary")["n"][0] == 3 + 4
    report = lake_status(lake)
    assert any(i.problem.startswith("cells part damaged") and i.key == KEYS[0] for i in report.items)
