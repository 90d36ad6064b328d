"""Commands for classifiers: train, evaluate, montage and the model registry (models list)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cellsift.cli._common import (
    LakeOption,
    VerboseOption,
    echo,
    fail,
    quiet_dask,
    setup_logging,
)
from cellsift.schemas import CellsiftError, ParameterError

__all__ = ["evaluate", "models_app", "montage", "train"]


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
    typer.Option(
        help="CSV of labels (animal, session, unit_id, label[, cohort, reason]); default: the lake's labels."
    ),
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source", help="Use only lake labels of this source (repeatable), e.g. simulator, minian."
    ),
]


def _label_spec(labels: Path | None, source: list[str] | None) -> Any:
    from cellsift.pipeline.classify import LabelSpec

    return LabelSpec(
        csv=str(labels) if labels is not None else None, sources=tuple(source) if source else None
    )


class _EchoHandler(logging.Handler):
    """Progress lines (``cellsift.progress`` at INFO) printed on stdout as they come."""

    def emit(self, record: logging.LogRecord) -> None:
        echo(self.format(record))


@contextmanager
def _show_progress() -> Iterator[None]:
    """Print the library's progress lines while the block runs (``cellsift.progress``)."""
    from cellsift.pipeline.classify import PROGRESS_LOGGER

    log = logging.getLogger(PROGRESS_LOGGER)
    handler = _EchoHandler(logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def train(
    lake: Annotated[
        Path | None, typer.Option("--lake", "-l", help="Lake with labelled, processed cells.")
    ] = None,
    kind: Annotated[ModelKind, typer.Option(help="Model to train.")] = ModelKind.ensemble,
    base: Annotated[
        str | None,
        typer.Option(
            help="Fine-tune this model ('default', a registered id or a folder) instead of training anew."
        ),
    ] = None,
    labels: LabelsOption = None,
    source: SourceOption = None,
    model_id: Annotated[str | None, typer.Option(help="Registry id of the new model.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a registered model with the same id.")] = False,
    default: Annotated[
        Path | None,
        typer.Option(
            "--default", help="Rebuild the shipped default model into this folder (simulates its cohorts)."
        ),
    ] = None,
    work: Annotated[Path | None, typer.Option(help="With --default: keep the simulated lake here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Train (or fine-tune) a classifier on a lake's labels and register it in LAKE/models."""
    setup_logging(verbose)
    import time

    t0 = time.perf_counter()
    try:
        if default is not None:
            import distributed  # noqa: F401  (sets its own log levels on import: quiet them after)

            from cellsift.pipeline.classify import train_default_model

            quiet_dask(verbose)
            echo("rebuilding the default model from its simulated cohorts (about 15-30 min on 2 CPU cores)")
            out = train_default_model(default, work_dir=work)
            echo(f"default model written to {out} in {time.perf_counter() - t0:.0f} s")
            return
        if lake is None:
            raise CellsiftError("no lake given", field="--lake", fix="pass --lake LAKE (or --default OUT)")
        spec = _label_spec(labels, source)
        with _show_progress():
            if base is not None:
                from cellsift.pipeline.classify import fine_tune_on_lake

                mdl, path = fine_tune_on_lake(
                    lake, base=base, labels=spec, model_id=model_id, seed=seed, overwrite=overwrite
                )
            else:
                from cellsift.pipeline.classify import train_on_lake

                mdl, path = train_on_lake(
                    lake, kind=kind.value, labels=spec, model_id=model_id, seed=seed, overwrite=overwrite
                )
    except CellsiftError as exc:
        raise fail(exc) from None
    card = mdl.card
    oof = dict(card.metrics).get("out_of_fold", {}).get("p_good") if card is not None else None
    echo(
        f"model {mdl.model_id} ({mdl.kind}) trained on {card.training.get('n_cells')} cells "
        f"in {time.perf_counter() - t0:.0f} s -> {path}"
    )
    if oof:
        echo(
            f"  out-of-fold (grouped by animal): balanced accuracy {oof['balanced_accuracy']:.3f}, "
            f"ROC-AUC {oof['roc_auc']:.3f}"
        )
    echo(f"apply it: cellsift run --lake {lake} --model {mdl.model_id}")


def evaluate(
    lake: LakeOption,
    model: Annotated[str, typer.Option(help="Model to evaluate (heldout protocol).")] = "default",
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="heldout: score MODEL on the lake's labels; cv: grouped cross-validation of KIND; "
            "capstone: replay the capstone's Table 2."
        ),
    ] = Protocol.heldout,
    kind: Annotated[
        ModelKind, typer.Option(help="Model kind trained by the cv protocol.")
    ] = ModelKind.features,
    models: Annotated[
        str, typer.Option(help="Comma-separated model kinds trained by the capstone protocol.")
    ] = "ensemble,clips",
    test_cohort: Annotated[
        str | None,
        typer.Option(
            help="Capstone: draw the 56 test cells from this cohort of the lake (train on the others); "
            "default: hold out a quarter of the animals."
        ),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Capstone: balanced training-set sizes, e.g. 377,300,150,50 (the default, scaled "
            "down when the lake has too few labelled cells)."
        ),
    ] = None,
    labels: LabelsOption = None,
    source: SourceOption = None,
    report: Annotated[Path | None, typer.Option(help="Folder for report.json and PNG figures.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    strict: Annotated[bool, typer.Option(help="Refuse on a model-card mismatch (else warn).")] = True,
    verbose: VerboseOption = False,
) -> None:
    """Evaluate classifiers: balanced accuracy, ROC/PR-AUC, confusion, calibration; or the capstone table."""
    setup_logging(verbose)
    spec = _label_spec(labels, source)
    try:
        if protocol is not Protocol.capstone and (sizes is not None or test_cohort is not None):
            raise ParameterError(
                "--sizes and --test-cohort apply to the capstone protocol only",
                field="--protocol",
                fix="add --protocol capstone, or leave those options out",
            )
        if protocol is Protocol.capstone:
            from cellsift.pipeline.classify import capstone_on_lake, format_capstone_table, parse_sizes

            kinds = tuple(m.strip() for m in models.split(",") if m.strip())
            table = capstone_on_lake(
                lake,
                test_cohort=test_cohort,
                models=kinds,
                labels=spec,
                seed=seed,
                sizes=parse_sizes(sizes) if sizes is not None else None,
                report_dir=report,
            )
            echo(format_capstone_table(table))
        else:
            if protocol is Protocol.cv:
                from cellsift.pipeline.classify import cross_validate_on_lake

                metrics = cross_validate_on_lake(
                    lake, kind=kind.value, labels=spec, seed=seed, report_dir=report
                )
                heads = {f"{kind.value} (out of fold, grouped by animal)": metrics["p_good"]}
            else:
                from cellsift.pipeline.classify import evaluate_on_lake

                metrics = evaluate_on_lake(lake, model, labels=spec, report_dir=report, strict=strict)
                heads = {
                    name: metrics[name] for name in ("p_features", "p_clips", "p_good") if name in metrics
                }
            for name, m in heads.items():
                echo(
                    f"{name:40s} n={m['n']}  balanced accuracy {m['balanced_accuracy']:.3f}  "
                    f"ROC-AUC {m['roc_auc']:.3f}  PR-AUC(good) {m['pr_auc_good']:.3f}"
                )
            m = heads[list(heads)[-1]]
            echo(f"confusion (rows true bad/good, columns predicted bad/good): {m['confusion']['matrix']}")
    except CellsiftError as exc:
        raise fail(exc) from None
    if report is not None:
        echo(f"report: {report}")


def montage(
    lake: LakeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file (or folder) to write.")],
    session: Annotated[str | None, typer.Option(help="Only this session.")] = None,
    n: Annotated[int, typer.Option(min=1, max=20, help="Cells per row.")] = 8,
    verbose: VerboseOption = False,
) -> None:
    """Show the most confident good, most confident bad and most uncertain cells, to judge the calls."""
    setup_logging(verbose)
    from cellsift.pipeline.classify import classified_montage

    try:
        path = classified_montage(lake, out, session=session, n=n)
    except CellsiftError as exc:
        raise fail(exc) from None
    echo(f"montage: {path}")


models_app = typer.Typer(
    help="The model registry: the shipped default and the lake's models.", no_args_is_help=True
)


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
        raise fail(exc) from None
    hidden = ("cohorts", "pipeline_version", "fps", "path")  # too wide for a terminal
    cols = [c for c in frame.columns if c not in hidden]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        echo(
            frame[cols].astype(object).where(frame[cols].notna(), "-").to_string(index=False)
            if len(frame)
            else "(no models)"
        )
