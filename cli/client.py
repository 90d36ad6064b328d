"""The Dask client of a command that works on a lake: its options, declared once, and the client.

``cellsift ingest``, ``run`` and ``analyze`` take the same Dask options (``--scheduler``,
``--workers``, the batch-cluster options of :mod:`cellsift.cli.cluster`, the dashboard's
address). Each command names one parameter of type :class:`ClusterOptions`;
:func:`cluster_options` puts the options into the command's signature at its place (so
``--help`` lists them there) and hands them to the command as one :class:`ClusterOptions`.
:func:`lake_client` checks the lake and its run lock before it starts (or connects to) the
cluster.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from cellsift.cli._common import (
    DEFAULT_SCHEDULER_TIMEOUT_S,
    DEFAULT_WORKERS,
    SchedulerTimeoutOption,
    dask_client,
    echo,
)
from cellsift.cli.cluster import (
    AdaptOption,
    ClusterConfigOption,
    ClusterKind,
    ClusterOption,
    ClusterSpec,
    CoresOption,
    DashboardHostOption,
    JobsOption,
    MemoryOption,
    WalltimeOption,
    cluster_spec,
)

__all__ = [
    "ClusterOptions",
    "DEFAULT_CLUSTER_OPTIONS",
    "SCHEDULER_HELP",
    "cluster_options",
    "lake_client",
]

#: Help of ``--scheduler`` unless a command words it otherwise.
SCHEDULER_HELP: Final = "Address (tcp://host:port) or scheduler file of an existing Dask cluster."


@dataclass(frozen=True)
class ClusterOptions:
    """The Dask options of one command line, as given (``None``: not given).

    Parameters
    ----------
    scheduler
        Address (``tcp://host:port``) or scheduler file of a running Dask cluster;
        ``None``: start a cluster.
    scheduler_timeout
        Seconds to wait for ``scheduler`` to answer.
    workers
        Worker processes of a local cluster (the most with ``adapt``).
    threads_per_worker
        Threads per local worker process.
    memory_limit
        Memory limit per local worker (e.g. ``"4GiB"``; ``"auto"``: share this machine's).
    cluster, jobs, cores, memory, walltime, adapt
        As in :func:`cluster_spec`.
    cluster_config
        The ``--cluster-config`` file (:func:`cluster_spec`'s ``config``).
    dashboard_host, dashboard_port
        Where the Dask dashboard listens (port 0: any free port).
    """

    scheduler: str | None = None
    scheduler_timeout: float = DEFAULT_SCHEDULER_TIMEOUT_S
    workers: int = DEFAULT_WORKERS
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    cluster: ClusterKind | str | None = None
    jobs: int | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    adapt: bool | None = None
    cluster_config: Path | None = None
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8787

    def spec(self) -> ClusterSpec:
        """The cluster asked for: these options over the cluster config (:func:`cluster_spec`).

        Raises
        ------
        ParameterError
            As :func:`cluster_spec`.
        """
        return cluster_spec(
            cluster=self.cluster,
            jobs=self.jobs,
            cores=self.cores,
            memory=self.memory,
            walltime=self.walltime,
            adapt=self.adapt,
            config=self.cluster_config,
        )


#: The options of a command line that gives none of them.
DEFAULT_CLUSTER_OPTIONS: Final = ClusterOptions()

#: The options after ``--workers`` (of the local cluster: those a command names in ``local``).
_LOCAL_OPTIONS: Final[dict[str, Any]] = {
    "threads_per_worker": Annotated[int, typer.Option(min=1)],
    "memory_limit": Annotated[str, typer.Option(help="Memory limit per local worker.")],
}
_CLUSTER_OPTIONS: Final[dict[str, Any]] = {
    "cluster": ClusterOption,
    "jobs": JobsOption,
    "cores": CoresOption,
    "memory": MemoryOption,
    "walltime": WalltimeOption,
    "adapt": AdaptOption,
    "cluster_config": ClusterConfigOption,
    "dashboard_host": DashboardHostOption,
    "dashboard_port": Annotated[int, typer.Option(help="Dashboard port (0: any free port).")],
}


def _option_parameters(*, workers_help: str, scheduler_help: str, local: tuple[str, ...]) -> list[Any]:
    """The command-line parameters of :class:`ClusterOptions`, in the order ``--help`` shows them."""
    unknown = set(local) - set(_LOCAL_OPTIONS)
    if unknown:
        raise TypeError(f"unknown local-cluster options {sorted(unknown)}; known: {list(_LOCAL_OPTIONS)}")
    hints: dict[str, Any] = {
        "scheduler": Annotated[str | None, typer.Option(help=scheduler_help)],
        "scheduler_timeout": SchedulerTimeoutOption,
        "workers": Annotated[int, typer.Option(min=1, help=workers_help)],
        **{name: hint for name, hint in _LOCAL_OPTIONS.items() if name in local},
        **_CLUSTER_OPTIONS,
    }
    defaults = asdict(DEFAULT_CLUSTER_OPTIONS)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return [inspect.Parameter(n, kind, default=defaults[n], annotation=a) for n, a in hints.items()]


def cluster_options(
    *, workers_help: str, scheduler_help: str = SCHEDULER_HELP, local: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the Dask options in place of its one parameter annotated :class:`ClusterOptions`.

    The command line (and a Python call) then takes ``--scheduler``,
    ``--scheduler-timeout``, ``--workers``, the local-cluster options named in ``local``
    (``threads_per_worker``, ``memory_limit``), ``--cluster`` ... ``--cluster-config`` and
    ``--dashboard-host``/``--dashboard-port`` at that place; the command receives them as
    one :class:`ClusterOptions` (the options it does not offer at their defaults).

    Parameters
    ----------
    workers_help, scheduler_help
        Help texts of ``--workers`` and ``--scheduler`` in this command.
    local
        Local-cluster options the command offers, of ``threads_per_worker`` and ``memory_limit``.
    """
    added = _option_parameters(workers_help=workers_help, scheduler_help=scheduler_help, local=local)
    names = [p.name for p in added]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        slots = [p.name for p in signature.parameters.values() if p.annotation is ClusterOptions]
        if len(slots) != 1:
            raise TypeError(f"{command.__name__} needs exactly one parameter annotated ClusterOptions")
        params = [q for p in signature.parameters.values() for q in (added if p.name == slots[0] else [p])]
        expanded = signature.replace(parameters=params)

        @functools.wraps(command)
        def with_options(*args: Any, **kwargs: Any) -> None:
            bound = expanded.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            given = ClusterOptions(**{name: values.pop(name) for name in names})
            command(**values, **{slots[0]: given})

        with_options.__signature__ = expanded  # type: ignore[attr-defined]  # what typer reads
        with_options.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return with_options

    return decorate


@contextmanager
def lake_client(lake: Path, options: ClusterOptions, *, wait: bool, new: bool = False) -> Iterator[Any]:
    """Yield a Dask client (:func:`cellsift.cli._common.dask_client`) for work on ``lake``.

    What can fail does so before a worker starts: the cluster options
    (:meth:`ClusterOptions.spec`), a folder that is not a lake, and a run lock held by
    another run (refused, or waited for with ``wait``).

    Parameters
    ----------
    lake
        The lake folder.
    options
        The command line's Dask options.
    wait
        Wait for another run's lock on the lake instead of refusing.
    new
        The command may create the lake (``cellsift ingest``): no lake yet is fine.

    Raises
    ------
    CellsiftError
        The options are wrong, ``lake`` is not a lake, another run holds its lock, or the
        scheduler does not answer.
    """
    from cellsift.catalog import Catalog, wait_until_free

    spec = options.spec()
    if not new:
        Catalog(lake)  # fail fast, before starting a cluster, if there is no lake
    if not new or Path(lake).exists():
        wait_until_free(Path(lake), wait=wait, log=echo)  # or if another run writes to it
    with dask_client(
        scheduler=options.scheduler,
        workers=options.workers,
        threads_per_worker=options.threads_per_worker,
        memory_limit=options.memory_limit,
        dashboard_host=options.dashboard_host,
        dashboard_port=options.dashboard_port,
        scheduler_timeout_s=options.scheduler_timeout,
        cluster=spec,
    ) as client:
        yield client
