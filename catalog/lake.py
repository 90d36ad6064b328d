"""Read access to a lake: tables as pandas DataFrames and SQL through DuckDB.

Examples
--------
>>> import cellsift
>>> lake = cellsift.open_lake("demo/lake")                      # doctest: +SKIP
>>> good = lake.cells.query("not overlap_flag")                 # doctest: +SKIP
>>> lake.sql("SELECT animal, count(*) FROM cells GROUP BY 1")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.store import Catalog
from cellsift.schemas import TABLES, CellsiftError, LakeError

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

__all__ = ["Lake", "open_lake"]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


#: Lines of a DuckDB error message that help the user fix the query (kept in the one line).
_DUCKDB_HINTS = ("Did you mean", "Candidate bindings")


def duckdb_error_line(exc: BaseException) -> str:
    """Return DuckDB's error message as one line: its first line plus its hints.

    DuckDB's messages span lines: the error, hints such as ``Did you mean "cells"?`` or
    ``Candidate bindings: "noise_sd"``, and the query text with a caret. The first line and
    the hint lines are kept, joined by a space; the query echo is dropped.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    hints = [line for line in lines[1:] if line.startswith(_DUCKDB_HINTS)]
    return " ".join([lines[0], *hints])


class Lake:
    """A lake opened for reading.

    Parameters
    ----------
    root
        The lake folder (what ``cellsift ingest --lake`` was given).
    """

    def __init__(self, root: str | PathLike[str]) -> None:
        self.root = Path(root)
        self.layout = LakeLayout(self.root)
        self._catalog = Catalog(self.root)  # raises if there is no lake here

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # -- tables -------------------------------------------------------------
    def table_files(self, name: str) -> list[Path]:
        """Return the Parquet files of table ``name``, sorted."""
        folder = self.layout.tables_dir(name)
        if not folder.exists():
            return []
        return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))

    def table_names(self) -> list[str]:
        """Names of the tables this lake can show (known schemas and any table on disk)."""
        on_disk = []
        tables_root = self.root / "tables"
        if tables_root.exists():
            on_disk = [p.name for p in tables_root.iterdir() if p.is_dir()]
        return sorted(set(TABLES) | set(on_disk))

    def arrow(self, name: str) -> pa.Table:
        """Return table ``name`` as one pyarrow Table (empty, with its schema, if none written)."""
        files = self.table_files(name)
        schema = TABLES.get(name)
        if not files:
            if schema is None:
                raise LakeError(
                    f"the lake has no table '{name}'",
                    path=self.root,
                    field=name,
                    fix=f"choose one of {', '.join(self.table_names())}",
                )
            return schema.empty_table()
        parts = [pq.read_table(f) for f in files]
        return pa.concat_tables(parts, promote_options="permissive")

    def table(self, name: str) -> pd.DataFrame:
        """Return table ``name`` as a pandas DataFrame."""
        return self.arrow(name).to_pandas()

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell candidate: ids, centroid, quality features, overlap flags."""
        return self.table("cells")

    @property
    def sessions(self) -> pd.DataFrame:
        """One row per processed session."""
        return self.table("sessions")

    @property
    def labels(self) -> pd.DataFrame:
        """Curation or ground-truth labels with their source."""
        return self.table("labels")

    @property
    def catalog(self) -> pd.DataFrame:
        """The catalog: every ingested (or failed) session with paths, hashes and status."""
        return self._catalog.to_frame()

    # -- SQL ----------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        """Return an in-memory DuckDB connection with every table registered as a view."""
        import duckdb

        con = duckdb.connect(":memory:")
        for name in self.table_names():
            files = self.table_files(name)
            if files:
                listing = ", ".join(_sql_string(str(f)) for f in files)
                con.execute(
                    f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}], '
                    "union_by_name = true, hive_partitioning = false)"
                )
            elif name in TABLES:
                empty = TABLES[name].empty_table()
                con.register(f"_empty_{name}", empty)
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_empty_{name}"')
        con.register("_catalog_frame", self.catalog)
        con.execute('CREATE VIEW "catalog" AS SELECT * FROM "_catalog_frame"')
        return con

    def sql(self, query: str) -> pd.DataFrame:
        """Run ``query`` in DuckDB over the lake's views and return a DataFrame."""
        import duckdb

        con = self.connect()
        try:
            return con.execute(query).df()
        except duckdb.Error as exc:
            raise CellsiftError(
                f"query failed: {duckdb_error_line(exc)}",
                path=self.root,
                fix=f"tables are {', '.join(self.table_names())} and catalog; "
                "see docs/architecture.md for their columns",
            ) from None
        finally:
            con.close()


def open_lake(path: str | PathLike[str]) -> Lake:
    """Open the lake at ``path`` for reading (see :class:`Lake`)."""
    return Lake(path)
