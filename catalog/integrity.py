"""A lake's integrity: the cascade when a session's input changes, and ``cellsift check``.

* :func:`cascade_new_input` — called by ingest after a session's new store is in place and
  *before* the catalog row is switched to it: records the store's checksums and removes
  every part derived from the session's old input (:func:`invalidate_session`), most
  downstream first (the animal's ``cell_registry``, ``cell_summary``, the other analysis
  tables, ``sessions``, ``cells``, the clip store), as DataJoint's cascading delete does.
  At every moment the catalog names one input and the lake holds only parts built from
  it (or none yet): never old rows beside new ones.
* :func:`derived_intact` — whether a session's ``sessions`` and ``cells`` parts and clip
  store are whole (``cellsift run`` re-processes a session whose parts are not).
* :func:`check_lake` — ``cellsift check``: every session store, clip store and table part
  against the checksums recorded when it was written (:mod:`.checksums`); files written
  without a record are validated by reading them whole and recorded then.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.atomic import remove_tree_quietly
from cellsift.catalog.checksums import (
    BY_CHECK,
    read_store_manifest,
    record_file,
    record_store,
    sidecar_path,
    verify_file,
    verify_store,
)
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.lineage import ANIMAL_TABLES, SOURCE_TABLES, part_key, repair_command
from cellsift.catalog.lock import run_lock
from cellsift.catalog.store import STATUS_DAMAGED, STATUS_FAILED, Catalog
from cellsift.schemas import TABLE_PART_FILE

logger = logging.getLogger(__name__)

__all__ = [
    "Damage",
    "CheckReport",
    "cascade_new_input",
    "invalidate_session",
    "derived_intact",
    "check_lake",
]

#: Removed first: the parts whose presence marks a session done (``analyze``, then ``run``).
_MARKERS_FIRST: Final = ("cell_summary",)
_RUN_PARTS: Final = ("sessions", "cells")


def _remove_part(path: Path) -> bool:
    removed = path.exists()
    remove_tree_quietly(path)
    remove_tree_quietly(sidecar_path(path))
    with contextlib.suppress(OSError):  # only when empty
        path.parent.rmdir()
    return removed


def _derived_tables(layout: LakeLayout) -> list[str]:
    tables = layout.root / "tables"
    names = sorted(p.name for p in tables.iterdir() if p.is_dir()) if tables.is_dir() else []
    derived = [t for t in names if t not in SOURCE_TABLES and t not in _RUN_PARTS]
    first = [t for t in ANIMAL_TABLES if t in derived] + [t for t in _MARKERS_FIRST if t in derived]
    return first + [t for t in derived if t not in first] + list(_RUN_PARTS)


def invalidate_session(layout: LakeLayout, key: tuple[str, str, str]) -> list[Path]:
    """Remove every part derived from one session's input; return the files and folders removed.

    Removed, most downstream first: the ``cell_registry`` parts of every session of the
    animal (they were matched against this session), the session's analysis parts
    (``cell_summary``, which marks them done, first), its ``sessions`` row (which marks the
    run done), its ``cells`` part and its clip stores. Inputs (``labels``) stay.
    """
    cohort, animal, session = key
    removed: list[Path] = []
    for table in _derived_tables(layout):
        if table in ANIMAL_TABLES:
            folder = layout.table_partition(table, cohort, animal, session).parent
            targets = sorted(folder.glob(f"*/{TABLE_PART_FILE}")) if folder.is_dir() else []
        else:
            targets = [layout.table_file(table, cohort, animal, session)]
        removed += [t for t in targets if _remove_part(t)]
    clips = layout.clips_dir(cohort, animal, session)
    for store in sorted(clips.glob("*.zarr")) if clips.is_dir() else []:
        remove_tree_quietly(store)
        removed.append(store)
    if removed:
        logger.info("%s/%s/%s: removed %d part(s) derived from its previous input", *key, len(removed))
    return removed


def cascade_new_input(layout: LakeLayout, key: tuple[str, str, str], *, store: Path) -> None:
    """Prepare the switch of a session to a new input: record ``store``'s checksums, drop derived parts.

    Call it after the new session store is in place and before the catalog row is
    switched to it, holding the lake's run lock.

    Parameters
    ----------
    layout
        The lake.
    key
        ``(cohort, animal, session)``.
    store
        The new session store (its checksums go into ``.cellsift-checksums.json`` inside it).
    """
    n = record_store(store)
    logger.debug("%s/%s/%s: recorded checksums of %d file(s) of %s", *key, n, store)
    invalidate_session(layout, key)


def _part_ok(path: Path) -> bool:
    state, _ = verify_file(path, full=True)
    if state == "unrecorded":
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowException):
            return False
        return True
    return state == "ok"


def derived_intact(layout: LakeLayout, key: tuple[str, str, str], *, clips_path: str) -> bool:
    """Whether a session's ``sessions`` and ``cells`` parts and its clip store ``clips_path`` are whole.

    Parts are compared with their recorded SHA-256 (or, unrecorded, must have a readable
    footer); a clip store must exist and, if its checksums were recorded, match them.
    """
    if not all(_part_ok(layout.table_file(t, *key)) for t in _RUN_PARTS):
        return False
    clips = layout.root / clips_path if clips_path else None
    if clips is None or not clips.is_dir():
        return False
    manifest = read_store_manifest(clips)
    return manifest is None or not verify_store(clips, manifest, full=True)


# --------------------------------------------------------------------------- cellsift check


@dataclass(frozen=True)
class Damage:
    """A damaged file: where, what is wrong, the command that repairs it."""

    path: Path
    detail: str
    repair: str
    key: tuple[str, str, str] | None = None
    source: bool = False


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check_lake`.

    Attributes
    ----------
    damage
        Every damaged file, sorted by path.
    n_files
        Files verified (store files and table parts).
    n_recorded
        Stores and parts written without checksums, validated by reading and recorded now.
    marked
        Sessions marked ``damaged`` in the catalog (their store or labels are damaged).
    """

    damage: tuple[Damage, ...]
    n_files: int
    n_recorded: int
    marked: tuple[tuple[str, str, str], ...]


