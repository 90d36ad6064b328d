"""Where Dask workers come from: a local cluster, or jobs of a batch system (dask-jobqueue).

``cellsift ingest``, ``run`` and ``analyze`` share these options. ``--cluster local`` (the
default) starts worker processes on this machine; ``--cluster slurm`` (or ``pbs``, ``sge``,
``lsf``) submits ``--jobs`` batch jobs of ``--cores`` cores, ``--memory`` and ``--walltime``
each, every job running one single-threaded ``dask worker`` per core that connects back
to a scheduler inside the cellsift process; ``--adapt`` lets the number of jobs follow the
work (between ``minimum_jobs`` and ``--jobs``). The same values, and any keyword of the
dask-jobqueue cluster class (``queue``, ``account``, ``job_extra_directives``,
``job_script_prologue``, ``log_directory``, ``local_directory``, ``interface``, ...), may
sit in a YAML file given by ``--cluster-config`` (default:
``~/.config/cellsift/cluster.yaml``, read when it exists); options on the command line
win over the file. See ``docs/cluster.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from cellsift.schemas import ParameterError

__all__ = [
    "AdaptOption",
    "BATCH_SYSTEMS",
    "ClusterConfigOption",
    "ClusterKind",
    "ClusterOption",
    "ClusterSpec",
    "CoresOption",
    "DEFAULT_CLUSTER_CONFIG",
    "DashboardHostOption",
    "JobsOption",
    "MemoryOption",
    "WalltimeOption",
    "cluster_spec",
    "start_batch_cluster",
]


class ClusterKind(str, Enum):
    """Where the Dask workers run."""

    local = "local"
    slurm = "slurm"
    pbs = "pbs"
    sge = "sge"
    lsf = "lsf"


#: dask-jobqueue's cluster class per batch system.
BATCH_SYSTEMS: Final = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
}

#: The cluster config read when ``--cluster-config`` is not given (if the file exists).
DEFAULT_CLUSTER_CONFIG: Final = Path(typer.get_app_dir("cellsift")) / "cluster.yaml"

#: Keys of the YAML file that cellsift itself reads; every other key goes to dask-jobqueue.
_OWN_KEYS: Final = ("cluster", "jobs", "cores", "memory", "walltime", "adapt", "minimum_jobs")

ClusterOption = Annotated[
    ClusterKind | None,
    typer.Option(
        "--cluster",
        help="Where workers run: local processes, or jobs of a batch system (default: the cluster "
        "config's 'cluster', else local). Ignored with --scheduler.",
    ),
]
JobsOption = Annotated[
    int | None,
    typer.Option(min=1, help="Batch jobs to submit (the most with --adapt). Batch clusters only."),
]
CoresOption = Annotated[
    int | None, typer.Option(min=1, help="Cores per batch job, one worker process each. Batch clusters only.")
]
MemoryOption = Annotated[
    str | None, typer.Option(help="Memory per batch job, e.g. 16GiB. Batch clusters only.")
]
WalltimeOption = Annotated[
    str | None, typer.Option(help="Wall time per batch job, e.g. 04:00:00. Batch clusters only.")
]
AdaptOption = Annotated[
    bool | None,
    typer.Option(
        "--adapt/--no-adapt",
        help="Scale the workers with the work: up to --jobs batch jobs (or --workers local ones).",
        show_default=False,
    ),
]
ClusterConfigOption = Annotated[
    Path | None,
    typer.Option(
        help=f"YAML cluster config (default: {DEFAULT_CLUSTER_CONFIG}, when it exists); options given "
        "on the command line win.",
        show_default=False,
    ),
]
DashboardHostOption = Annotated[
    str,
    typer.Option(help="Address the Dask dashboard listens on; 0.0.0.0 opens it to the network."),
]


@dataclass(frozen=True)
class ClusterSpec:
    """A resolved cluster request.

    Parameters
    ----------
    kind
        ``"local"`` or a batch system of :data:`BATCH_SYSTEMS`.
    jobs
        Batch jobs to submit (the maximum with ``adapt``).
    cores
        Cores per job; each runs one single-threaded worker process unless ``extra``
        sets ``processes``.
    memory
        Memory per job (e.g. ``"16GiB"``), shared by its worker processes.
    walltime
        Wall time per job (``HH:MM:SS``).
    adapt
        Let the number of workers follow the work.
    minimum_jobs
        Jobs kept with ``adapt`` (0: none while idle).
    extra
        Further keyword arguments of the dask-jobqueue cluster class.
    source
        The YAML file the values came from ("" when none), named in messages.
    """

    kind: str = "local"
    jobs: int = 1
    cores: int = 1
    memory: str = "4GiB"
    walltime: str = "01:00:00"
    adapt: bool = False
    minimum_jobs: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def is_batch(self) -> bool:
        return self.kind != "local"


def _read_config(path: Path, *, explicit: bool) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        if explicit:
            raise ParameterError(
                "cluster config not found",
                path=path,
                field="--cluster-config",
                fix="give an existing YAML file (see docs/cluster.md)",
            )
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ParameterError(
            f"cannot read the cluster config ({reason})",
            path=path,
            field="--cluster-config",
            fix="write a YAML mapping such as 'cluster: slurm' (see docs/cluster.md)",
        ) from None
    if not isinstance(data, dict):
        raise ParameterError(
            "the cluster config is not a mapping of keys to values",
            path=path,
            field="--cluster-config",
            fix="write a YAML mapping such as 'cluster: slurm' (see docs/cluster.md)",
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _typed(data: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = data[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is int and ok and value < 0:
        ok = False
    if not ok:
        raise ParameterError(
            f"'{key}' must be {'a whole number >= 0' if kind is int else kind.__name__}, got {value!r}",
            path=path,
            field=key,
            fix="correct the value in the cluster config (see docs/cluster.md)",
        )
    return value


def cluster_spec(
    *,
    cluster: ClusterKind | str | None = None,
    jobs: int | None = None,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    adapt: bool | None = None,
    config: Path | None = None,
) -> ClusterSpec:
    """Merge the command-line options over the cluster config file into one :class:`ClusterSpec`.

    Parameters
    ----------
    cluster, jobs, cores, memory, walltime, adapt
        Command-line values; ``None`` where not given.
    config
        The ``--cluster-config`` file; ``None``: :data:`DEFAULT_CLUSTER_CONFIG` if it exists.

    Raises
    ------
    ParameterError
        The file is missing (when given), not YAML, names an unknown cluster or has a
        value of the wrong type.
    """
    path = Path(config).expanduser() if config is not None else DEFAULT_CLUSTER_CONFIG
    data = _read_config(path, explicit=config is not None)
    given = {"jobs": jobs, "cores": cores, "memory": memory, "walltime": walltime, "adapt": adapt}
    values: dict[str, Any] = {}
    types: dict[str, type] = {"jobs": int, "cores": int, "memory": str, "walltime": str, "adapt": bool}
    types["minimum_jobs"] = int
    for key, kind in types.items():
        if given.get(key) is not None:
            values[key] = given[key]
        elif key in data:
            values[key] = _typed(data, key, kind, path)
    name = cluster.value if isinstance(cluster, ClusterKind) else cluster
    if name is None:
        name = str(data.get("cluster", "local")).lower()
    if name not in ("local", *BATCH_SYSTEMS):
        raise ParameterError(
            f"unknown cluster {name!r}",
            path=path if "cluster" in data and cluster is None else None,
            field="cluster",
            fix="use one of local, " + ", ".join(BATCH_SYSTEMS),
        )
    if "jobs" in values and values["jobs"] < 1:
        raise ParameterError("'jobs' must be >= 1", path=path, field="jobs", fix="ask for at least one job")
    extra = {k: v for k, v in data.items() if k not in _OWN_KEYS}
    return ClusterSpec(kind=name, extra=extra, source=str(path) if data else "", **values)


def start_batch_cluster(
    spec: ClusterSpec, *, dashboard_address: str, log: Callable[[str], None] | None = None
) -> Any:
    """Start a dask-jobqueue cluster for ``spec`` and ask for its jobs (or let it adapt).

    The scheduler runs in this process; each job runs ``spec.cores`` single-threaded
    worker processes with this interpreter (so the virtual environment must sit on a
    file system the compute nodes share).

    Raises
    ------
    ParameterError
        The batch system's commands are missing, or dask-jobqueue refuses the config.
    """
    import shutil

    import dask_jobqueue

    cluster_cls = getattr(dask_jobqueue, BATCH_SYSTEMS[spec.kind])
    submit = cluster_cls.job_cls.submit_command
    if shutil.which(submit) is None:
        raise ParameterError(
            f"'{submit}' is not on PATH, so no {spec.kind} job can be submitted from here",
            field="--cluster",
            fix=f"run on a {spec.kind} login node, or pass --cluster local",
        )
    kwargs: dict[str, Any] = {
        "cores": spec.cores,
        "processes": spec.cores,
        "memory": spec.memory,
        "walltime": spec.walltime,
        "python": sys.executable,
        "job_name": "cellsift-worker",
        **spec.extra,
    }
    kwargs["scheduler_options"] = {
        "dashboard_address": dashboard_address,
        **dict(spec.extra.get("scheduler_options") or {}),
    }
    try:
        cluster = cluster_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"dask-jobqueue refused the {spec.kind} cluster config ({' '.join(str(exc).split())})",
            path=spec.source or None,
            field="--cluster-config",
            fix="keep only keywords of dask_jobqueue." + BATCH_SYSTEMS[spec.kind] + " (see docs/cluster.md)",
        ) from None
    if spec.adapt:
        cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.jobs)
    else:
        cluster.scale(jobs=spec.jobs)
    if log is not None:
        log(
            f"{spec.kind}: {'up to ' if spec.adapt else ''}{spec.jobs} job(s) of {spec.cores} core(s), "
            f"{spec.memory}, {spec.walltime} (workers start as the jobs do)"
        )
    return cluster
