"""What every command shares: logging, library errors -> one line and exit code 1, the Dask client.

Library errors (:class:`cellsift.schemas.CellsiftError`) become one readable line on
stderr and exit code 1; the commands themselves compute nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cellsift.schemas import CellsiftError

__all__ = [
    "DEFAULT_WORKERS",
    "LakeOption",
    "VerboseOption",
    "dask_client",
    "echo",
    "fail",
    "quiet_dask",
    "report_failed_sessions",
    "setup_logging",
]

LakeOption = Annotated[Path, typer.Option("--lake", "-l", help="Lake folder (created by 'cellsift ingest').")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]

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


def _connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        if scheduler.endswith(".json") and Path(scheduler).exists():
            return Client(scheduler_file=scheduler, timeout="30s")
        return Client(scheduler, timeout="30s")
    except OSError as exc:
        raise CellsiftError(
            f"cannot connect to the Dask scheduler ({exc})",
            field="--scheduler",
            fix="check the address (tcp://HOST:PORT) or the scheduler file, and that the scheduler runs",
        ) from None


@contextmanager
def dask_client(
    *,
    scheduler: str | None,
    workers: int,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    dashboard_port: int = 8787,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``: to ``scheduler`` if given, else to a new local cluster.

    The local cluster has ``workers`` worker processes; its dashboard URL is printed. Client
    and cluster are closed on exit, whatever happened.
    """
    from distributed import Client, LocalCluster

    quiet_dask(logging.getLogger().level <= logging.DEBUG)
    cluster = None
    if scheduler:
        client = _connect(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=f":{dashboard_port}",
        )
        client = Client(cluster)
    try:
        echo(f"Dask dashboard: {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
