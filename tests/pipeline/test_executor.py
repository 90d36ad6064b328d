"""The per-session executor: one outcome per session, one-line errors, per-worker init, real Dask."""

from __future__ import annotations

import os

from cellsift.pipeline.executor import (
    FAILED,
    PROCESSED,
    SessionOutcome,
    clear_worker_contexts,
    outcome_records,
    run_session_graphs,
    run_sessions,
)
from cellsift.schemas import InputFormatError, SessionKey

KEYS = [SessionKey("c", "m-1", "d1"), SessionKey("c", "m", "1-d1"), SessionKey("c2", "m-1", "d1")]


def _init(offset: int) -> dict[str, int]:
    return {"offset": offset, "pid": os.getpid()}


def _work(context: dict[str, int], payload: int) -> object:
    if payload == 1:
        raise ZeroDivisionError("division by zero in a helper")
    if payload == 2:
        raise InputFormatError("no traces", path="/data/x.mat", field="C_raw", fix="re-export")
    return {"value": context["offset"] + payload, "pid": context["pid"]}


def _check(outcomes: list[SessionOutcome]) -> None:
    assert [o.key for o in outcomes] == KEYS  # in the order given, whatever finished first
    ok, bug, bad = outcomes
    assert ok.status == PROCESSED and ok.value["value"] == 100 and ok.stage == "score"
    assert bug.status == FAILED and bug.error_type == "ZeroDivisionError"
    assert bug.error.startswith("score failed unexpectedly: ZeroDivisionError: division by zero in a helper")
    assert "\n" not in bug.error and "Traceback" in bug.traceback and "_work" in bug.traceback
    assert bad.status == FAILED and bad.error == "/data/x.mat: field 'C_raw': no traces. Fix: re-export."
    assert bad.traceback == ""  # a cellsift error is the user's to fix, not a bug: no traceback
    records = outcome_records(outcomes)
    assert all("value" not in r for r in records)
    assert {r["session"] for r in records if r["status"] == FAILED} == {"1-d1", "d1"}


def test_in_process():
    clear_worker_contexts()
    _check(
        run_sessions(
            list(zip(KEYS, [0, 1, 2], strict=True)),
            _work,
            stage="score",
            run_id="r1",
            init=_init,
            init_args=(100,),
        )
    )


def test_on_dask_workers_with_per_worker_init():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            items = list(zip(KEYS, [0, 1, 2], strict=True))
            outcomes = run_sessions(
                items, _work, stage="score", run_id="r2", client=client, init=_init, init_args=(100,)
            )
            _check(outcomes)
            assert outcomes[0].value["pid"] != os.getpid()  # ran in a worker process
            many = run_sessions(
                [(SessionKey("c", "m", f"s{i}"), 0) for i in range(6)],
                _work,
                stage="score",
                run_id="r3",
                client=client,
                init=_init,
                init_args=(100,),
                init_key="k",
            )
            pids = {o.value["pid"] for o in many}
            assert os.getpid() not in pids and 1 <= len(pids) <= 2  # two worker processes at most


def test_graphs_fail_per_session():
    from dask import delayed
    from distributed import Client, LocalCluster

    def finish(key: SessionKey, fail: bool) -> SessionOutcome:
        if fail:
            raise KeyError("clips")
        return SessionOutcome(key.cohort, key.animal, key.session, status=PROCESSED, n_units=3)

    graphs = [(k, delayed(finish)(k, i == 1)) for i, k in enumerate(KEYS)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            outcomes = run_session_graphs(graphs, stage="run", client=client)
    assert [o.status for o in outcomes] == [PROCESSED, FAILED, PROCESSED]
    assert outcomes[0].stage == "run" and outcomes[0].n_units == 3
    assert outcomes[1].error.startswith("run failed unexpectedly: KeyError") and outcomes[1].traceback


def test_nothing_to_do():
    assert run_sessions([], _work, stage="score", run_id="r", client=object()) == []
    assert run_session_graphs([], stage="run", client=object()) == []
