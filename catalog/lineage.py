"""Lineage of a lake's table parts: which are current, stale (built from other inputs) or damaged.

Each session owns one Parquet part per table (``tables/<t>/<c>/<a>/<s>/part-0.parquet``).
What every derived part was built from is read from the parts themselves:

* ``sessions`` carries the ``input_hash`` (and ``params_hash``, ``run_id``) it was built
  from: it is **stale** when the catalog now holds another input for the session;
* ``cells`` carries the ``run_id`` of the run that wrote it: stale when its session's
  ``sessions`` row is stale or comes from another run;
* ``cell_summary`` carries ``cells_run_id`` and the cells' ``model_id``: stale when the
  ``cells`` part is missing, stale, or from another run or another classifier;
* the other analysis tables (``traces``, ``events``, ``trial_responses``, ``behaviour``)
  carry the analysis key (``cellsift.analysis_key`` in their Parquet metadata): stale
  when it differs from their ``cell_summary``'s, or when the ``cells`` part they came from
  is missing or stale;
* ``cell_registry`` (one key per animal) is stale when another session of the animal
  was ingested after it was written, or its key differs from the animal's newest part;
* ``labels`` is an input (written by ingest), never stale.

A part is stale only on positive evidence of another version; a part whose lineage
cannot be told (no ``sessions`` row, a session the catalog does not list) counts as
current. A part is **damaged** when its size differs from the one recorded when it was
written (:mod:`.checksums`) or its footer or lineage columns cannot be read.
``cellsift ingest`` removes a session's derived parts before it switches the catalog to
a new input (:func:`cellsift.catalog.invalidate_session`), so stale parts appear only in
lakes written before that, or after an interrupted run; readers (:class:`~.lake.Lake`)
hide them and say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog.checksums import read_sidecar, verify_file
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.store import STATUS_DAMAGED, STATUS_FAILED, SessionRecord
from cellsift.schemas import ANALYSIS_KEY, ANALYSIS_TABLES

__all__ = [
    "CURRENT",
    "STALE",
    "DAMAGED",
    "SOURCE_TABLES",
    "ANIMAL_TABLES",
    "Part",
    "part_key",
    "repair_command",
    "scan_parts",
]

CURRENT: Final = "current"
STALE: Final = "stale"
DAMAGED: Final = "damaged"

#: Tables written by ingest from the session's inputs (repaired by re-ingesting).
SOURCE_TABLES: Final = ("labels",)
#: Tables whose parts are computed per animal from all its sessions.
ANIMAL_TABLES: Final = ("cell_registry",)
#: Tables whose parts ``cellsift analyze`` rebuilds when they are unreadable (it checks
#: their key); a damaged part of another analysis table needs ``--force``.
_ANALYZE_CHECKS_KEY: Final = ("cell_summary", "cell_registry")
_SESSION_ANALYSIS: Final = tuple(t for t in ANALYSIS_TABLES if t not in ANIMAL_TABLES)
_COLUMNS: Final = {
    "sessions": ("input_hash", "params_hash", "run_id", "pipeline_version", "clips_path"),
    "cells": ("run_id", "model_id"),
    "cell_summary": ("cells_run_id", "model_id"),
}


@dataclass(frozen=True)
class Part:
    """One table part and what it was built from.

    Attributes
    ----------
    table, key, path
        Table name, ``(cohort, animal, session)`` (``None`` outside the plain layout), file.
    state, reason
        ``current``, ``stale`` or ``damaged``, and why (empty when current).
    input_hash, params_hash, run_id
        The session input, pipeline parameters and run the part derives from, when known.
    analysis_key
        The analysis key in the file's metadata (analysis tables).
    """

    table: str
    key: tuple[str, str, str] | None
    path: Path
    state: str = CURRENT
    reason: str = ""
    input_hash: str | None = None
    params_hash: str | None = None
    run_id: str | None = None
    analysis_key: str | None = None
    values: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def repair_command(table: str, root: Path | str) -> str:
    """The command that rebuilds a damaged or stale part of ``table`` in the lake ``root``."""
    if table in SOURCE_TABLES:
        return f"cellsift ingest SOURCE --lake {root}"
    if table in ANALYSIS_TABLES:
        force = "" if table in _ANALYZE_CHECKS_KEY else " --force"
        return f"cellsift analyze --lake {root}{force}"
    return f"cellsift run --lake {root}"


def part_key(layout: LakeLayout, path: Path) -> tuple[str, tuple[str, str, str] | None]:
    """``(table, (cohort, animal, session))`` of a part from its place (key ``None`` if not plain)."""
    rel = Path(path).relative_to(layout.root / "tables").parts
    if len(rel) == 5 and "=" not in "".join(rel[1:4]):
        return rel[0], (rel[1], rel[2], rel[3])
    return rel[0], None


def _written_at(path: Path) -> datetime:
    record = read_sidecar(path)
    if record is not None and record.get("by") == "writer":
        try:
            return datetime.fromisoformat(str(record["recorded_at"]))
        except ValueError:
            pass
    return datetime.fromtimestamp(os.stat(path).st_mtime, tz=UTC)


def _read(path: Path, table: str) -> tuple[str | None, dict[str, Any]]:
    """The analysis key and the lineage columns' values of a part (raises if unreadable)."""
    pf = pq.ParquetFile(path)
    meta = pf.schema_arrow.metadata or {}
    key = meta.get(ANALYSIS_KEY)
    wanted = [c for c in _COLUMNS.get(table, ()) if c in pf.schema_arrow.names]
    values: dict[str, Any] = {}
    if wanted:
        data = pf.read(columns=wanted)
        if table == "sessions":
            rows = data.to_pylist()
            values = rows[0] if rows else {}
        else:
            values = {c: frozenset(v for v in data.column(c).unique().to_pylist() if v) for c in wanted}
            if "model_id" in wanted:
                values["model_id_nulls"] = data.column("model_id").null_count
    return (key.decode() if key else None), values


