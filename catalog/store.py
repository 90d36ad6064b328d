"""The catalog: one SQLite table recording every cohort, animal and session of a lake.

SQLite gives atomic, crash-safe updates from one process at a time; the pipeline's
Dask workers never write to it (only the client process does), so no locking
between machines is needed. Readers get a pandas DataFrame via :meth:`Catalog.to_frame`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cellsift.catalog.layout import LakeLayout
from cellsift.schemas import LakeError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["SessionRecord", "Catalog", "STATUS_INGESTED", "STATUS_FAILED", "STATUS_DAMAGED"]

STATUS_INGESTED = "ingested"
STATUS_FAILED = "failed"
#: The session store (or its labels) failed ``cellsift check``: ``run`` leaves the session
#: alone and ``ingest`` writes it again even though its inputs are unchanged.
STATUS_DAMAGED = "damaged"
CATALOG_VERSION = 1


@dataclass(frozen=True)
class SessionRecord:
    """One session as the catalog records it.

    Paths of inputs are absolute; ``dataset_path`` is relative to the lake root.
    ``input_hash`` is the SHA-256 of the input files' contents and ingest options.
    """

    cohort: str
    animal: str
    session: str
    stage: str = ""
    day: int = 0
    fps: float = 0.0
    video: str = ""
    extraction: str = ""
    events: str = ""
    labels: str = ""
    source_format: str = ""
    dataset_path: str = ""
    input_hash: str = ""
    n_frames: int = 0
    height: int = 0
    width: int = 0
    n_units: int = 0
    status: str = STATUS_INGESTED
    error: str = ""
    updated_at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cohort, self.animal, self.session)


_FIELDS = [f.name for f in dataclasses.fields(SessionRecord)]
_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}


def _create_sql() -> str:
    cols = []
    for f in dataclasses.fields(SessionRecord):
        kind = _SQL_TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
        cols.append(f"{f.name} {kind}")
    return f"CREATE TABLE IF NOT EXISTS sessions ({', '.join(cols)}, PRIMARY KEY (cohort, animal, session))"


class Catalog:
    """The catalog of one lake.

    Parameters
    ----------
    root
        The lake folder. Created with ``create=True``; otherwise it must exist.
    create
        Create the lake folders and the catalog if missing.
    """

    def __init__(self, root: Path | str, *, create: bool = False) -> None:
        self.layout = LakeLayout(Path(root))
        if create:
            self.layout.ensure()
        elif not self.layout.catalog_db.exists():
            raise SessionNotFoundError(
                "no lake here (catalog.sqlite is missing)",
                path=self.layout.root,
                fix="run 'cellsift ingest SOURCE --lake LAKE' first, or check the --lake path",
            )
        with self._connect() as con:
            con.execute(_create_sql())
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('catalog_version', ?)", (str(CATALOG_VERSION),))

    @property
    def root(self) -> Path:
        return self.layout.root

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.layout.catalog_db, timeout=30)
        except sqlite3.Error as exc:
            raise LakeError(
                f"cannot open the catalog ({exc})",
                path=self.layout.catalog_db,
                fix="check permissions of the lake folder",
            ) from None
        try:
            with con:
                yield con
        except sqlite3.DatabaseError as exc:
            raise LakeError(
                f"catalog database error ({exc})",
                path=self.layout.catalog_db,
                fix="restore catalog.sqlite from a backup or re-ingest into a new lake",
            ) from None
        finally:
            con.close()

    def upsert(self, record: SessionRecord) -> None:
        """Insert or replace one session's row (one transaction)."""
        record = dataclasses.replace(record, updated_at=datetime.now(UTC).isoformat(timespec="milliseconds"))
        values = [getattr(record, name) for name in _FIELDS]
        placeholders = ", ".join("?" for _ in _FIELDS)
        with self._connect() as con:
            con.execute(
                f"INSERT OR REPLACE INTO sessions ({', '.join(_FIELDS)}) VALUES ({placeholders})", values
            )
        logger.debug("catalog: %s/%s/%s -> %s", record.cohort, record.animal, record.session, record.status)

    def mark(self, cohort: str, animal: str, session: str, *, status: str, error: str) -> None:
        """Set one session's ``status`` and ``error`` (one transaction); other fields are kept."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connect() as con:
            con.execute(
                "UPDATE sessions SET status=?, error=?, updated_at=? WHERE cohort=? AND animal=? AND session=?",
                (status, error, now, cohort, animal, session),
            )
        logger.debug("catalog: %s/%s/%s -> %s", cohort, animal, session, status)

    def get(self, cohort: str, animal: str, session: str) -> SessionRecord | None:
        """Return one session's record, or ``None`` if the catalog does not know it."""
        with self._connect() as con:
            row = con.execute(
                f"SELECT {', '.join(_FIELDS)} FROM sessions WHERE cohort=? AND animal=? AND session=?",
                (cohort, animal, session),
            ).fetchone()
        return None if row is None else SessionRecord(*row)

    def records(self, *, status: str | None = None, cohort: str | None = None) -> list[SessionRecord]:
        """Return all records, optionally only those with ``status`` / of ``cohort``, sorted by key."""
        sql = f"SELECT {', '.join(_FIELDS)} FROM sessions"
        clauses, args = [], []
        if status is not None:
            clauses.append("status=?")
            args.append(status)
        if cohort is not None:
            clauses.append("cohort=?")
            args.append(cohort)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY cohort, animal, session"
        with self._connect() as con:
            return [SessionRecord(*row) for row in con.execute(sql, args).fetchall()]

    def to_frame(self) -> pd.DataFrame:
        """Return the catalog as a pandas DataFrame (one row per session)."""
        rows = [dataclasses.asdict(r) for r in self.records()]
        return pd.DataFrame(rows, columns=_FIELDS)
