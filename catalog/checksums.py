"""Checksums recorded when lake files are written, and their verification (``cellsift check``).

Two kinds of record, each written atomically beside or inside what it describes:

* a **table part** (``tables/<t>/<c>/<a>/<s>/part-0.parquet``) has a hidden sidecar
  ``.part-0.parquet.sha256.json`` with its SHA-256, size and modification time. The
  writer (:func:`cellsift.catalog.write_parquet_atomic`) writes the sidecar *before* it
  renames the new file into place and keeps the previous file's digest in it, so a crash
  between the two steps leaves a file that still matches the sidecar. Hidden files are
  ignored by pandas, pyarrow, Dask, polars and DuckDB readers of a table folder.
* a **zarr store** (session store, clip store) has ``.cellsift-checksums.json`` at its
  root listing every file of the store (chunks and metadata) with SHA-256 and size. It
  lives and dies with the store: a store replaced by a new one has no stale list.

A record made by a writer is authoritative (a mismatch is damage). A record made lazily
by ``cellsift check`` for a file written without one (an older lake, a writer that does
not record) is trusted only while the file keeps the modification time it had then; a
file rewritten since is validated again from its content and recorded anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "STORE_MANIFEST",
    "FileProblem",
    "file_digest",
    "record_file",
    "read_sidecar",
    "sidecar_path",
    "verify_file",
    "record_store",
    "note_store_files",
    "read_store_manifest",
    "verify_store",
]

#: The checksum list at the root of a zarr store.
STORE_MANIFEST: Final = ".cellsift-checksums.json"
#: Digests a writer took of the bytes it wrote into a store, before the list is recorded.
STORE_PENDING: Final = ".cellsift-checksums.pending.json"
#: Who made a record: the writer of the file (authoritative) or ``cellsift check`` (lazily).
BY_WRITER: Final = "writer"
BY_CHECK: Final = "check"

_BLOCK: Final = 1 << 20


@dataclass(frozen=True)
class FileProblem:
    """One damaged file: where it is and what is wrong, in a few words."""

    path: Path
    detail: str


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _write_json(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` as JSON through a temporary file and :func:`os.replace` (no half-written record)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- single files


def sidecar_path(path: Path) -> Path:
    """The hidden checksum sidecar of a table part: ``.<name>.sha256.json`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.sha256.json")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar record of ``path`` (``sha256``, ``size``, ...), or ``None`` if none is readable."""
    try:
        record = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "sha256" in record else None


def record_file(path: Path, *, staged: Path | None = None, by: str = BY_WRITER) -> None:
    """Record the checksum of a file in its sidecar (atomically).

    Parameters
    ----------
    path
        The file's final place.
    staged
        The new content, not yet renamed to ``path``: its digest is recorded and the
        digest of the file now at ``path`` is kept as ``previous``, so ``path`` matches the
        record both before and after the rename. ``None``: record ``path`` as it is.
    by
        ``"writer"`` (authoritative) or ``"check"`` (lazily recorded).
    """
    path = Path(path)
    source = Path(staged) if staged is not None else path
    digest, size = file_digest(source)
    record: dict[str, Any] = {
        "sha256": digest,
        "size": size,
        "recorded_at": _now(),
        "by": by,
        "mtime_ns": None if staged is not None else path.stat().st_mtime_ns,
    }
    if staged is not None:
        old = read_sidecar(path)
        if old is not None and path.exists():
            record["previous"] = {"sha256": old["sha256"], "size": old["size"]}
    _write_json(record, sidecar_path(path))


def verify_file(path: Path, *, full: bool = True) -> tuple[str, str]:
    """Compare a file with its sidecar.

    Parameters
    ----------
    path
        A recorded file.
    full
        Hash the content (else compare sizes only).

    Returns
    -------
    tuple
        ``(state, detail)``: ``"ok"``, ``"damaged"`` (detail says how), ``"missing"`` or
        ``"unrecorded"`` (no usable record: no sidecar, or a lazy record of a file rewritten since).
    """
    path = Path(path)
    if not path.is_file():
        return "missing", "file is missing"
    record = read_sidecar(path)
    if record is None:
        return "unrecorded", "no checksum recorded"
    stat = path.stat()
    if record.get("by") == BY_CHECK and record.get("mtime_ns") != stat.st_mtime_ns:
        return "unrecorded", "rewritten since its checksum was recorded"
    accepted = [(record["sha256"], int(record["size"]))]
    if isinstance(record.get("previous"), dict):
        accepted.append((record["previous"]["sha256"], int(record["previous"]["size"])))
    if stat.st_size not in {size for _, size in accepted}:
        return "damaged", f"{stat.st_size} bytes, {accepted[0][1]} recorded"
    if full:
        digest, _ = file_digest(path)
        if digest not in {d for d, _ in accepted}:
            return "damaged", "content differs from its recorded SHA-256"
    return "ok", ""


# --------------------------------------------------------------------------- zarr stores


def _store_files(store: Path) -> list[Path]:
    return sorted(
        p
        for p in store.rglob("*")
        if p.is_file()
        and p.name not in (STORE_MANIFEST, STORE_PENDING)
        and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _digests(paths: Iterable[Path], threads: int) -> list[tuple[str, int]]:
    paths = list(paths)
    if threads <= 1 or len(paths) < 8:
        return [file_digest(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:  # hashlib releases the GIL
        return list(pool.map(file_digest, paths))


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def note_store_files(store: Path, digests: dict[str, tuple[str, int, int]]) -> None:
    """Remember the digests of files a writer just wrote into a store, for :func:`record_store`.

    Parameters
    ----------
    store
        The store's root folder.
    digests
        ``{path relative to the store: (sha256 of the bytes written, size in bytes,
        modification time in ns right after writing)}``. :func:`record_store` takes a
        digest from here only while the file keeps that size and modification time, so
        it need not read the file back; others are hashed from their content.
    """
    store = Path(store)
    pending = _read_pending(store)
    pending.update({rel: [d, int(size), int(mtime)] for rel, (d, size, mtime) in digests.items()})
    _write_json({"files": pending}, store / STORE_PENDING)


def _read_pending(store: Path) -> dict[str, list[Any]]:
    try:
        record = json.loads((store / STORE_PENDING).read_text())
    except (OSError, ValueError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return files if isinstance(files, dict) else {}


def record_store(store: Path, *, by: str = BY_WRITER) -> int:
    """List every file of a zarr store with SHA-256 and size in ``STORE_MANIFEST``; return files listed.

    A file whose digest its writer noted (:func:`note_store_files`) and which still has
    the size and modification time it had then is not read again.
    """
    store = Path(store)
    files = _store_files(store)
    pending = _read_pending(store)
    listing: dict[str, list[Any]] = {}
    to_hash: list[tuple[str, Path]] = []
    for path in files:
        rel = path.relative_to(store).as_posix()
        noted = pending.get(rel)
        if isinstance(noted, list) and len(noted) == 3:
            stat = path.stat()
            if (int(noted[1]), int(noted[2])) == (stat.st_size, stat.st_mtime_ns):
                listing[rel] = [str(noted[0]), int(noted[1])]
                continue
        to_hash.append((rel, path))
    digests = _digests([p for _, p in to_hash], _threads())
    listing.update({rel: [d, s] for (rel, _), (d, s) in zip(to_hash, digests, strict=True)})
    _write_json(
        {"files": dict(sorted(listing.items())), "recorded_at": _now(), "by": by}, store / STORE_MANIFEST
    )
    (store / STORE_PENDING).unlink(missing_ok=True)
    return len(listing)


def read_store_manifest(store: Path) -> dict[str, Any] | None:
    """A store's checksum list (``files``: relative path -> [sha256, size]), or ``None``."""
    try:
        record = json.loads((Path(store) / STORE_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def verify_store(store: Path, manifest: dict[str, Any], *, full: bool = True) -> list[FileProblem]:
    """Damaged files of a recorded store: missing, a different size or (``full``) different content.

    Files the list does not name are not checked (zarr writes no file for a chunk that is
    all fill value, so a missing file the list names is always damage).
    """
    store = Path(store)
    problems: list[FileProblem] = []
    to_hash: list[tuple[Path, str]] = []
    for rel, (digest, size) in sorted(manifest["files"].items()):
        path = store / rel
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(FileProblem(path, "file is missing"))
            continue
        if actual != int(size):
            problems.append(FileProblem(path, f"{actual} bytes, {int(size)} recorded"))
        elif full:
            to_hash.append((path, str(digest)))
    if to_hash:
        got = _digests([p for p, _ in to_hash], _threads())
        problems += [
            FileProblem(p, "content differs from its recorded SHA-256")
            for (p, want), (have, _) in zip(to_hash, got, strict=True)
            if have != want
        ]
    return sorted(problems, key=lambda p: str(p.path))
