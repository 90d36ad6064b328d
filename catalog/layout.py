"""Where things live inside a lake folder.

::

    LAKE/
      catalog.sqlite                       one row per session (cohort, animal, session, ...)
      sessions/<cohort>/<animal>/<session>/<input_hash>.zarr   session datasets
      clips/<cohort>/<animal>/<session>/<run_key>.zarr         peak clips per cell
      tables/<table>/<cohort>/<animal>/<session>/part-0.parquet
      runs/<run_id>.json                   provenance of every pipeline run
      tmp/                                 staging area for atomic writes
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cellsift.schemas import TABLE_PART_FILE, LakeError

__all__ = ["LakeLayout", "safe_name"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def safe_name(value: str, *, field: str) -> str:
    """Return ``value`` if it is usable as a folder name, else raise.

    Parameters
    ----------
    value
        A cohort, animal or session name.
    field
        Which of those it is, for the error message.
    """
    if not _SAFE.match(value) or value in {".", ".."}:
        raise LakeError(
            f"'{value}' cannot be used as a {field} name",
            field=field,
            fix="use letters, digits, '.', '_', '+' or '-' and start with a letter or digit",
        )
    return value


def _safe_key(cohort: str, animal: str, session: str) -> tuple[str, str, str]:
    """A session key's names, each checked by :func:`safe_name` (cohort first)."""
    return (
        safe_name(cohort, field="cohort"),
        safe_name(animal, field="animal"),
        safe_name(session, field="session"),
    )


@dataclass(frozen=True)
class LakeLayout:
    """Paths of one lake.

    Parameters
    ----------
    root
        The lake folder.
    """

    root: Path

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def tables_dir(self, table: str) -> Path:
        return self.root / "tables" / table

    def session_dir(self, cohort: str, animal: str, session: str) -> Path:
        return self.root.joinpath("sessions", *_safe_key(cohort, animal, session))

    def clips_dir(self, cohort: str, animal: str, session: str) -> Path:
        return self.root.joinpath("clips", *_safe_key(cohort, animal, session))

    def table_partition(self, table: str, cohort: str, animal: str, session: str) -> Path:
        folder = self.tables_dir(table)
        cohort, animal, session = _safe_key(cohort, animal, session)
        return folder / cohort / animal / session

    def table_file(self, table: str, cohort: str, animal: str, session: str) -> Path:
        return self.table_partition(table, cohort, animal, session) / TABLE_PART_FILE

    def relative(self, path: Path) -> str:
        """Return ``path`` relative to the lake root, as a POSIX string."""
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def ensure(self) -> None:
        """Create the top-level folders of a lake."""
        for folder in (self.root, self.tmp, self.runs, self.root / "tables"):
            folder.mkdir(parents=True, exist_ok=True)