def _quick_damage(path: Path) -> str | None:
    state, detail = verify_file(path, full=False)
    return detail if state in ("damaged", "missing") else None


def _load(layout: LakeLayout) -> list[Part]:
    tables = layout.root / "tables"
    parts: list[Part] = []
    if not tables.is_dir():
        return parts
    for path in sorted(tables.rglob("*.parquet")):
        if path.name.startswith("."):
            continue
        table, key = part_key(layout, path)
        detail = _quick_damage(path)
        if detail is not None:
            parts.append(Part(table, key, path, DAMAGED, detail))
            continue
        try:
            akey, values = _read(path, table)
        except (OSError, pa.ArrowException) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            parts.append(Part(table, key, path, DAMAGED, f"unreadable Parquet ({first})"))
            continue
        parts.append(Part(table, key, path, analysis_key=akey, values=values))
    return parts


def _short(value: object) -> str:
    return str(value)[:12] if value else "?"


def _judge_sessions(part: Part, rec: SessionRecord | None) -> Part:
    v = part.values
    lineage = {
        "input_hash": v.get("input_hash"),
        "params_hash": v.get("params_hash"),
        "run_id": v.get("run_id"),
    }
    if rec is not None and v.get("input_hash") and rec.input_hash and v["input_hash"] != rec.input_hash:
        reason = f"built from input {_short(v['input_hash'])}, the catalog now has {_short(rec.input_hash)}"
        return _with(part, STALE, reason, **lineage)
    return _with(part, CURRENT, "", **lineage)


def _with(part: Part, state: str, reason: str, **lineage: Any) -> Part:
    return Part(
        part.table,
        part.key,
        part.path,
        state,
        reason,
        lineage.get("input_hash", part.input_hash),
        lineage.get("params_hash", part.params_hash),
        lineage.get("run_id", part.run_id),
        part.analysis_key,
        part.values,
    )


def _upstream(part: Part, up: Part | None, name: str) -> Part | None:
    """``part`` marked stale when its upstream part ``up`` is stale (else ``None``).

    A damaged upstream part does not make ``part`` stale: it was built before the damage.
    """
    if up is not None and up.state == STALE:
        return _with(part, STALE, f"its {name} part is {up.state}")
    return None


def _judge_cells(part: Part, sessions: Part | None) -> Part:
    if sessions is None:
        return part  # lineage unknown (first run interrupted before its sessions row)
    stale = _upstream(part, sessions, "sessions")
    lineage = {
        "input_hash": sessions.input_hash,
        "params_hash": sessions.params_hash,
        "run_id": sessions.run_id,
    }
    if stale is not None:
        return _with(stale, STALE, stale.reason, **lineage)
    runs = part.values.get("run_id") or frozenset()
    if runs and sessions.run_id and runs != {sessions.run_id}:
        reason = f"written by run {', '.join(sorted(runs))}, its sessions row by run {sessions.run_id}"
        return _with(part, STALE, reason, **lineage)
    return _with(part, CURRENT, "", **lineage)


