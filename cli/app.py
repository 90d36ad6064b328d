"""The ``cellsift`` command: a thin typer layer over the library.

Library errors (:class:`cellsift.schemas.CellsiftError`) become one readable line on
stderr and exit code 1; nothing here computes anything itself.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cellsift.schemas.errors import CellsiftError

logger = logging.getLogger("cellsift.cli")

app = typer.Typer(
    name="cellsift",
    help="Curate miniscope cell candidates at cohort scale: simulate, ingest, run, query.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LakeOption = Annotated[
    Path, typer.Option("--lake", "-l", help="Lake folder (created by 'cellsift ingest').")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]


class Codec(str, Enum):
    ffv1 = "ffv1"
    gray = "gray"


_NOISY_LOGGERS = ("distributed", "bokeh", "tornado", "numcodecs", "asyncio")


def _setup_logging(verbose: bool) -> None:
    """Warnings (or everything with ``--verbose``) to stderr; progress is echoed separately."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    _quiet_dask(verbose)


def _quiet_dask(verbose: bool) -> None:
    # distributed sets its own logger levels when imported, so call this again after import
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)


def _fail(exc: CellsiftError) -> typer.Exit:
    typer.echo(f"error: {exc.one_line()}", err=True)
    return typer.Exit(code=1)


def _echo(text: str) -> None:
    typer.echo(text)


@app.command()
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
    verbose: VerboseOption = False,
) -> None:
    """Write a simulated miniscope cohort (videos, CNMF-E results, labels, events)."""
    _setup_logging(verbose)
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
    )
    if density is not None:
        options["cell_density"] = density
    try:
        manifest = simulate_cohort(out, SimulationConfig(**options), progress=_echo)
    except CellsiftError as exc:
        raise _fail(exc) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    _echo(f"simulated cohort written: {manifest}")


@app.command()
def ingest(
    source: Annotated[
        Path, typer.Argument(help="Cohort manifest (CSV or YAML) or a folder laid out as the demo.")
    ],
    lake: LakeOption,
    chunk_frames: Annotated[int, typer.Option(min=1, help="Frames per movie chunk in zarr.")] = 100,
    verbose: VerboseOption = False,
) -> None:
    """Ingest a cohort into the lake; unchanged sessions are skipped, bad ones reported."""
    _setup_logging(verbose)
    from cellsift.pipeline.ingest import IngestOptions, ingest_cohort

    def report(result: Any) -> None:
        where = f"{result.cohort}/{result.animal}/{result.session}"
        if result.status == "failed":
            typer.echo(f"  FAILED    {where}: {result.error}", err=True)
        else:
            _echo(f"  {result.status:<9} {where} ({result.n_frames} frames, {result.n_units} units)")

    try:
        results = ingest_cohort(
            source, lake, options=IngestOptions(chunk_frames=chunk_frames), progress=report
        )
    except CellsiftError as exc:
        raise _fail(exc) from None
    n_failed = sum(r.status == "failed" for r in results)
    counts = {s: sum(r.status == s for r in results) for s in ("ingested", "unchanged", "failed")}
    _echo(
        f"ingest done: {counts['ingested']} ingested, {counts['unchanged']} unchanged, "
        f"{counts['failed']} failed -> lake {lake}"
    )
    if n_failed and n_failed == len(results):
        raise typer.Exit(code=1)


def _start_client(
    scheduler: str | None, workers: int, threads: int, memory_limit: str, dashboard_port: int
) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    _quiet_dask(logging.getLogger().level <= logging.DEBUG)
    if scheduler:
        try:
            if scheduler.endswith(".json") and Path(scheduler).exists():
                return Client(scheduler_file=scheduler, timeout="30s"), None
            return Client(scheduler, timeout="30s"), None
        except OSError as exc:
            raise CellsiftError(
                f"cannot connect to the Dask scheduler ({exc})",
                field="--scheduler",
                fix="check the address (tcp://HOST:PORT) or the scheduler file, and that the scheduler runs",
            ) from None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=f":{dashboard_port}",
    )
    return Client(cluster), cluster


