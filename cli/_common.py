"""What every command shares: logging, library errors -> one line and exit code 1, the Dask client.

Library errors (:class:`cellsift.schemas.CellsiftError`) become one readable line on
stderr and exit code 1; the commands themselves compute nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cellsift.cli.cluster import ClusterSpec, start_batch_cluster
from cellsift.schemas import CellsiftError

__all__ = [
    "DEFAULT_SCHEDULER_TIMEOUT_S",
    "DEFAULT_WORKERS",
    "SchedulerTimeoutOption",
    "LakeOption",
    "AllowFailuresOption",
    "VerboseOption",
    "WaitOption",
    "dask_client",
    "echo",
    "fail",
    "quiet_dask",
    "report_failed_sessions",
    "setup_logging",
    "show_progress",
]

LakeOption = Annotated[Path, typer.Option("--lake", "-l", help="Lake folder (created by 'cellsift ingest').")]
SchedulerTimeoutOption = Annotated[
    float,
    typer.Option(min=0.1, help="Seconds to wait for the --scheduler to answer before giving up."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="If another run is writing to the lake, wait for it instead of refusing."),
]
AllowFailuresOption = Annotated[
    bool,
    typer.Option(
        "--allow-failures",
        help="Exit 0 even when some sessions failed (default: exit 1 after finishing the others).",
    ),
]

#: Workers of a local Dask cluster unless told otherwise.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)

_NOISY_LOGGERS = ("distributed", "bokeh", "tornado", "numcodecs", "asyncio")


def setup_logging(verbose: bool) -> None:
    """Warnings (or everything with ``--verbose``) to stderr; progress is echoed separately."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    quiet_dask(verbose)


def quiet_dask(verbose: bool) -> None:
    """Silence Dask's chatty loggers (``distributed`` resets them on import: call again after)."""
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)


def fail(exc: CellsiftError) -> typer.Exit:
    """Print ``exc`` as one line on stderr; return the exit (code 1) to raise."""
    typer.echo(f"error: {exc.one_line()}", err=True)
    return typer.Exit(code=1)


def echo(text: str) -> None:
    """Print a line of progress or results on stdout."""
    typer.echo(text)


def report_failed_sessions(outcomes: Sequence[Any]) -> None:
    """One stderr line per failed session: ``FAILED cohort/animal/session: error``."""
    for o in outcomes:
        if o.status == "failed":
            typer.echo(f"  FAILED    {o.cohort}/{o.animal}/{o.session}: {o.error}", err=True)


#: Seconds to wait for a Dask scheduler to answer unless told otherwise (``--scheduler-timeout``).
DEFAULT_SCHEDULER_TIMEOUT_S = 30.0


def _scheduler_address(scheduler: str) -> str:
    """The address in ``scheduler``: itself, or the ``address`` of a scheduler file."""
    if scheduler.endswith(".json") and Path(scheduler).exists():
        try:
            address = json.loads(Path(scheduler).read_text())["address"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CellsiftError(
                "not a Dask scheduler file (no 'address' in it)",
                path=scheduler,
                field="--scheduler",
                fix="pass the file written by 'dask scheduler --scheduler-file FILE', or tcp://HOST:PORT",
            ) from None
        return str(address)
    return scheduler


def _probe_scheduler(address: str, timeout_s: float) -> None:
    """Ask ``address`` who it is; raise unless a Dask scheduler answers within ``timeout_s`` seconds.

    ``distributed.Client`` waits for ever (or fails with a long traceback) when something
    other than a Dask scheduler listens at the address, e.g. a web server.
    """
    import asyncio

    from distributed.comm import connect

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout_s)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = asyncio.run(asyncio.wait_for(identity(), timeout_s))
    except Exception as exc:  # anything: a refused connection, a timeout, garbage from a non-Dask server
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_a_scheduler(
            address, f"no Dask scheduler answered within {timeout_s:g} s ({reason})"
        ) from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise _not_a_scheduler(address, "the service there is not a Dask scheduler")


def _not_a_scheduler(address: str, problem: str) -> CellsiftError:
    return CellsiftError(
        f"cannot use the Dask scheduler at {address}: {problem}",
        field="--scheduler",
        fix="pass the scheduler's address as printed by 'dask scheduler' (tcp://HOST:PORT, port 8786 "
        "by default, not the dashboard's) or its scheduler file, and check that the scheduler runs",
    )


def _connect(scheduler: str, timeout_s: float) -> Any:
    from distributed import Client

    address = _scheduler_address(scheduler)
    _probe_scheduler(address, timeout_s)
    try:
        return Client(address, timeout=f"{timeout_s}s")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_a_scheduler(address, reason) from None


def show_progress(futures: Sequence[Any]) -> None:
    """Show how far ``futures`` (one per session) are, and return when all are done.

    On a terminal: Dask's progress bar. Otherwise (a log file, a SLURM job's output): one
    plain line each time another tenth of the futures is done, never carriage returns.
    """
    if not futures:
        return
    if sys.stdout.isatty():
        from distributed import progress

        progress(futures)
        echo("")
        return
    from distributed import as_completed

    start, n, shown = time.monotonic(), len(futures), 0
    for done, _ in enumerate(as_completed(futures), start=1):
        if done == n or done * 10 // n > shown * 10 // n:
            shown = done
            echo(f"  {done}/{n} sessions done ({time.monotonic() - start:.0f} s)")


@contextmanager
def dask_client(
    *,
    scheduler: str | None,
    workers: int,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    dashboard_port: int = 8787,
    scheduler_timeout_s: float = DEFAULT_SCHEDULER_TIMEOUT_S,
    dashboard_host: str = "127.0.0.1",
    cluster: ClusterSpec | None = None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``: to ``scheduler`` if given, else to a new cluster.

    The new cluster is ``cluster`` (:func:`cellsift.cli.cluster.cluster_spec`): a local one
    of ``workers`` worker processes (``threads_per_worker`` threads and ``memory_limit``
    each; all of them with ``cluster.adapt``, scaled between one and ``workers``), or batch
    jobs of SLURM, PBS, SGE or LSF through dask-jobqueue. Its dashboard listens on
    ``dashboard_host:dashboard_port`` (this machine only unless told otherwise) and its URL
    is printed. A scheduler that does not answer within ``scheduler_timeout_s`` seconds is an
    error. Client and cluster are closed on exit, whatever happened (a batch cluster cancels
    its jobs).
    """
    from distributed import Client, LocalCluster

    quiet_dask(logging.getLogger().level <= logging.DEBUG)
    spec = cluster if cluster is not None else ClusterSpec()
    dashboard = f"{dashboard_host}:{dashboard_port}"
    made: Any = None
    if scheduler:
        client = _connect(scheduler, scheduler_timeout_s)
    elif spec.is_batch:
        made = start_batch_cluster(spec, dashboard_address=dashboard, log=echo)
        client = Client(made)
    else:
        made = LocalCluster(
            n_workers=1 if spec.adapt else workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard,
        )
        if spec.adapt:
            made.adapt(minimum=1, maximum=workers)
        client = Client(made)
    try:
        quiet_dask(logging.getLogger().level <= logging.DEBUG)
        echo(f"Dask dashboard: {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if made is not None:
            made.close()
