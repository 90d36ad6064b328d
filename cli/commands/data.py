"""Commands that move data: simulate, ingest, run (+ classify), query, catalog."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

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
    show_progress,
)
from cellsift.cli.client import DEFAULT_CLUSTER_OPTIONS, ClusterOptions, cluster_options, lake_client
from cellsift.schemas import CellsiftError

__all__ = ["catalog", "ingest", "query", "run", "simulate", "upgrade"]


class Codec(str, Enum):
    """AVI codec of the simulated Miniscope chunks."""

    ffv1 = "ffv1"
    gray = "gray"


class Extraction(str, Enum):
    """Source of the simulated extraction output."""

    rules = "rules"
    cnmf = "cnmf"
    mixed = "mixed"


def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the simulated cohort into.")],
    animals: Annotated[int, typer.Option(min=1, help="Number of animals.")] = 3,
    stages: Annotated[
        str, typer.Option(help="Comma-separated stages, one session (day) each.")
    ] = "conditioning,safety,extinction",
    frames: Annotated[int, typer.Option(min=50, help="Frames per session.")] = 2000,
    fps: Annotated[float, typer.Option(min=1.0, help="Frame rate (Hz).")] = 20.0,
    height: Annotated[int, typer.Option(min=32, help="Frame height (px).")] = 160,
    width: Annotated[int, typer.Option(min=32, help="Frame width (px).")] = 160,
    density: Annotated[
        float | None, typer.Option(help="True neurons per 10,000 px (default: simulator's).")
    ] = None,
    noise: Annotated[float, typer.Option(min=0.0, help="Scale of shot and read noise.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 0,
    cohort: Annotated[str, typer.Option(help="Cohort name.")] = "demo",
    codec: Annotated[Codec, typer.Option(help="AVI codec of the Miniscope chunks.")] = Codec.ffv1,
    cell_diameter: Annotated[
        float | None, typer.Option(help="Median soma diameter (px, 4-40; default: 8-15 px cells).")
    ] = None,
    trace_scale: Annotated[float, typer.Option(help="Multiplier of the extraction's trace units.")] = 1.0,
    c_raw: Annotated[bool, typer.Option("--c-raw/--no-c-raw", help="Write C_raw into the .mat.")] = True,
    extraction: Annotated[
        Extraction,
        typer.Option(help="Artifacts drawn by rules, made by a CNMF factorisation of the movie, or both."),
    ] = Extraction.rules,
    verbose: VerboseOption = False,
) -> None:
    """Write a simulated miniscope cohort (videos, CNMF-E results, labels, events)."""
    setup_logging(verbose)
    from cellsift.pipeline.sim import SimulationConfig, simulate_cohort

    options: dict[str, Any] = dict(
        n_animals=animals,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        n_frames=frames,
        fps=fps,
        height=height,
        width=width,
        noise_scale=noise,
        seed=seed,
        cohort=cohort,
        video_codec=codec.value,
        cell_diameter_px=cell_diameter,
        trace_scale=trace_scale,
        write_c_raw=c_raw,
        extraction=extraction.value,
    )
    if density is not None:
        options["cell_density"] = density
    try:
        manifest = simulate_cohort(out, SimulationConfig(**options), progress=echo)
    except CellsiftError as exc:
        raise fail(exc) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    echo(f"simulated cohort written: {manifest}")


@cluster_options(
    workers_help="Workers of the local cluster, one session each at a time.", local=("memory_limit",)
)
def ingest(
    source: Annotated[
        Path, typer.Argument(help="Cohort manifest (CSV or YAML) or a folder laid out as the demo.")
    ],
    lake: LakeOption,
    chunk_frames: Annotated[int, typer.Option(min=1, help="Frames per movie chunk in zarr.")] = 100,
    dask: ClusterOptions = DEFAULT_CLUSTER_OPTIONS,
    wait: WaitOption = False,
    allow_failures: AllowFailuresOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Ingest a cohort into the lake, one Dask task per session; unchanged sessions are skipped, bad ones reported (exit 1)."""
    setup_logging(verbose)
    from cellsift.pipeline.ingest import IngestOptions, ingest_cohort, read_manifest

    done: list[Any] = []

    def report(result: Any) -> None:  # one line per session as it is published
        done.append(result)
        where = f"{result.cohort}/{result.animal}/{result.session}"
        if result.status == "failed":
            typer.echo(f"  FAILED    {where}: {result.error}", err=True)
        else:
            echo(
                f"  {result.status:<9} {where} ({result.n_frames} frames, {result.n_units} units, "
                f"{result.seconds:.1f} s) [{len(done)}/{n_sessions}]"
            )

    try:
        options = IngestOptions(chunk_frames=chunk_frames)
        n_sessions = len(read_manifest(Path(source), check_files=False))  # fails before a cluster starts
        with lake_client(lake, dask, wait=wait, new=True) as client:  # so do the options and a locked lake
            results = ingest_cohort(source, lake, options=options, client=client, progress=report)
    except CellsiftError as exc:
        raise fail(exc) from None
    n_failed = sum(r.status == "failed" for r in results)
    counts = {s: sum(r.status == s for r in results) for s in ("ingested", "unchanged", "failed")}
    echo(
        f"ingest done: {counts['ingested']} ingested, {counts['unchanged']} unchanged, "
        f"{counts['failed']} failed -> lake {lake}"
    )
    if n_failed and not allow_failures:
        raise typer.Exit(code=1)


