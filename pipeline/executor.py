"""One executor for per-session work: in-process or one Dask task (or graph) per session.

``cellsift run``, the classification of a lake and ``cellsift analyze`` all fan out over
sessions the same way, so they share this module (the role SpikeInterface's
``ChunkRecordingExecutor`` plays there):

* :func:`run_sessions` calls ``func(context, payload)`` once per session, where
  ``context`` comes from an optional per-worker ``init(*init_args)`` that runs once per
  worker process and key (load a model once, score many sessions);
* :func:`run_session_graphs` computes one ready-made Dask graph per session;
* both return one :class:`SessionOutcome` per session, in the order given, with the same
  failure fields whatever went wrong: a :class:`~cellsift.schemas.CellsiftError` becomes its
  one-line message; an unexpected exception becomes one line naming the session and the
  stage, and its traceback goes into :attr:`SessionOutcome.traceback` for the run's
  provenance record (never to the terminal). One failed session never stops the others.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback as tb
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cellsift.schemas import CellsiftError, SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "FAILED",
    "PROCESSED",
    "SKIPPED",
    "SessionOutcome",
    "clear_worker_contexts",
    "count_status",
    "failure_outcome",
    "outcome_records",
    "run_session_graphs",
    "run_sessions",
]

PROCESSED: Final = "processed"
SKIPPED: Final = "skipped"
FAILED: Final = "failed"

#: Per-worker contexts by key, most recently used last; at most :data:`MAX_WORKER_CONTEXTS`.
_CONTEXTS: OrderedDict[str, Any] = OrderedDict()
#: Contexts (e.g. loaded models) a worker process keeps before it drops the least recently used.
MAX_WORKER_CONTEXTS: Final = 4
_CONTEXTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SessionOutcome:
    """What happened to one session in one stage.

    Parameters
    ----------
    cohort, animal, session
        The session's full key.
    status
        ``"processed"``, ``"skipped"`` (already up to date) or ``"failed"``.
    stage
        The stage that produced the outcome (``"run"``, ``"classify"``, ``"analyze"``, ...).
    n_units
        Units (candidate cells) of the session.
    error
        One line for people: what failed and, where known, the fix.
    error_type
        The exception's class name (empty when nothing failed).
    traceback
        The full traceback of an unexpected exception, for the provenance record.
    duration_s
        Wall time of the session's work (s).
    details
        Stage-specific counts (e.g. ``n_overlap_flagged``, ``n_events``), JSON-able.
    value
        The task's result when it is data rather than a count (e.g. a predictions
        DataFrame); not written to provenance.
    """

    cohort: str
    animal: str
    session: str
    status: str
    stage: str = ""
    n_units: int = 0
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    duration_s: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)
    value: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> SessionKey:
        """The session's :class:`~cellsift.schemas.SessionKey`."""
        return SessionKey(self.cohort, self.animal, self.session)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def detail(self, name: str, default: Any = 0) -> Any:
        """A stage-specific count from :attr:`details`."""
        return self.details.get(name, default)

    def as_record(self) -> dict[str, Any]:
        """JSON-able form for a provenance record (without :attr:`value`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "value"}
        out["details"] = dict(self.details)
        return out


def count_status(outcomes: Sequence[SessionOutcome], status: str) -> int:
    """Number of outcomes with ``status``."""
    return sum(o.status == status for o in outcomes)


def outcome_records(outcomes: Sequence[SessionOutcome]) -> list[dict[str, Any]]:
    """Provenance form of ``outcomes``, sorted by session key."""
    return [o.as_record() for o in sorted(outcomes, key=lambda o: (o.cohort, o.animal, o.session))]


def failure_outcome(
    key: SessionKey, stage: str, exc: BaseException, *, traceback: str = "", duration_s: float = 0.0
) -> SessionOutcome:
    """The outcome of a session whose ``stage`` raised ``exc``; logs one line.

    A :class:`~cellsift.schemas.CellsiftError` gives its own one-line message; any other
    exception (a bug, or a library error cellsift did not anticipate) gives
    ``"<stage> failed unexpectedly: <Type>: <message>"`` and keeps the traceback.
    """
    if isinstance(exc, CellsiftError):
        message = exc.one_line()
    else:
        text = " ".join(str(exc).split())
        message = f"{stage} failed unexpectedly: {type(exc).__name__}" + (f": {text}" if text else "")
        message += " (traceback in the run's provenance record)"
        if not traceback:
            traceback = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    logger.error("%s: %s", key.label, message)
    return SessionOutcome(
        key.cohort,
        key.animal,
        key.session,
        status=FAILED,
        stage=stage,
        error=message,
        error_type=type(exc).__name__,
        traceback=traceback,
        duration_s=duration_s,
    )


def _worker_context(init_key: str, init: Callable[..., Any] | None, init_args: tuple[Any, ...]) -> Any:
    if init is None:
        return None
    with _CONTEXTS_LOCK:
        if init_key in _CONTEXTS:
            _CONTEXTS.move_to_end(init_key)
        else:
            _CONTEXTS[init_key] = init(*init_args)
            while len(_CONTEXTS) > MAX_WORKER_CONTEXTS:
                _CONTEXTS.popitem(last=False)
        return _CONTEXTS[init_key]


def clear_worker_contexts() -> None:
    """Forget every per-worker context of this process (tests; a changed model file)."""
    with _CONTEXTS_LOCK:
        _CONTEXTS.clear()


def _session_task(
    key: SessionKey,
    stage: str,
    func: Callable[[Any, Any], Any],
    payload: Any,
    init_key: str,
    init: Callable[..., Any] | None,
    init_args: tuple[Any, ...],
) -> SessionOutcome:
    """Run one session's ``func`` where it is scheduled; never raises."""
    started = time.perf_counter()
    try:
        context = _worker_context(init_key, init, init_args)
        result = func(context, payload)
    except Exception as exc:  # one bad session must not stop the cohort
        return failure_outcome(key, stage, exc, duration_s=time.perf_counter() - started)
    return _as_outcome(key, stage, result, duration_s=time.perf_counter() - started)