@app.command()
def run(
    lake: LakeOption,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address (tcp://host:port) or scheduler file of an existing Dask cluster."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Workers of the local cluster (ignored with --scheduler).")
    ] = min(4, os.cpu_count() or 1),
    threads_per_worker: Annotated[int, typer.Option(min=1)] = 1,
    memory_limit: Annotated[str, typer.Option(help="Memory limit per local worker.")] = "auto",
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port (0: any free port).")] = 8787,
    k_peaks: Annotated[int, typer.Option(min=1, help="Clips per cell (strongest peaks).")] = 5,
    clip_before: Annotated[int, typer.Option(min=0, help="Frames before the peak.")] = 10,
    clip_after: Annotated[int, typer.Option(min=0, help="Frames after the peak.")] = 10,
    crop_px: Annotated[int, typer.Option(min=8, help="Side of the square crop (px).")] = 32,
    overlap_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Flag cells whose footprint overlap exceeds this.")
    ] = 0.5,
    force: Annotated[bool, typer.Option(help="Recompute sessions that are up to date.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a terminal progress bar.")] = True,
    model: Annotated[
        str, typer.Option(help="Classifier: 'default' (shipped), a registered model id, or a model folder.")
    ] = "default",
    classify: Annotated[bool, typer.Option(help="Classify every cell (p_good, label, reason).")] = True,
    strict: Annotated[
        bool, typer.Option(help="Refuse to apply a model whose card does not match the data (else warn).")
    ] = True,
    verbose: VerboseOption = False,
) -> None:
    """Run the pipeline over every ingested session, classify every cell, write the cells and sessions tables."""
    _setup_logging(verbose)
    from cellsift.pipeline.stages import (
        ClipParams,
        OverlapParams,
        PipelineParams,
        TransientParams,
        run_pipeline,
    )

    params = PipelineParams(
        transients=TransientParams(k_peaks=k_peaks),
        clips=ClipParams(n_before=clip_before, n_after=clip_after, crop_px=crop_px),
        overlap=OverlapParams(flag_above=overlap_threshold),
    )
    client = cluster = None
    try:
        from cellsift.catalog import Catalog

        Catalog(lake)  # fail fast, before starting a cluster, if there is no lake
        client, cluster = _start_client(
            scheduler, workers, threads_per_worker, memory_limit, dashboard_port
        )
        _echo(f"Dask dashboard: {client.dashboard_link}")

        def show_progress(futures: Any) -> None:
            if progress:
                from distributed import progress as dask_progress

                dask_progress(futures)
                _echo("")

        summary = run_pipeline(lake, client=client, params=params, force=force, progress=show_progress)
        preds = None
        if classify and summary.count("processed") + summary.count("skipped") > 0:
            from cellsift.pipeline.classify import classify_lake

            preds = classify_lake(lake, model, client=client, strict=strict, only_stale=not force,
                                  progress=show_progress)
    except CellsiftError as exc:
        raise _fail(exc) from None
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    for o in summary.outcomes:
        if o.status == "failed":
            typer.echo(f"  FAILED    {o.cohort}/{o.animal}/{o.session}: {o.error}", err=True)
    _echo(
        f"run {summary.run_id}: {summary.count('processed')} processed, "
        f"{summary.count('skipped')} up to date, {summary.count('failed')} failed"
    )
    n_class_failed = 0
    if preds is not None:
        n_class_failed = len(preds.attrs.get("failed", []))
        for c, a, s_, err in preds.attrs.get("failed", []):
            typer.echo(f"  NOT CLASSIFIED {c}/{a}/{s_}: {err}", err=True)
        _echo(_classification_line(preds))
        _warn_ood_sessions(preds)
    _echo(f"tables: {Path(lake) / 'tables'}  (provenance: {summary.record_path})")
    if summary.n_failed or n_class_failed:
        raise typer.Exit(code=1)


def _classification_line(preds: Any) -> str:
    skipped = int(preds.attrs.get("skipped", 0))
    if len(preds) == 0:
        return f"classification: nothing to do ({skipped} session(s) already classified)"
    n = len(preds)
    good = int((preds["label"] == "good").sum())
    models = ", ".join(sorted(preds["model_id"].astype(str).unique()))
    n_sessions = preds.groupby(["cohort", "animal", "session"]).ngroups
    return (f"classification ({models}): {n} cells in {n_sessions} session(s), {good} good ({good / n:.0%}), "
            f"{n - good} bad, {int(preds['ood_flag'].sum())} out of the training distribution"
            + (f"; {skipped} session(s) already classified" if skipped else "")
            + (f"  (provenance: {preds.attrs['record_path']})" if preds.attrs.get("record_path") else ""))


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


