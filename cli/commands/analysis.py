"""Commands for the fear-learning analysis: analyze (the tables) and report (the figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import (
    DEFAULT_SCHEDULER_TIMEOUT_S,
    DEFAULT_WORKERS,
    AllowFailuresOption,
    LakeOption,
    SchedulerTimeoutOption,
    VerboseOption,
    WaitOption,
    dask_client,
    echo,
    fail,
    report_failed_sessions,
    setup_logging,
)
from cellsift.cli.cluster import (
    AdaptOption,
    ClusterConfigOption,
    ClusterOption,
    CoresOption,
    DashboardHostOption,
    JobsOption,
    MemoryOption,
    WalltimeOption,
    cluster_spec,
)
from cellsift.schemas import CellsiftError

__all__ = ["analyze", "report"]


def analyze(
    lake: LakeOption,
    scheduler: Annotated[
        str | None, typer.Option(help="Address or scheduler file of an existing Dask cluster.")
    ] = None,
    scheduler_timeout: SchedulerTimeoutOption = DEFAULT_SCHEDULER_TIMEOUT_S,
    workers: Annotated[int, typer.Option(min=1, help="Workers of the local cluster.")] = DEFAULT_WORKERS,
    cluster: ClusterOption = None,
    jobs: JobsOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    walltime: WalltimeOption = None,
    adapt: AdaptOption = None,
    cluster_config: ClusterConfigOption = None,
    dashboard_host: DashboardHostOption = "127.0.0.1",
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port (0: any free port).")] = 8787,
    force: Annotated[bool, typer.Option(help="Rebuild sessions that are up to date.")] = False,
    wait: WaitOption = False,
    allow_failures: AllowFailuresOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Build the fear-learning tables: traces, events, trial_responses, cell_summary, behaviour, cell_registry."""
    setup_logging(verbose)
    from cellsift.pipeline.analysis import build_analysis_tables

    try:
        from cellsift.catalog import Catalog, wait_until_free

        spec = cluster_spec(
            cluster=cluster,
            jobs=jobs,
            cores=cores,
            memory=memory,
            walltime=walltime,
            adapt=adapt,
            config=cluster_config,
        )
        Catalog(lake)  # fail fast, before starting a cluster, if there is no lake
        wait_until_free(Path(lake), wait=wait, log=echo)  # or if another run writes to it
        with dask_client(
            scheduler=scheduler,
            workers=workers,
            dashboard_host=dashboard_host,
            dashboard_port=dashboard_port,
            scheduler_timeout_s=scheduler_timeout,
            cluster=spec,
        ) as client:
            summary = build_analysis_tables(lake, client=client, force=force)
    except CellsiftError as exc:
        raise fail(exc) from None
    report_failed_sessions(summary.outcomes)
    echo(
        f"analysis: {summary.count('processed')} processed, {summary.count('skipped')} up to date, "
        f"{summary.count('failed')} failed -> {Path(lake) / 'tables'}"
    )
    if summary.n_failed and not allow_failures:
        raise typer.Exit(code=1)


def report(
    lake: LakeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG figures and index.html.")],
    verbose: VerboseOption = False,
) -> None:
    """Render lab-meeting figures (footprints, CS+/CS- heatmaps, selectivity across stages) + HTML."""
    setup_logging(verbose)
    from cellsift.pipeline.analysis import render_report

    try:
        index = render_report(lake, out)
    except CellsiftError as exc:
        raise fail(exc) from None
    echo(f"report: {index}")
