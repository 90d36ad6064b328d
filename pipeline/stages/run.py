"""``cellsift run``: plan which sessions need processing, then run one Dask graph per session.

Sessions whose ``sessions`` row already matches their input hash, parameters and
pipeline version are skipped, so a re-run after a crash resumes where it stopped and,
since every session owns exactly one Parquet file per table that is replaced
atomically, never duplicates rows. The graph of one session is built by
:mod:`cellsift.pipeline.stages.graph`; the fan-out over sessions and the failure
convention are :mod:`cellsift.pipeline.executor`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog import (
    STATUS_INGESTED,
    Catalog,
    LakeLayout,
    SessionRecord,
    derived_intact,
    remove_tree_quietly,
    run_lock,
    write_json_atomic,
)
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.executor import (
    FAILED,
    SKIPPED,
    SessionOutcome,
    count_status,
    outcome_records,
    run_session_graphs,
)
from cellsift.pipeline.provenance import host_info, new_run_id, package_versions
from cellsift.pipeline.stages.graph import session_graph, session_key
from cellsift.pipeline.stages.params import PipelineParams
from cellsift.schemas import PIPELINE_VERSION

logger = logging.getLogger(__name__)

__all__ = ["RunSummary", "plan_run", "run_pipeline"]


@dataclass(frozen=True)
class RunSummary:
    """The result of :func:`run_pipeline`."""

    run_id: str
    outcomes: tuple[SessionOutcome, ...]
    record_path: Path

    @property
    def n_failed(self) -> int:
        return count_status(self.outcomes, FAILED)

    def count(self, status: str) -> int:
        """Number of sessions with ``status``."""
        return count_status(self.outcomes, status)


# ---------------------------------------------------------------------------
# planning


def _current_session_row(layout: LakeLayout, rec: SessionRecord) -> dict[str, Any] | None:
    path = layout.table_file("sessions", rec.cohort, rec.animal, rec.session)
    if not path.exists():
        return None
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowInvalid):
        logger.warning("unreadable sessions row %s: the session will be processed again", path)
        return None
    return rows[0] if rows else None


def plan_run(
    catalog: Catalog, params: PipelineParams, *, force: bool = False
) -> tuple[list[SessionRecord], list[SessionRecord]]:
    """Split the catalog's ingested sessions into (to process, already up to date)."""
    todo: list[SessionRecord] = []
    done: list[SessionRecord] = []
    params_hash = params.params_hash()
    for rec in catalog.records(status=STATUS_INGESTED):
        row = None if force else _current_session_row(catalog.layout, rec)
        current = (
            row is not None
            and row.get("input_hash") == rec.input_hash
            and row.get("params_hash") == params_hash
            and row.get("pipeline_version") == PIPELINE_VERSION
            and derived_intact(catalog.layout, rec.key, clips_path=str(row.get("clips_path") or ""))
        )
        (done if current else todo).append(rec)
    return todo, done


def run_pipeline(
    lake: Path,
    *,
    client: Any,
    params: PipelineParams | None = None,
    force: bool = False,
    progress: Callable[[Sequence[Any]], None] | None = None,
) -> RunSummary:
    """Process every ingested session of ``lake`` that is not up to date.

    Parameters
    ----------
    lake
        The lake folder.
    client
        A connected ``distributed.Client`` (local cluster or remote scheduler). Workers
        must see the lake at the same path (a shared file system on a cluster).
    params
        Pipeline parameters; defaults if ``None``.
    force
        Process every session even if its results are current.
    progress
        Called with the list of futures once submitted (e.g. ``distributed.progress``);
        it may block until they finish.

    Returns
    -------
    RunSummary
        Per-session outcomes and the path of the provenance record ``runs/<run_id>.json``.
    """
    params = params or PipelineParams()
    catalog = Catalog(lake)
    layout = catalog.layout
    layout.ensure()
    run_id = new_run_id()
    with run_lock(layout.root, run_id=run_id):
        for stale in layout.tmp.glob("clips-*"):
            # staging left by a killed run; the lock guarantees no run is using it
            remove_tree_quietly(stale)
        return _run_locked(
            catalog, client=client, params=params, force=force, run_id=run_id, progress=progress
        )


def _run_locked(
    catalog: Catalog,
    *,
    client: Any,
    params: PipelineParams,
    force: bool,
    run_id: str,
    progress: Callable[[Sequence[Any]], None] | None,
) -> RunSummary:
    layout = catalog.layout
    todo, done = plan_run(catalog, params, force=force)
    started_at = utc_now()
    record: dict[str, Any] = {
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "pipeline_version": PIPELINE_VERSION,
        "params": params.as_dict(),
        "params_hash": params.params_hash(),
        "versions": package_versions(),
        "host": host_info(),
        "scheduler": getattr(getattr(client, "scheduler", None), "address", None),
        "inputs": {f"{r.cohort}/{r.animal}/{r.session}": r.input_hash for r in todo + done},
        "status": "running",
    }
    record_path = layout.runs / f"{run_id}.json"
    write_json_atomic(record, record_path)
    logger.info("run %s: %d session(s) to process, %d up to date", run_id, len(todo), len(done))

    outcomes: list[SessionOutcome] = [
        SessionOutcome(r.cohort, r.animal, r.session, status=SKIPPED, stage="run", n_units=r.n_units)
        for r in done
    ]
    graphs = [
        (session_key(rec), session_graph(layout, rec, params, run_id=run_id, n_units=rec.n_units))
        for rec in todo
    ]
    outcomes += run_session_graphs(graphs, stage="run", client=client, progress=progress)
    for leftover in layout.tmp.glob(f"clips-{run_id}-*"):
        remove_tree_quietly(leftover)
    outcomes.sort(key=lambda o: (o.cohort, o.animal, o.session))
    record.update(
        finished_at=utc_now().isoformat(),
        status="failed" if count_status(outcomes, FAILED) else "finished",
        sessions=outcome_records(outcomes),
    )
    write_json_atomic(record, record_path)
    return RunSummary(run_id=run_id, outcomes=tuple(outcomes), record_path=record_path)
