"""The ``cellsift`` command: a thin typer layer over the library.

The commands live in :mod:`cellsift.cli.commands` (data, analysis, models); what they
share (logging, errors -> one line and exit code 1, the Dask client) in
:mod:`cellsift.cli._common`. Nothing here computes anything itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x carries its own copy of click: its exceptions derive from TyperException
    from typer.exceptions import TyperException
except ImportError:  # pragma: no cover - older typer raises click's own exceptions
    TyperException = click.ClickException  # type: ignore[assignment,misc]

from cellsift.cli._common import DEFAULT_WORKERS, VerboseOption, echo
from cellsift.cli.commands import analysis, data, export, lake, models, review

__all__ = ["app", "main"]

#: What click (typer's or the real one) raises for a bad command line, and for an abort.
_CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException, TyperException)
_ABORTS: tuple[type[BaseException], ...] = (click.Abort, typer.Abort)


class CellsiftGroup(TyperGroup):
    """The top-level command group: usage errors end in one ``error: ...`` line like cellsift's own.

    Click (and typer's rich panel) would print ``Error: ...`` in a box; cellsift prints the
    usage, the ``--help`` hint and ``error: <message>`` on stderr, exit code 2 as click's.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the command line; with ``standalone_mode``, format click's errors and exit."""
        if not standalone_mode:
            return super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **kwargs,
            )
        try:
            code = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **kwargs,
            )
        except _CLICK_ERRORS as exc:
            _show_click_error(exc)
            sys.exit(getattr(exc, "exit_code", 2))
        except _ABORTS:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _show_click_error(exc: Exception) -> None:
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help text is the message: show it as it is
        typer.echo(_message(exc), err=True)
        return
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        if ctx.command.get_help_option(ctx) is not None:
            typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
    typer.echo(f"error: {_message(exc)}", err=True)


def _message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message()) if callable(format_message) else str(exc)


app = typer.Typer(
    cls=CellsiftGroup,
    name="cellsift",
    help="Curate miniscope cell candidates at cohort scale: simulate, ingest, run, query.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(data.simulate)
app.command()(data.ingest)
app.command()(data.run)
app.command()(data.query)
app.command()(analysis.analyze)
app.command()(analysis.report)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(models.montage)
app.add_typer(models.models_app, name="models")
app.command("catalog")(data.catalog)
app.command()(data.upgrade)
app.command()(lake.status)
app.command()(lake.check)
app.add_typer(export.export_app, name="export")
app.add_typer(review.review_app, name="review")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder for the demo: OUT/raw and OUT/lake.")] = Path("demo"),
    workers: Annotated[int, typer.Option(min=1)] = DEFAULT_WORKERS,
    dashboard_port: Annotated[int, typer.Option()] = 8787,
    verbose: VerboseOption = False,
) -> None:
    """Simulate the demo cohort, ingest it and run the pipeline: the whole path in one command."""
    raw, lake = out / "raw", out / "lake"
    if not (raw / "cohort.csv").exists():
        data.simulate(raw, verbose=verbose)
    else:
        echo(f"using the simulated cohort in {raw}")
    data.ingest(raw, lake, workers=workers, dashboard_port=dashboard_port, verbose=verbose)
    data.run(lake, workers=workers, dashboard_port=dashboard_port, verbose=verbose)
    analysis.analyze(lake, workers=workers, dashboard_port=dashboard_port, verbose=verbose)
    analysis.report(lake, out / "report", verbose=verbose)
    echo("")
    echo("try:")
    echo(
        f'  cellsift query --lake {lake} "SELECT animal, stage, count(*) AS cells, '
        'sum(overlap_flag::INT) AS overlapping FROM cells GROUP BY ALL ORDER BY ALL"'
    )
    echo(
        f'  cellsift query --lake {lake} "SELECT animal, label, reason, count(*) AS cells, '
        'round(avg(p_good), 2) AS mean_p_good FROM cells GROUP BY ALL ORDER BY ALL"'
    )
    echo(f"  cellsift montage --lake {lake} --out {out / 'calls.png'}")
    echo(
        f'  cellsift query --lake {lake} "SELECT animal, stage, count(*) AS cs_plus_cells FROM cell_summary '
        'WHERE is_good AND cs_plus_selective GROUP BY ALL ORDER BY ALL"'
    )
    echo(f"  python -c \"import cellsift; print(cellsift.open_lake('{lake}').cells.head())\"")
    echo(f"  open {out / 'report' / 'index.html'}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
