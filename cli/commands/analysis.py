"""Commands for the fear-learning analysis: analyze (the tables) and report (the figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import (
    AllowFailuresOption,
    LakeOption,
    VerboseOption,
    WaitOption,
    echo,
    fail,
    report_failed_sessions,
    setup_logging,
)
from cellsift.cli.client import DEFAULT_CLUSTER_OPTIONS, ClusterOptions, cluster_options, lake_client
from cellsift.schemas import CellsiftError

__all__ = ["analyze", "report"]


@cluster_options(
    workers_help="Workers of the local cluster.",
    scheduler_help="Address or scheduler file of an existing Dask cluster.",
)
def analyze(
    lake: LakeOption,
    dask: ClusterOptions = DEFAULT_CLUSTER_OPTIONS,
    force: Annotated[bool, typer.Option(help="Rebuild sessions that are up to date.")] = False,
    wait: WaitOption = False,
    allow_failures: AllowFailuresOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Build the fear-learning tables: traces, events, trial_responses, cell_summary, behaviour, cell_registry."""
    setup_logging(verbose)
    from cellsift.pipeline.analysis import build_analysis_tables

    try:
        with lake_client(lake, dask, wait=wait) as client:
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
