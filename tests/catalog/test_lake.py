import pyarrow as pa
import pytest

import cellsift
from cellsift.catalog import Catalog, SessionRecord, write_parquet_atomic
from cellsift.catalog.layout import LakeLayout
from cellsift.schemas import CELLS_SCHEMA, CellsiftError


def _cells_rows(animal, session, n):
    rows = []
    for u in range(n):
        row = {name: None for name in CELLS_SCHEMA.names}
        row.update(
            cohort="demo",
            animal=animal,
            session=session,
            stage="conditioning",
            day=1,
            unit_id=u + 1,
            overlap_flag=u == 0,
            area_px=50.0 + u,
            peak_frames=[3, 7],
        )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=CELLS_SCHEMA)


def test_open_lake_returns_dataframes_and_duckdb_views(tmp_path):
    cat = Catalog(tmp_path, create=True)
    cat.upsert(SessionRecord("demo", "m01", "d1", stage="conditioning"))
    layout = LakeLayout(tmp_path)
    write_parquet_atomic(
        _cells_rows("m01", "d1", 3), layout.table_file("cells", "demo", "m01", "d1"), tmp_root=layout.tmp
    )
    write_parquet_atomic(
        _cells_rows("m02", "d1", 2), layout.table_file("cells", "demo", "m02", "d1"), tmp_root=layout.tmp
    )
    lake = cellsift.open_lake(tmp_path)
    cells = lake.cells
    assert len(cells) == 5
    assert sorted(cells["animal"].unique()) == ["m01", "m02"]
    assert lake.sessions.empty and "n_units" in lake.sessions.columns
    out = lake.sql(
        "SELECT animal, count(*) AS n, sum(overlap_flag::INT) AS flagged "
        "FROM cells GROUP BY animal ORDER BY animal"
    )
    assert out.to_dict("records") == [
        {"animal": "m01", "n": 3, "flagged": 1},
        {"animal": "m02", "n": 2, "flagged": 1},
    ]
    assert lake.sql("SELECT count(*) AS n FROM sessions")["n"][0] == 0
    assert lake.sql("SELECT session FROM catalog")["session"].tolist() == ["d1"]


def test_bad_sql_is_one_line_error(tmp_path):
    Catalog(tmp_path, create=True)
    with pytest.raises(CellsiftError, match="query failed") as info:
        cellsift.open_lake(tmp_path).sql("SELECT nope FROM cells")
    assert "\n" not in str(info.value)
    with pytest.raises(CellsiftError, match="no table"):
        cellsift.open_lake(tmp_path).table("nonexistent")
