"""What in a lake is out of date, and the commands that bring it up to date (``cellsift status``).

Per session, in pipeline order: ingest (failed or damaged), run (not run, run with other
inputs or another pipeline version, ``cells`` or ``sessions`` part damaged or stale, clip
store missing), classification (cells not scored by the current model), analysis (not
analysed, analysis tables older than ``cells``, damaged, missing) and the cross-day
registry. The lineage of every part comes from :func:`cellsift.catalog.lineage.scan_parts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cellsift.catalog.lineage import (
    ANIMAL_TABLES,
    CURRENT,
    DAMAGED,
    SOURCE_TABLES,
    Part,
    repair_command,
    scan_parts,
)
from cellsift.catalog.store import STATUS_DAMAGED, STATUS_FAILED, Catalog, SessionRecord
from cellsift.schemas import ANALYSIS_TABLES, PIPELINE_VERSION

__all__ = ["StatusItem", "LakeStatus", "lake_status"]

_INGEST, _RUN, _ANALYZE = 0, 1, 2
_SESSION_ANALYSIS: Final = tuple(t for t in ANALYSIS_TABLES if t not in ANIMAL_TABLES)


@dataclass(frozen=True)
class StatusItem:
    """One thing out of date.

    Attributes
    ----------
    key
        ``(cohort, animal, session)``, or ``None`` for the lake as a whole.
    problem
        What is out of date, in a few words.
    command
        The command that brings it up to date.
    step
        Its place in the pipeline (0 ingest, 1 run, 2 analyze): commands run in that order.
    """

    key: tuple[str, str, str] | None
    problem: str
    command: str
    step: int


@dataclass(frozen=True)
class LakeStatus:
    """The result of :func:`lake_status`: items out of date and notes (not out of date, worth knowing)."""

    root: Path
    items: tuple[StatusItem, ...]
    notes: tuple[StatusItem, ...]
    n_sessions: int
    uses_analysis: bool = False
    run_command: str = ""

    @property
    def up_to_date(self) -> bool:
        return not self.items

    def command(self) -> str:
        """The one command line that brings the lake up to date (``&&``-joined steps, in order)."""
        chosen: dict[int, str] = {}
        for item in sorted(self.items, key=lambda i: (i.step, len(i.command))):
            chosen[item.step] = item.command  # the longest (e.g. with --force) of a step wins
        # what ingest writes must be run, and what run writes analysed (when the lake is analysed)
        if _INGEST in chosen:
            chosen.setdefault(_RUN, self.run_command or f"cellsift run --lake {self.root}")
        if _RUN in chosen and self.uses_analysis:
            chosen.setdefault(_ANALYZE, f"cellsift analyze --lake {self.root}")
        return " && ".join(chosen[s] for s in sorted(chosen))


class _Collector:
    def __init__(self, root: Path, run_command: str) -> None:
        self.root = root
        self.run_command = run_command
        self.items: list[StatusItem] = []
        self.notes: list[StatusItem] = []

    def add(
        self, key: tuple[str, str, str] | None, problem: str, step: int, command: str | None = None
    ) -> None:
        if command is None:
            command = {
                _INGEST: repair_command(SOURCE_TABLES[0], self.root),
                _RUN: self.run_command,
                _ANALYZE: f"cellsift analyze --lake {self.root}",
            }[step]
        self.items.append(StatusItem(key, problem, command, step))

    def note(self, key: tuple[str, str, str] | None, text: str) -> None:
        self.notes.append(StatusItem(key, text, "", -1))


def _step_of(table: str) -> int:
    if table in SOURCE_TABLES:
        return _INGEST
    return _ANALYZE if table in ANALYSIS_TABLES else _RUN


def _run_problem(
    rec: SessionRecord, parts: dict[tuple[str, tuple[str, str, str]], Part], root: Path
) -> str | None:
    """Why the session needs ``cellsift run`` (``""``: a damaged part, listed already), or ``None``."""
    sess, cells = parts.get(("sessions", rec.key)), parts.get(("cells", rec.key))
    if sess is None:
        return "ingested, not run"
    if DAMAGED in (sess.state, getattr(cells, "state", None)):
        return ""
    if sess.state != CURRENT:
        return f"sessions part {sess.state} ({sess.reason})"
    version = sess.values.get("pipeline_version")
    if version and version != PIPELINE_VERSION:
        return f"run by pipeline {version}, this cellsift is {PIPELINE_VERSION}"
    if cells is None:
        return "cells part missing"
    if cells.state != CURRENT:
        return f"cells part {cells.state} ({cells.reason})"
    clips = sess.values.get("clips_path")
    if clips and not (root / str(clips)).is_dir():
        return f"clip store {clips} missing"
    return None


def _analysis_problems(
    key: tuple[str, str, str], parts: dict[tuple[str, tuple[str, str, str]], Part]
) -> list[str]:
    summary = parts.get(("cell_summary", key))
    if summary is None:
        return ["run, not analysed"]
    if summary.state != CURRENT:  # damaged: listed already; stale: its other tables are too
        return [] if summary.state == DAMAGED else [f"analysis older than cells ({summary.reason})"]
    out = []
    for table in (*_SESSION_ANALYSIS, *ANIMAL_TABLES):
        part = parts.get((table, key))
        if part is None:
            out.append(f"{table} part missing")
        elif part.state not in (CURRENT, DAMAGED) and table != "cell_summary":
            out.append(f"{table} part {part.state} ({part.reason})")
    return out  # damaged parts are listed already


def lake_status(
    root: Path | str,
    *,
    params_hash: str | None = None,
    model_id: str | None = None,
    run_command: str | None = None,
) -> LakeStatus:
    """List what is out of date in a lake.

    Parameters
    ----------
    root
        The lake.
    params_hash
        The pipeline parameters' hash of a default ``cellsift run``: sessions run with
        others are noted (not out of date: they may have been meant).
    model_id
        The classifier ``cellsift run`` applies: sessions whose cells it has not scored
        are out of date (``None``: not checked).
    run_command
        The ``cellsift run`` command to suggest (default ``cellsift run --lake ROOT``).

    Returns
    -------
    LakeStatus
        Items out of date (each with its command), notes, and the one command line.
    """
    catalog = Catalog(root)
    lake = catalog.root
    records = catalog.records()
    found = scan_parts(catalog.layout, records)
    parts = {(p.table, p.key): p for p in found if p.key is not None}
    out = _Collector(lake, run_command or f"cellsift run --lake {lake}")
    for p in found:
        if p.state == DAMAGED:
            out.add(
                p.key,
                f"{p.table} part damaged ({p.reason})",
                _step_of(p.table),
                repair_command(p.table, root),
            )
    _session_items(records, parts, out, params_hash=params_hash, model_id=model_id)
    known = {r.key for r in records}
    orphans = sorted({p.key for p in found if p.key is not None and p.key not in known})
    for key in orphans:
        out.note(key, "has table parts but no catalog row (not checked against its input)")
    uses_analysis = any(p.table in ANALYSIS_TABLES for p in found)
    return LakeStatus(lake, tuple(out.items), tuple(out.notes), len(records), uses_analysis, out.run_command)


def _session_items(
    records: Sequence[SessionRecord],
    parts: dict[tuple[str, tuple[str, str, str]], Part],
    out: _Collector,
    *,
    params_hash: str | None,
    model_id: str | None,
) -> None:
    for rec in records:
        if rec.status == STATUS_FAILED:
            out.add(rec.key, f"ingest failed: {rec.error}", _INGEST)
            continue
        if rec.status == STATUS_DAMAGED:
            out.add(rec.key, rec.error or "session store damaged", _INGEST)
            continue
        problem = _run_problem(rec, parts, out.root)
        if problem is not None:
            if problem:
                out.add(rec.key, problem, _RUN)
            continue
        sess, cells = parts[("sessions", rec.key)], parts[("cells", rec.key)]
        if params_hash and sess.params_hash and sess.params_hash != params_hash:
            out.note(rec.key, f"run with non-default parameters (params {str(sess.params_hash)[:12]})")
        models = cells.values.get("model_id") or frozenset()
        if model_id is not None and (models != {model_id} or cells.values.get("model_id_nulls")):
            have = ", ".join(sorted(models)) or "no model"
            out.add(rec.key, f"cells not scored by {model_id} (now: {have})", _RUN)
        for problem in _analysis_problems(rec.key, parts):
            out.add(rec.key, problem, _ANALYZE)
