"""Bring a lake written by an older cellsift up to today's layout.

Layout 2 (today) keeps each table's files in plain folders,
``tables/<table>/<cohort>/<animal>/<session>/part-0.parquet``, with ``cohort``, ``animal``
and ``session`` as columns inside every file. Layout 1 named the folders the Hive way
(``cohort=<c>/animal=<a>/session=<s>``) *and* kept the columns in the files, which pandas
and pyarrow refuse to merge (``string vs dictionary``); plain folders are read the same
way by pandas, pyarrow, polars, Dask and DuckDB, with the columns' types from the files.

Every writer upgrades the lake when it takes the run lock (:func:`cellsift.catalog.run_lock`);
``cellsift upgrade --lake L`` does it on request. Each file is moved with one atomic rename,
so a crash leaves every file in exactly one of the two layouts, both of which readers see.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["TABLE_LAYOUT_VERSION", "legacy_partitions", "upgrade_table_layout"]

#: The table folder layout this cellsift writes.
TABLE_LAYOUT_VERSION: Final = 2

_LEVELS: Final = ("cohort", "animal", "session")


def legacy_partitions(root: Path) -> list[Path]:
    """Session folders of the Hive layout (``tables/<t>/cohort=…/animal=…/session=…``)."""
    tables = Path(root) / "tables"
    if not tables.is_dir():
        return []
    return sorted(p for p in tables.glob("*/cohort=*/animal=*/session=*") if p.is_dir())


def _plain_target(partition: Path) -> Path:
    session_dir, animal_dir, cohort_dir = partition, partition.parent, partition.parent.parent
    values = [d.name.split("=", 1)[1] for d in (cohort_dir, animal_dir, session_dir)]
    return cohort_dir.parent.joinpath(*values)


def upgrade_table_layout(root: Path) -> int:
    """Move every table file of a Hive-layout lake into plain folders; return files moved.

    A file that already exists in the plain layout was written by a newer run and wins;
    its legacy twin is removed. Empty legacy folders are removed. Safe to repeat.
    """
    moved = 0
    for partition in legacy_partitions(root):
        target = _plain_target(partition)
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(partition.iterdir()):
            dest = target / item.name
            if dest.exists():  # written by a newer run: the legacy twin goes
                item.unlink()
            else:
                os.replace(item, dest)
                moved += 1
        for folder in (partition, partition.parent, partition.parent.parent):
            with contextlib.suppress(OSError):  # not empty: another session is still there
                folder.rmdir()
    if moved:
        logger.warning(
            "lake %s: moved %d table file(s) to the plain folder layout (layout %d)",
            root,
            moved,
            TABLE_LAYOUT_VERSION,
        )
    return moved
