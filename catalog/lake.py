"""Read access to a lake: tables as pandas DataFrames and SQL through DuckDB.

Examples
--------
>>> import cellsift
>>> lake = cellsift.open_lake("demo/lake")                      # doctest: +SKIP
>>> good = lake.cells.query("not overlap_flag")                 # doctest: +SKIP
>>> lake.sql("SELECT animal, count(*) FROM cells GROUP BY 1")   # doctest: +SKIP

Versions are never mixed silently: a table part built from another input than the
session has now, or from an older ``cells`` table (see :mod:`cellsift.catalog.lineage`),
is hidden from the tables and views with one warning that says how many and which command
updates them (``include_stale=True`` shows them, still with the warning); the ``lineage``
view lists every part with its state and what it was built from. A damaged part (its size
differs from the one recorded at write time, or it cannot be read) makes any read of its
table fail with one line naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import logging
import re
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.lineage import CURRENT, DAMAGED, STALE, Part, part_key, repair_command, scan_parts
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
    include_stale
        Show table parts built from older inputs or an older ``cells`` table too (with a
        warning); by default they are hidden (with a warning).
    """

    def __init__(self, root: str | PathLike[str], *, include_stale: bool = False) -> None:
        self.root = Path(root)
        self.layout = LakeLayout(self.root)
        self._catalog = Catalog(self.root)  # raises if there is no lake here
        self.include_stale = include_stale
        self._parts: list[Part] | None = None

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # -- tables -------------------------------------------------------------
    def table_files(self, name: str) -> list[Path]:
        """Return the Parquet files of table ``name``, sorted."""
        folder = self.layout.tables_dir(name)
        if not folder.exists():
            return []
        return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))

    @property
    def parts(self) -> list[Part]:
        """Every table part with its state (current, stale, damaged) and lineage (read once)."""
        if self._parts is None:
            self._parts = scan_parts(self.layout, self._catalog.records())
            self._warn_stale(self._parts)
        return self._parts

    @property
    def lineage(self) -> pd.DataFrame:
        """One row per table part: its state, why, and the input, parameters and run it was built from."""
        cols = [
            "table",
            "cohort",
            "animal",
            "session",
            "state",
            "reason",
            "input_hash",
            "params_hash",
            "run_id",
        ]
        rows = []
        for p in self.parts:
            key = p.key or (None, None, None)
            rows.append([p.table, *key, p.state, p.reason, p.input_hash, p.params_hash, p.run_id])
        frame = pd.DataFrame(rows, columns=cols)
        frame["path"] = [self.layout.relative(p.path) for p in self.parts]
        return frame

    def _warn_stale(self, parts: list[Part]) -> None:
        stale = [p for p in parts if p.state == STALE]
        if not stale:
            return
        tables: dict[str, int] = {}
        for p in stale:
            tables[p.table] = tables.get(p.table, 0) + 1
        which = ", ".join(f"{t} {n}" for t, n in sorted(tables.items()))
        verb = "included" if self.include_stale else "hidden"
        logger.warning(
            "%s: %d out-of-date table part(s) (built from another input, an older cells table, "
            "or a part damaged since) are %s (%s); "
            "'cellsift status --lake %s' lists them and the command that updates them",
            self.root,
            len(stale),
            verb,
            which,
            self.root,
        )

    def _visible_files(self, name: str) -> list[Path]:
        states = {CURRENT, STALE} if self.include_stale else {CURRENT}
        return [p.path for p in self.parts if p.table == name and p.state in states]

    def _schema(self, name: str) -> pa.Schema | None:
        """The schema of table ``name``: cellsift's, else the first readable part's, else ``None``."""
        if name in TABLES:
            return TABLES[name]
        for p in self.parts:
            if p.table == name and p.state != DAMAGED:
                return pq.read_schema(p.path)
        return None

    def _damaged_error(self, name: str, path: Path, detail: str) -> LakeError:
        return LakeError(
            f"damaged table file ({detail})",
            path=path,
            fix=f"{repair_command(name, self.root)} rebuilds it; "
            f"'cellsift check --lake {self.root}' lists every damaged file",
        )

    def _refuse_damaged(self, name: str) -> None:
        for p in self.parts:
            if p.table == name and p.state == DAMAGED:
                raise self._damaged_error(name, p.path, p.reason)

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
        self._refuse_damaged(name)
        visible = self._visible_files(name)
        if not visible:
            return (schema or pq.read_schema(files[0])).empty_table()
        parts = []
        for f in visible:
            try:
                parts.append(pq.read_table(f))
            except (OSError, pa.ArrowException) as exc:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise self._damaged_error(part_key(self.layout, f)[0], f, f"unreadable: {detail}") from None
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
            files = self._visible_files(name)
            if files:
                listing = ", ".join(_sql_string(str(f)) for f in files)
                con.execute(
                    f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}], '
                    "union_by_name = true, hive_partitioning = false)"
                )
            elif (schema := self._schema(name)) is not None:
                con.register(f"_empty_{name}", schema.empty_table())
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_empty_{name}"')
        con.register("_catalog_frame", self.catalog)
        con.execute('CREATE VIEW "catalog" AS SELECT * FROM "_catalog_frame"')
        con.register("_lineage_frame", self.lineage)
        con.execute('CREATE VIEW "lineage" AS SELECT * FROM "_lineage_frame"')
        return con

    def sql(self, query: str) -> pd.DataFrame:
        """Run ``query`` in DuckDB over the lake's views and return a DataFrame."""
        import duckdb

        for name in {p.table for p in self.parts if p.state == DAMAGED}:
            if re.search(rf'(?<![\w."]){re.escape(name)}(?![\w"])|"{re.escape(name)}"', query, re.IGNORECASE):
                self._refuse_damaged(name)
        con = self.connect()
        try:
            return con.execute(query).df()
        except duckdb.Error as exc:
            for p in self.parts:
                if str(p.path) in str(exc):
                    raise self._damaged_error(
                        p.table, p.path, f"unreadable: {duckdb_error_line(exc)}"
                    ) from None
            raise CellsiftError(
                f"query failed: {duckdb_error_line(exc)}",
                path=self.root,
                fix=f"tables are {', '.join(self.table_names())}, catalog and lineage; "
                "see docs/architecture.md for their columns",
            ) from None
        finally:
            con.close()


def open_lake(path: str | PathLike[str], *, include_stale: bool = False) -> Lake:
    """Open the lake at ``path`` for reading (see :class:`Lake`; ``include_stale`` shows out-of-date parts)."""
    return Lake(path, include_stale=include_stale)