def _read_whole_store(store: Path) -> str | None:
    """Read every chunk of every array of a zarr store; the first problem, or ``None``."""
    import zarr

    try:
        group = zarr.open_group(str(store), mode="r")
        for _name, arr in group.arrays():
            if arr.ndim == 0:
                arr[()]
                continue
            step = max(1, int(arr.chunks[0]))
            for start in range(0, int(arr.shape[0]), step):
                arr[start : start + step]  # decodes every chunk of the slab
    except Exception as exc:  # noqa: BLE001 - any failure to read is damage
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return None


def _check_store(
    store: Path, repair: str, key: tuple[str, str, str] | None, *, source: bool
) -> tuple[list[Damage], int, int]:
    if not store.is_dir():
        return [Damage(store, "store is missing", repair, key, source)], 0, 0
    manifest = read_store_manifest(store)
    if manifest is None:
        problem = _read_whole_store(store)
        if problem is not None:
            return [Damage(store, f"unreadable ({problem})", repair, key, source)], 0, 0
        return [], record_store(store, by=BY_CHECK), 1
    found = verify_store(store, manifest, full=True)
    return [Damage(p.path, p.detail, repair, key, source) for p in found], len(manifest["files"]), 0


def _check_part(
    path: Path, repair: str, key: tuple[str, str, str] | None, *, source: bool
) -> tuple[list[Damage], int]:
    state, detail = verify_file(path, full=True)
    if state in ("damaged", "missing"):
        return [Damage(path, detail, repair, key, source)], 0
    if state == "unrecorded":
        try:
            pf = pq.ParquetFile(path)
            for i in range(pf.num_row_groups):
                pf.read_row_group(i)
        except (OSError, pa.ArrowException) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [Damage(path, f"unreadable Parquet ({first})", repair, key, source)], 0
        record_file(path, by=BY_CHECK)
        return [], 1
    return [], 0


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with run_lock(root, run_id=f"check-{uuid.uuid4().hex[:12]}"):
        yield


def check_lake(root: Path | str, *, mark: bool = True) -> CheckReport:
    """Verify every file of a lake against its recorded checksums (``cellsift check``).

    Holds the lake's run lock, so no writer changes files while they are read.

    Parameters
    ----------
    root
        The lake.
    mark
        Mark sessions whose store or labels are damaged as ``damaged`` in the catalog, so
        ``cellsift run`` leaves them alone and ``cellsift ingest`` writes them again.

    Returns
    -------
    CheckReport
        Damaged files with the command that repairs each.

    Raises
    ------
    LakeError
        No lake at ``root``, or another run holds the lock.
    """
    catalog = Catalog(root)
    layout = catalog.layout
    damage: list[Damage] = []
    n_files = n_recorded = 0
    reingest = repair_command(SOURCE_TABLES[0], layout.root)
    rerun = repair_command("cells", layout.root)
    with _locked(layout.root):
        for rec in catalog.records():
            if rec.status == STATUS_FAILED or not rec.dataset_path:
                continue
            found, n, rec_n = _check_store(layout.root / rec.dataset_path, reingest, rec.key, source=True)
            damage += found
            n_files, n_recorded = n_files + n, n_recorded + rec_n
        clips_root = layout.root / "clips"
        for store in sorted(clips_root.glob("*/*/*/*.zarr")) if clips_root.is_dir() else []:
            c, a, s_ = store.relative_to(clips_root).parts[:3]
            found, n, rec_n = _check_store(store, rerun, (c, a, s_), source=False)
            damage += found
            n_files, n_recorded = n_files + n, n_recorded + rec_n
        tables = layout.root / "tables"
        for path in sorted(tables.rglob("*.parquet")) if tables.is_dir() else []:
            if path.name.startswith("."):
                continue
            table, key = part_key(layout, path)
            found, rec_n = _check_part(
                path, repair_command(table, layout.root), key, source=table in SOURCE_TABLES
            )
            damage += found
            n_files, n_recorded = n_files + 1, n_recorded + rec_n
        marked = _mark_sources(catalog, damage) if mark else []
    damage.sort(key=lambda d: str(d.path))
    return CheckReport(tuple(damage), n_files, n_recorded, tuple(marked))


def _mark_sources(catalog: Catalog, damage: list[Damage]) -> list[tuple[str, str, str]]:
    marked: list[tuple[str, str, str]] = []
    for d in damage:
        if not d.source or d.key is None or d.key in marked:
            continue
        rec = catalog.get(*d.key)
        if rec is None:
            continue
        try:
            rel = d.path.relative_to(catalog.root).as_posix()
        except ValueError:
            rel = str(d.path)
        error = f"damaged: {rel} ({d.detail}); re-ingest the session"
        catalog.mark(*d.key, status=STATUS_DAMAGED, error=error)
        marked.append(d.key)
        logger.info("%s/%s/%s marked damaged: %s", *d.key, d.detail)
    return marked