@cluster_options(
    workers_help="Workers of the local cluster (ignored with --scheduler).",
    local=("threads_per_worker", "memory_limit"),
)
def run(
    lake: LakeOption,
    dask: ClusterOptions = DEFAULT_CLUSTER_OPTIONS,
    k_peaks: Annotated[int, typer.Option(min=1, help="Clips per cell (strongest peaks).")] = 5,
    clip_before: Annotated[int, typer.Option(min=0, help="Frames before the peak.")] = 10,
    clip_after: Annotated[int, typer.Option(min=0, help="Frames after the peak.")] = 10,
    crop_px: Annotated[int, typer.Option(min=8, help="Side of the square crop (px).")] = 32,
    overlap_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Flag cells whose footprint overlap exceeds this.")
    ] = 0.5,
    force: Annotated[bool, typer.Option(help="Recompute sessions that are up to date.")] = False,
    progress: Annotated[
        bool,
        typer.Option(help="Show progress: a bar on a terminal, else a line per tenth of the sessions done."),
    ] = True,
    model: Annotated[
        str, typer.Option(help="Classifier: 'default' (shipped), a registered model id, or a model folder.")
    ] = "default",
    classify: Annotated[bool, typer.Option(help="Classify every cell (p_good, label, reason).")] = True,
    strict: Annotated[
        bool, typer.Option(help="Refuse to apply a model whose card does not match the data (else warn).")
    ] = True,
    wait: WaitOption = False,
    allow_failures: AllowFailuresOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the pipeline over every ingested session, classify every cell, write the cells and sessions tables."""
    setup_logging(verbose)
    from cellsift.pipeline.stages import ClipParams, OverlapParams, PipelineParams, TransientParams

    params = PipelineParams(
        transients=TransientParams(k_peaks=k_peaks),
        clips=ClipParams(n_before=clip_before, n_after=clip_after, crop_px=crop_px),
        overlap=OverlapParams(flag_above=overlap_threshold),
    )
    try:
        with lake_client(lake, dask, wait=wait) as client:
            summary, preds = _run_and_classify(
                lake,
                client,
                params=params,
                force=force,
                progress=progress,
                classify=classify,
                model=model,
                strict=strict,
            )
    except CellsiftError as exc:
        raise fail(exc) from None
    if _report_run(lake, summary, preds) and not allow_failures:
        raise typer.Exit(code=1)


def _run_and_classify(
    lake: Path,
    client: Any,
    *,
    params: Any,
    force: bool,
    progress: bool,
    classify: bool,
    model: str,
    strict: bool,
) -> tuple[Any, Any]:
    from cellsift.pipeline.stages import run_pipeline

    show = show_progress if progress else None
    summary = run_pipeline(lake, client=client, params=params, force=force, progress=show)
    preds = None
    if classify and summary.count("processed") + summary.count("skipped") > 0:
        from cellsift.pipeline.classify import classify_lake

        preds = classify_lake(lake, model, client=client, strict=strict, only_stale=not force, progress=show)
    return summary, preds


def _report_run(lake: Path, summary: Any, preds: Any) -> bool:
    """Print the run's summary; return whether any session failed (to run or to classify)."""
    report_failed_sessions(summary.outcomes)
    echo(
        f"run {summary.run_id}: {summary.count('processed')} processed, "
        f"{summary.count('skipped')} up to date, {summary.count('failed')} failed"
    )
    n_class_failed = 0
    if preds is not None:
        n_class_failed = len(preds.attrs.get("failed", []))
        for c, a, s_, err in preds.attrs.get("failed", []):
            typer.echo(f"  NOT CLASSIFIED {c}/{a}/{s_}: {err}", err=True)
        echo(_classification_line(preds))
        _warn_ood_sessions(preds)
    echo(f"tables: {Path(lake) / 'tables'}  (provenance: {summary.record_path})")
    return bool(summary.n_failed or n_class_failed)