@app.command()
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

    from cellsift.catalog.lake import open_lake

    try:
        if output is not None and output.suffix.lower() not in {".csv", ".parquet"}:
            raise CellsiftError(
                "unknown output type", path=output, field="--output", fix="end the name in .csv or .parquet"
            )
        frame = open_lake(lake).sql(sql)
    except CellsiftError as exc:
        raise _fail(exc) from None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix.lower() == ".csv":
            frame.to_csv(output, index=False)
        else:
            frame.to_parquet(output, index=False)
        _echo(f"{len(frame)} rows written to {output}")
        return
    with pd.option_context("display.max_rows", max_rows, "display.max_columns", 50, "display.width", 200):
        _echo(frame.to_string(max_rows=max_rows, index=False))
    _echo(f"({len(frame)} rows)")


@app.command()
def analyze(
    lake: LakeOption,
    scheduler: Annotated[
        str | None, typer.Option(help="Address or scheduler file of an existing Dask cluster.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Workers of the local cluster.")] = min(4, os.cpu_count() or 1),
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port (0: any free port).")] = 8787,
    force: Annotated[bool, typer.Option(help="Rebuild sessions that are up to date.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Build the fear-learning tables: traces, events, trial_responses, cell_summary, behaviour."""
    _setup_logging(verbose)
    from cellsift.pipeline.analysis import build_analysis_tables

    client = cluster = None
    try:
        from cellsift.catalog import Catalog

        Catalog(lake)
        client, cluster = _start_client(scheduler, workers, 1, "auto", dashboard_port)
        _echo(f"Dask dashboard: {client.dashboard_link}")
        summary = build_analysis_tables(lake, client=client, force=force)
    except CellsiftError as exc:
        raise _fail(exc) from None
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    for o in summary.outcomes:
        if o.status == "failed":
            typer.echo(f"  FAILED    {o.cohort}/{o.animal}/{o.session}: {o.error}", err=True)
    _echo(
        f"analysis: {summary.count('processed')} processed, {summary.count('skipped')} up to date, "
        f"{summary.count('failed')} failed -> {Path(lake) / 'tables'}"
    )
    if summary.n_failed:
        raise typer.Exit(code=1)


@app.command()
def report(
    lake: LakeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG figures and index.html.")],
    verbose: VerboseOption = False,
) -> None:
    """Render lab-meeting figures (footprints, CS+/CS- heatmaps, selectivity across stages) + HTML."""
    _setup_logging(verbose)
    from cellsift.pipeline.analysis import render_report

    try:
        index = render_report(lake, out)
    except CellsiftError as exc:
        raise _fail(exc) from None
    _echo(f"report: {index}")


class ModelKind(str, Enum):
    ensemble = "ensemble"
    features = "features"
    clips = "clips"


class Protocol(str, Enum):
    heldout = "heldout"
    cv = "cv"
    capstone = "capstone"


LabelsOption = Annotated[
    Path | None,
    typer.Option(help="CSV of labels (animal, session, unit_id, label[, cohort, reason]); default: the lake's labels."),
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", help="Use only lake labels of this source (repeatable), e.g. simulator, minian."),
]


def _label_spec(labels: Path | None, source: list[str] | None) -> Any:
    from cellsift.pipeline.classify import LabelSpec

    return LabelSpec(csv=str(labels) if labels is not None else None, sources=tuple(source) if source else None)


@app.command()
def train(
    lake: Annotated[Path | None, typer.Option("--lake", "-l", help="Lake with labelled, processed cells.")] = None,
    kind: Annotated[ModelKind, typer.Option(help="Model to train.")] = ModelKind.ensemble,
    base: Annotated[
        str | None,
        typer.Option(help="Fine-tune this model ('default', a registered id or a folder) instead of training anew."),
    ] = None,
    labels: LabelsOption = None,
    source: SourceOption = None,
    model_id: Annotated[str | None, typer.Option(help="Registry id of the new model.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a registered model with the same id.")] = False,
    default: Annotated[
        Path | None,
        typer.Option("--default", help="Rebuild the shipped default model into this folder (simulates its cohorts)."),
    ] = None,
    work: Annotated[Path | None, typer.Option(help="With --default: keep the simulated lake here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Train (or fine-tune) a classifier on a lake's labels and register it in LAKE/models."""
    _setup_logging(verbose)
    import time

    t0 = time.perf_counter()
    try:
        if default is not None:
            import distributed  # noqa: F401  (sets its own log levels on import: quiet them after)

            from cellsift.pipeline.classify import train_default_model

            _quiet_dask(verbose)
            _echo("rebuilding the default model from its simulated cohorts (about 15-30 min on 2 CPU cores)")
            out = train_default_model(default, work_dir=work)
            _echo(f"default model written to {out} in {time.perf_counter() - t0:.0f} s")
            return
        if lake is None:
            raise CellsiftError("no lake given", field="--lake", fix="pass --lake LAKE (or --default OUT)")
        spec = _label_spec(labels, source)
        if base is not None:
            from cellsift.pipeline.classify import fine_tune_on_lake

            mdl, path = fine_tune_on_lake(lake, base=base, labels=spec, model_id=model_id, seed=seed,
                                          overwrite=overwrite)
        else:
            from cellsift.pipeline.classify import train_on_lake

            mdl, path = train_on_lake(lake, kind=kind.value, labels=spec, model_id=model_id, seed=seed,
                                      overwrite=overwrite)
    except CellsiftError as exc:
        raise _fail(exc) from None
    card = mdl.card
    oof = dict(card.metrics).get("out_of_fold", {}).get("p_good") if card is not None else None
    _echo(f"model {mdl.model_id} ({mdl.kind}) trained on {card.training.get('n_cells')} cells "
          f"in {time.perf_counter() - t0:.0f} s -> {path}")
    if oof:
        _echo(f"  out-of-fold (grouped by animal): balanced accuracy {oof['balanced_accuracy']:.3f}, "
              f"ROC-AUC {oof['roc_auc']:.3f}")
    _echo(f"apply it: cellsift run --lake {lake} --model {mdl.model_id}")


@app.command()
def evaluate(
    lake: LakeOption,
    model: Annotated[str, typer.Option(help="Model to evaluate (heldout protocol).")] = "default",
    protocol: Annotated[
        Protocol,
        typer.Option(help="heldout: score MODEL on the lake's labels; cv: grouped cross-validation of KIND; "
                          "capstone: replay the capstone's Table 2."),
    ] = Protocol.heldout,
    kind: Annotated[ModelKind, typer.Option(help="Model kind trained by the cv protocol.")] = ModelKind.features,
    models: Annotated[
        str, typer.Option(help="Comma-separated model kinds trained by the capstone protocol.")
    ] = "ensemble,clips",
    test_cohort: Annotated[
        str | None, typer.Option(help="Capstone: draw the 56 test cells from this cohort.")
    ] = None,
    labels: LabelsOption = None,
    source: SourceOption = None,
    report: Annotated[Path | None, typer.Option(help="Folder for report.json and PNG figures.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    strict: Annotated[bool, typer.Option(help="Refuse on a model-card mismatch (else warn).")] = True,
    verbose: VerboseOption = False,
) -> None:
    """Evaluate classifiers: balanced accuracy, ROC/PR-AUC, confusion, calibration; or the capstone table."""
    _setup_logging(verbose)
    spec = _label_spec(labels, source)
    try:
        if protocol is Protocol.capstone:
            from cellsift.pipeline.classify import capstone_on_lake, format_capstone_table

            kinds = tuple(m.strip() for m in models.split(",") if m.strip())
            table = capstone_on_lake(lake, test_cohort=test_cohort, models=kinds, labels=spec, seed=seed,
                                     report_dir=report)
            _echo(format_capstone_table(table))
        else:
            if protocol is Protocol.cv:
                from cellsift.pipeline.classify import cross_validate_on_lake

                metrics = cross_validate_on_lake(lake, kind=kind.value, labels=spec, seed=seed, report_dir=report)
                heads = {f"{kind.value} (out of fold, grouped by animal)": metrics["p_good"]}
            else:
                from cellsift.pipeline.classify import evaluate_on_lake

                metrics = evaluate_on_lake(lake, model, labels=spec, report_dir=report, strict=strict)
                heads = {name: metrics[name] for name in ("p_features", "p_clips", "p_good") if name in metrics}
            for name, m in heads.items():
                _echo(f"{name:40s} n={m['n']}  balanced accuracy {m['balanced_accuracy']:.3f}  "
                      f"ROC-AUC {m['roc_auc']:.3f}  PR-AUC(good) {m['pr_auc_good']:.3f}")
            m = heads[list(heads)[-1]]
            _echo(f"confusion (rows true bad/good, columns predicted bad/good): {m['confusion']['matrix']}")
    except CellsiftError as exc:
        raise _fail(exc) from None
    if report is not None:
        _echo(f"report: {report}")


@app.command()
def montage(
    lake: LakeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file (or folder) to write.")],
    session: Annotated[str | None, typer.Option(help="Only this session.")] = None,
    n: Annotated[int, typer.Option(min=1, max=20, help="Cells per row.")] = 8,
    verbose: VerboseOption = False,
) -> None:
    """Show the most confident good, most confident bad and most uncertain cells, to judge the calls."""
    _setup_logging(verbose)
    from cellsift.pipeline.classify import classified_montage

    try:
        path = classified_montage(lake, out, session=session, n=n)
    except CellsiftError as exc:
        raise _fail(exc) from None
    _echo(f"montage: {path}")


models_app = typer.Typer(help="The model registry: the shipped default and the lake's models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    lake: Annotated[Path | None, typer.Option("--lake", "-l", help="Also list this lake's models.")] = None,
) -> None:
    """List models with their training data and out-of-fold metrics."""
    import pandas as pd

    from cellsift.pipeline.classify import list_models

    try:
        frame = list_models(lake)
    except CellsiftError as exc:
        raise _fail(exc) from None
    cols = ["model_id", "card_id", "kind", "source", "created_at", "n_train_cells", "n_animals",
            "balanced_accuracy", "roc_auc", "parent_model_id"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        _echo(frame[cols].astype(object).where(frame[cols].notna(), "-").to_string(index=False)
              if len(frame) else "(no models)")


@app.command("catalog")
def show_catalog(lake: LakeOption) -> None:
    """List the sessions the lake's catalog knows, with status and errors."""
    from cellsift.catalog import Catalog

    try:
        frame = Catalog(lake).to_frame()
    except CellsiftError as exc:
        raise _fail(exc) from None
    cols = ["cohort", "animal", "session", "stage", "day", "n_frames", "n_units", "status", "error"]
    _echo(frame[cols].to_string(index=False) if len(frame) else "(empty catalog)")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder for the demo: OUT/raw and OUT/lake.")] = Path("demo"),
    workers: Annotated[int, typer.Option(min=1)] = min(4, os.cpu_count() or 1),
    dashboard_port: Annotated[int, typer.Option()] = 8787,
    verbose: VerboseOption = False,
) -> None:
    """Simulate the demo cohort, ingest it and run the pipeline: the whole path in one command."""
    raw, lake = out / "raw", out / "lake"
    if not (raw / "cohort.csv").exists():
        simulate(raw, verbose=verbose)
    else:
        _echo(f"using the simulated cohort in {raw}")
    ingest(raw, lake, verbose=verbose)
    run(lake, workers=workers, dashboard_port=dashboard_port, verbose=verbose)
    analyze(lake, workers=workers, dashboard_port=dashboard_port, verbose=verbose)
    report(lake, out / "report", verbose=verbose)
    _echo("")
    _echo("try:")
    _echo(
        f"  cellsift query --lake {lake} \"SELECT animal, stage, count(*) AS cells, "
        "sum(overlap_flag::INT) AS overlapping FROM cells GROUP BY ALL ORDER BY ALL\""
    )
    _echo(
        f"  cellsift query --lake {lake} \"SELECT animal, label, reason, count(*) AS cells, "
        "round(avg(p_good), 2) AS mean_p_good FROM cells GROUP BY ALL ORDER BY ALL\""
    )
    _echo(f"  cellsift montage --lake {lake} --out {out / 'calls.png'}")
    _echo(
        f"  cellsift query --lake {lake} \"SELECT animal, stage, count(*) AS cs_plus_cells FROM cell_summary "
        "WHERE is_good AND cs_plus_selective GROUP BY ALL ORDER BY ALL\""
    )
    _echo(f"  python -c \"import cellsift; print(cellsift.open_lake('{lake}').cells.head())\"")
    _echo(f"  open {out / 'report' / 'index.html'}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
