"""Build the analysis tables of a lake: ``traces``, ``events``, ``trial_responses``,
``cell_summary``, ``behaviour`` and ``cell_registry`` (``cellsift analyze``).

:func:`build_analysis_tables` plans which sessions need work, runs one task per
session through :func:`cellsift.pipeline.executor.run_sessions` (in this process, or one
Dask task per session when a client is given; :func:`.session.analyse_session` does
the work of one session), then brings every animal's ``cell_registry`` up to date
(:func:`.registration.build_registry`) and writes the run's provenance record
``LAKE/runs/analysis-<run_id>.json``.

Every file carries in its Parquet metadata (``cellsift.analysis_key``) a hash of what
it was computed from: the session's input hash, the bytes of its ``cells`` file (so a
new pipeline run or new classifier labels count), its labels, events and freezing
files, the parameters and :data:`~cellsift.pipeline.analysis.params.ANALYSIS_VERSION`.
A session whose ``cell_summary`` carries the current key (and whose other tables exist)
is skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellsift.catalog import STATUS_INGESTED, Catalog, LakeLayout, run_lock, write_json_atomic
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.analysis.params import ANALYSIS_VERSION, AnalysisParams
from cellsift.pipeline.analysis.registration import build_registry
from cellsift.pipeline.analysis.session import (
    ANALYZE_STAGE,
    SessionInputs,
    analyse_session,
    is_current,
    session_inputs,
)
from cellsift.pipeline.executor import (
    FAILED,
    PROCESSED,
    SKIPPED,
    SessionOutcome,
    count_status,
    failure_outcome,
    outcome_records,
    run_sessions,
)
from cellsift.pipeline.provenance import new_run_id, package_versions
from cellsift.schemas import CellsiftError, SessionKey

logger = logging.getLogger(__name__)

__all__ = ["AnalysisSummary", "build_analysis_tables"]

_DEFAULT_PARAMS = AnalysisParams()


@dataclass(frozen=True)
class AnalysisSummary:
    """Result of :func:`build_analysis_tables`.

    Attributes
    ----------
    run_id
        The analysis run's id.
    outcomes
        One :class:`~cellsift.pipeline.executor.SessionOutcome` per session (stage
        ``"analyze"``), sorted by session key; a processed session's ``details`` hold
        ``n_events``, ``n_trials``, ``n_good``, ``n_cs_plus_selective``,
        ``n_cs_minus_selective`` and ``has_behaviour``.
    record_path
        The run's provenance record.
    registry
        Status line of each animal's ``cell_registry`` (``"cohort/animal"`` keys).
    """

    run_id: str
    outcomes: tuple[SessionOutcome, ...]
    record_path: Path
    registry: dict[str, str] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return count_status(self.outcomes, FAILED)

    def count(self, status: str) -> int:
        """Number of sessions with ``status``."""
        return count_status(self.outcomes, status)

    def __str__(self) -> str:
        return (
            f"analysis {self.run_id}: {self.count(PROCESSED)} processed, {self.count(SKIPPED)} up to date, "
            f"{self.n_failed} failed"
        )


def _analyse_task(_context: None, payload: tuple[str, SessionInputs, AnalysisParams]) -> SessionOutcome:
    return analyse_session(*payload)


def _plan(
    catalog: Catalog, layout: LakeLayout, params: AnalysisParams, force: bool
) -> tuple[list[SessionInputs], list[SessionOutcome]]:
    """Sessions to analyse, and the outcomes of those that are up to date or cannot be planned."""
    todo: list[SessionInputs] = []
    outcomes: list[SessionOutcome] = []
    for rec in catalog.records(status=STATUS_INGESTED):
        key = SessionKey(rec.cohort, rec.animal, rec.session)
        try:
            inputs = session_inputs(layout, rec, params)
        except CellsiftError as exc:
            outcomes.append(failure_outcome(key, ANALYZE_STAGE, exc))
            continue
        if not force and is_current(layout, inputs):
            outcomes.append(
                SessionOutcome(
                    rec.cohort,
                    rec.animal,
                    rec.session,
                    status=SKIPPED,
                    stage=ANALYZE_STAGE,
                    n_units=rec.n_units,
                )
            )
        else:
            todo.append(inputs)
    return todo, outcomes


def build_analysis_tables(
    lake: Path,
    *,
    client: Any = None,
    params: AnalysisParams = _DEFAULT_PARAMS,
    force: bool = False,
) -> AnalysisSummary:
    """Build (or bring up to date) the analysis tables of every ingested session.

    Parameters
    ----------
    lake
        The lake folder; ``cellsift run`` must have written the ``cells`` table.
    client
        A connected ``distributed.Client``: one task per session on its workers (which
        must see the lake at the same path). ``None`` runs the sessions one after the
        other in this process.
    params
        Analysis parameters.
    force
        Recompute sessions whose tables are up to date.

    Returns
    -------
    AnalysisSummary
        Outcome per session and the path of the run record
        ``LAKE/runs/analysis-<run_id>.json``. A session that fails (bad events file,
        events outside the recording, no cells table) is reported with a one-line error;
        the others proceed.

    Raises
    ------
    LakeError
        If there is no lake at ``lake`` or another run holds its lock.
    """
    catalog = Catalog(lake)
    layout = catalog.layout
    layout.ensure()
    run_id = new_run_id()
    with run_lock(layout.root, run_id=run_id):
        started = utc_now()
        todo, outcomes = _plan(catalog, layout, params, force)
        logger.info(
            "analysis %s: %d session(s) to process, %d up to date",
            run_id,
            len(todo),
            count_status(outcomes, SKIPPED),
        )
        items = [(inputs.session_key, (str(layout.root), inputs, params)) for inputs in todo]
        outcomes += run_sessions(items, _analyse_task, stage=ANALYZE_STAGE, run_id=run_id, client=client)
        outcomes.sort(key=lambda o: (o.cohort, o.animal, o.session))
        registry, registry_outcomes = build_registry(
            layout, catalog.records(status=STATUS_INGESTED), params, run_id=run_id, client=client, force=force
        )
        record = {
            "run_id": run_id,
            "kind": "analysis",
            "started_at": started.isoformat(),
            "finished_at": utc_now().isoformat(),
            "analysis_version": ANALYSIS_VERSION,
            "params": params.as_dict(),
            "params_hash": params.params_hash(),
            "versions": package_versions(),
            "scheduler": getattr(getattr(client, "scheduler", None), "address", None),
            "status": "failed" if count_status(outcomes, FAILED) else "finished",
            "sessions": outcome_records(outcomes),
            "registry": registry,
            "registry_tasks": outcome_records(registry_outcomes),
        }
        record_path = layout.runs / f"analysis-{run_id}.json"
        write_json_atomic(record, record_path)
    summary = AnalysisSummary(
        run_id=run_id, outcomes=tuple(outcomes), record_path=record_path, registry=registry
    )
    logger.info("%s", summary)
    return summary
