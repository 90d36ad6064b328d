"""Atomic writes: write into ``LAKE/tmp``, then rename into place.

A reader never sees a half-written file or folder: files are replaced with
:func:`os.replace`; folders are written under a new, content-addressed name and the
catalog is switched to them in one SQLite transaction (see :mod:`.store`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.checksums import record_file

logger = logging.getLogger(__name__)

__all__ = [
    "staging_path",
    "publish_dir",
    "write_parquet_atomic",
    "write_json_atomic",
    "remove_tree_quietly",
]


@contextlib.contextmanager
def staging_path(tmp_root: Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh path under ``tmp_root``; remove it afterwards if it is still there.

    Parameters
    ----------
    tmp_root
        The lake's staging folder (same file system as the destination).
    suffix
        Appended to the generated name, e.g. ``".zarr"``.
    """
    tmp_root.mkdir(parents=True, exist_ok=True)
    path = tmp_root / f"{uuid.uuid4().hex}{suffix}"
    try:
        yield path
    finally:
        remove_tree_quietly(path)


def publish_dir(staged: Path, final: Path) -> None:
    """Move a fully written folder to ``final``, replacing an older one if present.

    The old folder is first renamed aside, so at every moment ``final`` is either the
    complete old or the complete new folder (never a mix), and it is deleted only after
    the new one is in place.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = None
    if final.exists():
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, aside)
    try:
        os.replace(staged, final)
    except BaseException:
        if aside is not None:
            os.replace(aside, final)
        raise
    if aside is not None:
        remove_tree_quietly(aside)


def write_parquet_atomic(table: pa.Table, final: Path, *, tmp_root: Path) -> None:
    """Write ``table`` to ``final`` as Parquet via a temporary file and :func:`os.replace`.

    The file's SHA-256 and size are recorded in its hidden sidecar before the rename
    (:func:`cellsift.catalog.checksums.record_file`), so ``cellsift check`` can tell a
    damaged file from a good one.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    with staging_path(tmp_root, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
        record_file(final, staged=tmp)
        os.replace(tmp, final)
    logger.debug("wrote %s (%d rows)", final, table.num_rows)


def remove_tree_quietly(path: Path) -> None:
    """Remove a file or folder if it exists; ignore errors (used for clean-up only)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented JSON (sorted keys) to ``path`` through a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