def _classification_line(preds: Any) -> str:
    skipped = int(preds.attrs.get("skipped", 0))
    if len(preds) == 0:
        return f"classification: nothing to do ({skipped} session(s) already classified)"
    n = len(preds)
    good = int((preds["label"] == "good").sum())
    models = ", ".join(sorted(preds["model_id"].astype(str).unique()))
    n_sessions = preds.groupby(["cohort", "animal", "session"]).ngroups
    return (
        f"classification ({models}): {n} cells in {n_sessions} session(s), {good} good ({good / n:.0%}), "
        f"{n - good} bad, {int(preds['ood_flag'].sum())} out of the training distribution"
        + (f"; {skipped} session(s) already classified" if skipped else "")
        + (f"  (provenance: {preds.attrs['record_path']})" if preds.attrs.get("record_path") else "")
    )


def _warn_ood_sessions(preds: Any) -> None:
    from cellsift.pipeline.classify import session_ood

    if len(preds) == 0:
        return
    table = session_ood(preds, log=False)
    for row in table[table["ood_flag"]].itertuples():
        typer.echo(
            f"  WARNING {row.cohort}/{row.animal}/{row.session}: {row.frac_ood:.0%} of cells lie outside "
            "the model's training data; check some labels or fine-tune ('cellsift train --base default')",
            err=True,
        )


def query(
    sql: Annotated[str, typer.Argument(help="SQL over the views cells, sessions, labels, catalog.")],
    lake: LakeOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Save the result as .csv or .parquet.")
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows to print.")] = 40,
) -> None:
    """Run DuckDB SQL over the lake's tables and print (or save) the result."""
    import pandas as pd

    from cellsift.catalog import open_lake

    try:
        if output is not None and output.suffix.lower() not in {".csv", ".parquet"}:
            raise CellsiftError(
                "unknown output type", path=output, field="--output", fix="end the name in .csv or .parquet"
            )
        frame = open_lake(lake).sql(sql)
    except CellsiftError as exc:
        raise fail(exc) from None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".csv":
            frame.to_csv(output, index=False)
        else:
            frame.to_parquet(output, index=False)
        echo(f"{len(frame)} rows written to {output}")
        return
    with pd.option_context("display.max_rows", max_rows, "display.max_columns", 50, "display.width", 200):
        echo(frame.to_string(max_rows=max_rows, index=False))
    echo(f"({len(frame)} rows)")


def catalog(lake: LakeOption) -> None:
    """List the sessions the lake's catalog knows, with status and errors."""
    from cellsift.catalog import Catalog

    try:
        frame = Catalog(lake).to_frame()
    except CellsiftError as exc:
        raise fail(exc) from None
    cols = ["cohort", "animal", "session", "stage", "day", "n_frames", "n_units", "status", "error"]
    echo(frame[cols].to_string(index=False) if len(frame) else "(empty catalog)")


def upgrade(lake: LakeOption) -> None:
    """Bring a lake written by an older cellsift to today's layout (every writer also does this)."""
    from cellsift.catalog import TABLE_LAYOUT_VERSION, Catalog, legacy_partitions, run_lock
    from cellsift.pipeline.provenance import new_run_id

    try:
        Catalog(lake)
        before = len(legacy_partitions(lake))
        with run_lock(Path(lake), run_id=f"upgrade-{new_run_id()}"):  # taking the lock upgrades
            pass
        left = len(legacy_partitions(lake))
    except CellsiftError as exc:
        raise fail(exc) from None
    echo(
        f"upgrade: {before - left} table partition(s) moved to layout {TABLE_LAYOUT_VERSION}, {left} left -> {lake}"
    )
    if left:
        raise typer.Exit(code=1)
