"""The ``cellsift`` command: a thin typer layer over the library.

The commands live in :mod:`cellsift.cli.commands` (data, analysis, models); what they
share (logging, errors -> one line and exit code 1, the Dask client) in
:mod:`cellsift.cli._common`. Nothing here computes anything itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import DEFAULT_WORKERS, VerboseOption, echo
from cellsift.cli.commands import analysis, data, export, models

__all__ = ["app", "main"]

app = typer.Typer(
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
app.add_typer(export.export_app, name="export")


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
    data.ingest(raw, lake, verbose=verbose)
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
