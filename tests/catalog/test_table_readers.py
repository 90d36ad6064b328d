"""Every table of a lake reads the same in pandas, pyarrow, polars, Dask and DuckDB, with no options.

The first line a pandas user types is ``pd.read_parquet("lake/tables/cells")``; a
DuckDB, polars or Dask user types the equivalent. All of them must give the same rows
and the same column types as cellsift's own reader (``cellsift.open_lake``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import cellsift
from cellsift.catalog import legacy_partitions
from cellsift.cli import app
from cellsift.schemas import TABLES

_KEYS = ["cohort", "animal", "session"]


@pytest.fixture(scope="module")
def full_lake(_tiny_lake_master, tmp_path_factory) -> Path:
    """The tiny lake, processed, classified and analysed: every table present."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline.analysis import build_analysis_tables
    from cellsift.pipeline.classify import classify_lake
    from cellsift.pipeline.stages import run_pipeline

    lake = tmp_path_factory.mktemp("readers") / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            assert run_pipeline(lake, client=client).n_failed == 0
            classify_lake(lake, "default", client=client)
    assert build_analysis_tables(lake).n_failed == 0
    return lake


def _tables(lake: Path) -> list[str]:
    return sorted(p.name for p in (lake / "tables").iterdir() if p.is_dir())


def _family(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return f"dictionary<{_family(t.value_type)}>"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{_family(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Scalar columns only (list columns compare awkwardly across tools), sorted by key."""
    scalar = [
        c
        for c in df.columns
        if not df[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any()
    ]
    keys = [c for c in (*_KEYS, "unit_id", "event_index", "trial", "frame", "trial_type") if c in scalar]
    out = df[scalar].astype({c: str for c in scalar if isinstance(df[c].dtype, pd.CategoricalDtype)})
    return out.sort_values(keys).reset_index(drop=True)


def _read_all(folder: Path) -> dict[str, tuple[pd.DataFrame, pa.Schema | None]]:
    import dask.dataframe as dd
    import duckdb
    import polars as pl
    import pyarrow.dataset as pds

    glob = f"{folder}/**/*.parquet"
    arrow = pds.dataset(folder, partitioning="hive").to_table()
    polars = pl.scan_parquet(glob, hive_partitioning=True).collect().to_arrow()
    duck = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").to_arrow_table()
    return {
        "pandas": (pd.read_parquet(folder), None),
        "pyarrow.dataset": (arrow.to_pandas(), arrow.schema),
        "polars": (polars.to_pandas(), polars.schema),
        "dask": (dd.read_parquet(folder).compute(), None),
        "duckdb": (duck.to_pandas(), duck.schema),
    }


def test_every_table_reads_alike_in_every_tool(full_lake):
    names = _tables(full_lake)
    assert set(names) >= {"cells", "sessions", "labels", "traces", "events", "cell_summary", "cell_registry"}
    lake = cellsift.open_lake(full_lake)
    for name in names:
        want = lake.arrow(name)
        families = {f.name: _family(f.type) for f in want.schema}
        assert not any(v.startswith("dictionary") for v in families.values()), (name, families)
        expected = _flat(want.to_pandas())
        for tool, (got, schema) in _read_all(full_lake / "tables" / name).items():
            assert len(got) == len(want), (name, tool)
            assert set(got.columns) == set(want.column_names), (
                name,
                tool,
                set(got.columns) ^ set(want.column_names),
            )
            if schema is not None:
                got_families = {f.name: _family(f.type) for f in schema}
                assert got_families == families, (name, tool)
            got_flat = _flat(got)[expected.columns]
            pd.testing.assert_frame_equal(got_flat, expected, check_dtype=False, obj=f"{name} via {tool}")
        if name in TABLES:
            assert set(want.column_names) == set(TABLES[name].names), name


def test_old_hive_layout_is_upgraded(full_lake, tmp_path):
    from typer.testing import CliRunner

    lake = tmp_path / "lake"
    shutil.copytree(full_lake, lake)
    before = {n: _flat(cellsift.open_lake(lake).table(n)) for n in _tables(lake)}
    # rewrite the lake the way cellsift <= 0.1 laid it out: cohort=…/animal=…/session=…
    for part in sorted((lake / "tables").glob("*/*/*/*/part-0.parquet")):
        session, animal, cohort = part.parent, part.parent.parent, part.parent.parent.parent
        old = cohort.parent / f"cohort={cohort.name}" / f"animal={animal.name}" / f"session={session.name}"
        old.mkdir(parents=True, exist_ok=True)
        part.rename(old / part.name)
    for folder in sorted((lake / "tables").glob("*/*/*/*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    assert legacy_partitions(lake)
    # cellsift still reads it; pandas is what broke (partition columns in the folders and the files)
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid, TypeError, ValueError)):
        pd.read_parquet(lake / "tables" / "cells")
    assert {n: len(cellsift.open_lake(lake).table(n)) for n in before} == {
        n: len(v) for n, v in before.items()
    }
    result = CliRunner().invoke(app, ["upgrade", "--lake", str(lake)])
    assert result.exit_code == 0, result.output
    assert not legacy_partitions(lake)
    assert not list((lake / "tables").glob("*/cohort=*"))
    for name, frame in before.items():
        pd.testing.assert_frame_equal(_flat(cellsift.open_lake(lake).table(name)), frame, obj=name)
        assert len(pd.read_parquet(lake / "tables" / name)) == len(frame), name
    again = CliRunner().invoke(app, ["upgrade", "--lake", str(lake)])
    assert again.exit_code == 0 and "0 table partition(s) moved" in again.output