def _as_outcome(key: SessionKey, stage: str, result: Any, *, duration_s: float = 0.0) -> SessionOutcome:
    """A task's result as the session's outcome: its own, completed, or a ``processed`` one holding it."""
    if not isinstance(result, SessionOutcome):
        return SessionOutcome(
            key.cohort,
            key.animal,
            key.session,
            status=PROCESSED,
            stage=stage,
            duration_s=duration_s,
            value=result,
        )
    changes: dict[str, Any] = {}
    if not result.stage:
        changes["stage"] = stage
    if not result.duration_s and duration_s:
        changes["duration_s"] = duration_s
    return dataclasses.replace(result, **changes) if changes else result


def run_sessions(
    items: Sequence[tuple[SessionKey, Any]],
    func: Callable[[Any, Any], Any],
    *,
    stage: str,
    run_id: str,
    client: Any = None,
    init: Callable[..., Any] | None = None,
    init_args: tuple[Any, ...] = (),
    init_key: str = "",
    resources: Mapping[str, float] | None = None,
    progress: Callable[[Sequence[Any]], None] | None = None,
) -> list[SessionOutcome]:
    """Run ``func(context, payload)`` once per session; one outcome per session, in order.

    Parameters
    ----------
    items
        ``(key, payload)`` per session; ``payload`` must be picklable when ``client`` is set.
    func
        Module-level function ``func(context, payload)``. It returns a
        :class:`SessionOutcome` (its counts) or any other value (kept in
        :attr:`SessionOutcome.value`); it may raise.
    stage
        Name of the stage, for outcomes, error lines and Dask task keys.
    run_id
        The run's id (part of every task key, so two runs never share a key).
    client
        A connected ``distributed.Client``: one task per session on its workers. ``None``:
        in this process, one session after the other.
    init, init_args, init_key
        Per-worker initialisation: ``init(*init_args)`` runs once per worker process and
        ``init_key`` (e.g. a model folder and its card hash), and its result is passed
        to ``func`` as ``context``.
    resources
        Dask worker resources each task needs (e.g. ``{"GPU": 1}``).
    progress
        Called with the submitted futures (e.g. ``distributed.progress``); may block.

    Returns
    -------
    list of SessionOutcome
        In the order of ``items``.
    """
    key_of_init = init_key or (f"{getattr(init, '__module__', '')}.{getattr(init, '__qualname__', '')}")
    if client is None:
        return [_session_task(k, stage, func, p, key_of_init, init, init_args) for k, p in items]
    if not items:
        return []
    from distributed import wait

    futures = [
        client.submit(
            _session_task,
            k,
            stage,
            func,
            p,
            key_of_init,
            init,
            init_args,
            key=k.task_key(stage, run_id),
            pure=False,
            resources=dict(resources) if resources else None,
        )
        for k, p in items
    ]
    if progress is not None:
        progress(futures)
    wait(futures)
    return [_collect(k, stage, fut) for (k, _), fut in zip(items, futures, strict=True)]


def run_session_graphs(
    graphs: Sequence[tuple[SessionKey, Any]],
    *,
    stage: str,
    client: Any,
    progress: Callable[[Sequence[Any]], None] | None = None,
) -> list[SessionOutcome]:
    """Compute one Dask graph (a ``Delayed``) per session; one outcome per session, in order.

    Each graph must yield a :class:`SessionOutcome`. A failure anywhere in a session's
    graph fails that session only.
    """
    if not graphs:
        return []
    from distributed import wait

    futures = client.compute([g for _, g in graphs])
    if progress is not None:
        progress(futures)
    wait(futures)
    return [_collect(k, stage, fut) for (k, _), fut in zip(graphs, futures, strict=True)]


def _collect(key: SessionKey, stage: str, fut: Any) -> SessionOutcome:
    if fut.status == "finished":
        return _as_outcome(key, stage, fut.result())
    exc = fut.exception()
    try:
        trace = "".join(tb.format_exception(type(exc), exc, fut.traceback()))
    except Exception:  # the traceback may not survive pickling; the message still does
        trace = ""
    return failure_outcome(key, stage, exc, traceback=trace)
