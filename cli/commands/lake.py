"""Commands about the lake itself: status (what is out of date) and check (damaged files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import LakeOption, VerboseOption, WaitOption, echo, fail, setup_logging
from cellsift.schemas import CellsiftError

__all__ = ["check", "status"]


def _where(key: tuple[str, str, str] | None) -> str:
    return "/".join(key) if key is not None else "lake"


def _model_id(model: str, lake: Path) -> str | None:
    """The id of the classifier ``cellsift run --model MODEL`` applies (``None``: cannot tell)."""
    from cellsift.pipeline.classify import ModelCard, resolve_model

    try:
        return ModelCard.read(resolve_model(model, lake=lake)).model_id
    except CellsiftError as exc:
        typer.echo(f"  WARNING classification not checked: {exc.one_line()}", err=True)
        return None


def status(
    lake: LakeOption,
    model: Annotated[
        str, typer.Option(help="Classifier 'cellsift run' applies: 'default', a registered id, or a folder.")
    ] = "default",
    verbose: VerboseOption = False,
) -> None:
    """List what is out of date in the lake (not run, old inputs, unscored, analysis older than cells) and the command that updates it."""
    setup_logging(verbose)
    from cellsift.catalog import Catalog, lake_status
    from cellsift.pipeline.stages import PipelineParams

    try:
        Catalog(lake)
        run_command = f"cellsift run --lake {lake}" + ("" if model == "default" else f" --model {model}")
        report = lake_status(
            lake,
            params_hash=PipelineParams().params_hash(),
            model_id=_model_id(model, lake),
            run_command=run_command,
        )
    except CellsiftError as exc:
        raise fail(exc) from None
    for item in report.items:
        echo(f"  out of date  {_where(item.key)}: {item.problem}  -> {item.command}")
    for note in report.notes:
        echo(f"  note         {_where(note.key)}: {note.problem}")
    if report.up_to_date:
        echo(f"status: {report.n_sessions} session(s), all up to date -> lake {lake}")
        return
    n_sessions = len({i.key for i in report.items})
    echo(f"status: {len(report.items)} item(s) out of date in {n_sessions} of {report.n_sessions} session(s)")
    echo(f"to bring the lake up to date: {report.command()}")
    if "SOURCE" in report.command():
        echo("  (SOURCE: the manifest or folder the sessions were ingested from)")


def check(
    lake: LakeOption,
    wait: WaitOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Verify every file of the lake against the checksums recorded when it was written (exit 1 on damage)."""
    setup_logging(verbose)
    from cellsift.catalog import Catalog, check_lake, wait_until_free

    try:
        Catalog(lake)
        wait_until_free(Path(lake), wait=wait, log=echo)
        report = check_lake(lake)
    except CellsiftError as exc:
        raise fail(exc) from None
    root = Path(lake)
    for d in report.damage:
        try:
            where = d.path.relative_to(root).as_posix()
        except ValueError:
            where = str(d.path)
        typer.echo(f"  DAMAGED   {where}: {d.detail}; repair: {d.repair}", err=True)
    for key in report.marked:
        typer.echo(
            f"  marked    {'/'.join(key)} damaged in the catalog: 'cellsift run' leaves it alone, "
            "'cellsift ingest' writes it again",
            err=True,
        )
    recorded = (
        f", checksums recorded now for {report.n_recorded} store(s)/file(s) written without them"
        if report.n_recorded
        else ""
    )
    echo(f"check: {report.n_files} file(s) verified{recorded}, {len(report.damage)} damaged -> lake {lake}")
    if any(d.source for d in report.damage):
        echo("  (SOURCE: the manifest or folder the sessions were ingested from)")
    if report.damage:
        raise typer.Exit(code=1)
