"""Commands that write the lake out to the ecosystem's formats: ``cellsift export nwb``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import AllowFailuresOption, LakeOption, VerboseOption, echo, fail, setup_logging
from cellsift.schemas import CellsiftError

__all__ = ["export_app", "nwb"]

export_app = typer.Typer(help="Write the lake out: NWB files with the curation inside.", no_args_is_help=True)


class Video(str, Enum):
    """How the movie goes into the NWB file."""

    link = "link"
    copy = "copy"
    none = "none"


@export_app.command("nwb")
def nwb(
    lake: LakeOption,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the NWB files (OUT/cohort/animal/session.nwb).")
    ],
    session: Annotated[
        list[str] | None,
        typer.Option(
            help="Only this session: cohort/animal/session, animal/session or session (repeatable)."
        ),
    ] = None,
    video: Annotated[
        Video,
        typer.Option(
            help="link: external link to the original video (default); copy: write the movie; none."
        ),
    ] = Video.link,
    species: Annotated[
        str | None, typer.Option(help="Subject species for every animal (default Mus musculus).")
    ] = None,
    location: Annotated[str | None, typer.Option(help="Imaged brain area, e.g. 'mPFC (prelimbic)'.")] = None,
    allow_failures: AllowFailuresOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Write one NWB file per session: video, ROIs with p_good/label/reason, traces, trials, freezing, registry."""
    setup_logging(verbose)
    from cellsift.catalog import Catalog
    from cellsift.pipeline.export import export_nwb

    try:
        subjects = None
        if species is not None:
            subjects = {r.animal: {"species": species} for r in Catalog(lake).records()}
        outcomes = export_nwb(
            lake, out, sessions=session, video=video.value, subjects=subjects, location=location
        )
    except CellsiftError as exc:
        raise fail(exc) from None
    n_failed = 0
    for o in outcomes:
        if o.failed:
            n_failed += 1
            typer.echo(f"  {o.line}", err=True)
        else:
            echo(f"  {o.line}")
        for warning in o.warnings:
            typer.echo(f"  WARNING {o.key.label}: {warning}", err=True)
    echo(f"nwb export: {len(outcomes) - n_failed} exported, {n_failed} failed -> {out}")
    if n_failed and not allow_failures:
        raise typer.Exit(code=1)
