"""``cellsift review``: the review page, and ``cellsift review suggest`` (the active-learning queue).

``cellsift review --lake L`` starts the page (a typer callback that runs when no
subcommand is given); ``cellsift review suggest --lake L --n N --output queue.csv``
writes the queue the page uses, for labelling elsewhere.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from cellsift.cli._common import VerboseOption, echo, fail, setup_logging
from cellsift.schemas import CellsiftError, ParameterError

__all__ = ["review_app", "serve", "suggest"]

review_app = typer.Typer(
    help="Review cells in the browser (cellsift review --lake L), or write the labelling queue (suggest).",
    invoke_without_command=True,
    no_args_is_help=False,
)

ModelOption = Annotated[
    str | None,
    typer.Option(help="Model: its uncertainty orders the queue (suggest) / the base of Retrain (page)."),
]
OverlapOption = Annotated[bool, typer.Option("--include-overlap", help="Also suggest overlap-flagged cells.")]


@review_app.callback()
def serve(
    ctx: typer.Context,
    lake: Annotated[Path | None, typer.Option("--lake", "-l", help="Lake folder to review.")] = None,
    model: ModelOption = None,
    reviewer: Annotated[
        str | None, typer.Option(help="Your name, recorded with each label (default: the login name).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback requires a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")] = 0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CELLSIFT_REVIEW_TOKEN", help="Token the page requires (default: random off loopback)."
        ),
    ] = None,
    include_overlap: OverlapOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Start the review page for a lake and print its URL (Ctrl-C stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose)
    try:
        if lake is None:
            raise ParameterError("no lake given", field="--lake", fix="pass --lake LAKE")
        from cellsift.catalog import safe_name
        from cellsift.cli.web import serve as serve_page
        from cellsift.pipeline.review import ReviewConfig, ReviewService, SuggestParams

        who = safe_name(reviewer or getpass.getuser(), field="reviewer")
        echo(f"loading {lake} ...")
        service = ReviewService(
            ReviewConfig(
                lake=lake, reviewer=who, model=model, suggest=SuggestParams(include_overlap=include_overlap)
            )
        )

        def ready(url: str) -> None:
            echo(f"review page for {lake} (reviewer {who}): {url}")
            echo("Ctrl-C stops it; labels are in the lake as soon as you make them")

        serve_page(service, host=host, port=port, token=token, on_ready=ready)
    except CellsiftError as exc:
        raise fail(exc) from None


@review_app.command()
def suggest(
    lake: Annotated[Path, typer.Option("--lake", "-l", help="Lake folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="How many cells to suggest.")] = 50,
    model: ModelOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV to write (default: print the queue).")
    ] = None,
    include_overlap: OverlapOption = False,
    seed: Annotated[int, typer.Option(help="Seed of the feature-space clustering.")] = 0,
    verbose: VerboseOption = False,
) -> None:
    """Pick the N cells whose labels would help the model most (uncertain, spread over animals,
    sessions and feature space); columns cohort,animal,session,unit_id,p_good,why."""
    setup_logging(verbose)
    from cellsift.pipeline.review import SuggestParams, suggest_on_lake

    try:
        queue = suggest_on_lake(
            lake, n=n, model=model, params=SuggestParams(include_overlap=include_overlap, seed=seed)
        )
    except CellsiftError as exc:
        raise fail(exc) from None
    if output is None:
        echo(queue.to_string(index=False) if len(queue) else "(no cell to suggest)")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    queue.to_csv(tmp, index=False)
    tmp.replace(output)
    echo(f"{len(queue)} cells -> {output}")
    echo(
        f"label them (label column good/bad, reason for bad), then: cellsift train --lake {lake} --base default --labels LABELS.csv --model-id ID"
    )