def _judge_summary(part: Part, cells: Part | None) -> Part:
    if cells is None:
        return _with(part, STALE, "its cells part is missing")
    lineage = {"input_hash": cells.input_hash, "params_hash": cells.params_hash, "run_id": cells.run_id}
    stale = _upstream(part, cells, "cells")
    if stale is not None:
        return _with(stale, STALE, stale.reason, **lineage)
    have, want = part.values.get("cells_run_id") or frozenset(), cells.values.get("run_id") or frozenset()
    if have and want and have != want:
        reason = (
            f"built from cells of run {', '.join(sorted(have))}, cells now from run {', '.join(sorted(want))}"
        )
        return _with(part, STALE, reason, **lineage)
    models, now = part.values.get("model_id") or frozenset(), cells.values.get("model_id") or frozenset()
    if models != now:
        reason = f"built from cells classified by {', '.join(sorted(models)) or 'no model'}, now by " + (
            ", ".join(sorted(now)) or "no model"
        )
        return _with(part, STALE, reason, **lineage)
    return _with(part, CURRENT, "", **lineage)


def _judge_analysis(part: Part, summary: Part | None, cells: Part | None) -> Part:
    up = summary if summary is not None else cells
    if up is None:
        return _with(part, STALE, "its cells part is missing")
    lineage = {"input_hash": up.input_hash, "params_hash": up.params_hash, "run_id": up.run_id}
    stale = _upstream(part, up, "cell_summary" if summary is not None else "cells")
    if stale is not None:
        return _with(stale, STALE, stale.reason, **lineage)
    if (
        summary is not None
        and part.analysis_key
        and summary.analysis_key
        and part.analysis_key != summary.analysis_key
    ):
        return _with(part, STALE, "computed with other inputs than its cell_summary part", **lineage)
    return _with(part, CURRENT, "", **lineage)


def _judge_registry(parts: list[Part], records: dict[tuple[str, str, str], SessionRecord]) -> list[Part]:
    """Registry parts of one animal."""
    newest = max(parts, key=lambda p: _written_at(p.path))
    out = []
    for part in parts:
        written = _written_at(part.path)
        later = [
            r.session
            for r in records.values()
            if part.key is not None
            and (r.cohort, r.animal) == part.key[:2]
            and r.status not in (STATUS_FAILED, STATUS_DAMAGED)
            and r.updated_at
            and datetime.fromisoformat(r.updated_at) > written
        ]
        if later:
            out.append(
                _with(part, STALE, f"session {later[0]} of the animal was ingested after it was written")
            )
        elif part.analysis_key and newest.analysis_key and part.analysis_key != newest.analysis_key:
            out.append(_with(part, STALE, "registered with other sessions than the animal's newest part"))
        else:
            out.append(part)
    return out


def scan_parts(layout: LakeLayout, records: Iterable[SessionRecord]) -> list[Part]:
    """Every table part of the lake with its state (current, stale, damaged) and lineage.

    Parameters
    ----------
    layout
        The lake.
    records
        The catalog's records (what each session's input is now).

    Returns
    -------
    list of Part
        Sorted by table and key. Reads each part's footer and a few lineage columns.
    """
    by_key = {r.key: r for r in records}
    loaded = _load(layout)
    index = {(p.table, p.key): p for p in loaded if p.key is not None}
    judged: dict[tuple[str, tuple[str, str, str] | None, Path], Part] = {}

    def put(p: Part) -> None:
        judged[(p.table, p.key, p.path)] = p
        if p.key is not None:
            index[(p.table, p.key)] = p

    for p in loaded:
        if p.table == "sessions" and p.state != DAMAGED and p.key is not None:
            put(_judge_sessions(p, by_key.get(p.key)))
    for p in loaded:
        if p.table == "cells" and p.state != DAMAGED and p.key is not None:
            put(_judge_cells(p, index.get(("sessions", p.key))))
    for p in loaded:
        if p.table == "cell_summary" and p.state != DAMAGED and p.key is not None:
            put(_judge_summary(p, index.get(("cells", p.key))))
    animals: dict[tuple[str, str], list[Part]] = {}
    for p in loaded:
        if p.state == DAMAGED or p.key is None or (p.table, p.key, p.path) in judged:
            continue
        if p.table in _SESSION_ANALYSIS:
            put(_judge_analysis(p, index.get(("cell_summary", p.key)), index.get(("cells", p.key))))
        elif p.table in ANIMAL_TABLES:
            animals.setdefault(p.key[:2], []).append(p)
    for group in animals.values():
        for p in _judge_registry(group, by_key):
            put(p)
    out = [judged.get((p.table, p.key, p.path), p) for p in loaded]
    return sorted(out, key=lambda p: (p.table, p.key or ("", "", ""), str(p.path)))
