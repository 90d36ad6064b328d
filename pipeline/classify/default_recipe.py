"""The shipped default model: its recipe (simulated cohorts, model settings, seeds) and its rebuild.

:func:`train_default_model` rebuilds the model that ships inside the package
(``cellsift/pipeline/classify/default_model``) from simulated cohorts, deterministically
(fixed seeds): it simulates the cohorts of :data:`DEFAULT_RECIPE`, ingests and processes
them into one lake (:func:`build_simulated_lake`), and trains the ensemble on every
labelled, non-flagged cell.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Final

from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.labels import LabelSpec
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.pipeline.classify.training import attach_oof_metrics, train_model
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RECIPE",
    "CohortSpec",
    "DefaultModelRecipe",
    "build_simulated_lake",
    "recipe_dict",
    "train_default_model",
]


@dataclass(frozen=True)
class CohortSpec:
    """One simulated cohort: ``SimulationConfig`` overrides (cohort name and seed included).

    ``cell_diameter_px`` (median soma diameter, px; ``None``: the simulator's 8-15 px),
    ``trace_scale`` (the extractor's trace units), ``write_c_raw`` (``False``: no raw
    traces, as Minian without YrA) and ``extraction`` (``"rules"``, ``"cnmf"`` or
    ``"mixed"``) set the cohort's domain.
    """

    cohort: str
    seed: int
    noise_scale: float = 1.0
    cell_density: float = 16.0
    background_scale: float = 1.0
    artifact_fraction: float = 0.35
    motion_px: float = 1.0
    n_animals: int = 3
    n_frames: int = 2000
    height: int = 160
    width: int = 160
    fps: float = 20.0
    cell_diameter_px: float | None = None
    trace_scale: float = 1.0
    write_c_raw: bool = True
    extraction: str = "rules"

    def config(self) -> Any:
        """The ``SimulationConfig`` of this cohort."""
        from cellsift.pipeline.sim import SimulationConfig

        return SimulationConfig(
            n_animals=self.n_animals,
            n_frames=self.n_frames,
            height=self.height,
            width=self.width,
            cell_density=self.cell_density,
            artifact_fraction=self.artifact_fraction,
            noise_scale=self.noise_scale,
            background_scale=self.background_scale,
            motion_px=self.motion_px,
            seed=self.seed,
            cohort=self.cohort,
            fps=self.fps,
            cell_diameter_px=self.cell_diameter_px,
            trace_scale=self.trace_scale,
            write_c_raw=self.write_c_raw,
            extraction=self.extraction,
        )


#: The default model's training domains: cell diameters 6.5-24 px, 5-30 Hz, 1 000-2 000
#: frames (inputs are rates, not counts), fields 96-224 px, noise x0.7-1.6, trace units
#: x0.05-20, with and without raw traces, rule-drawn and CNMF-extracted artifacts, and the
#: simulator's default settings (the demo cohort's domain).
_DOMAIN_COHORTS: Final = (
    CohortSpec(
        "dom-a",
        seed=1101,
        cell_diameter_px=6.5,
        fps=20.0,
        n_frames=1500,
        height=96,
        width=96,
        noise_scale=0.8,
        trace_scale=1.0,
        extraction="rules",
        n_animals=2,
    ),
    CohortSpec(
        "dom-b",
        seed=1202,
        cell_diameter_px=11.5,
        fps=15.0,
        n_frames=1500,
        height=128,
        width=128,
        noise_scale=1.0,
        trace_scale=0.15,
        extraction="cnmf",
        n_animals=2,
    ),
    CohortSpec(
        "dom-c",
        seed=1303,
        cell_diameter_px=16.0,
        fps=10.0,
        n_frames=1500,
        height=160,
        width=160,
        noise_scale=1.3,
        trace_scale=5.0,
        extraction="mixed",
        motion_px=1.5,
        n_animals=2,
    ),
    CohortSpec(
        "dom-d",
        seed=1404,
        cell_diameter_px=22.0,
        fps=30.0,
        n_frames=1500,
        height=192,
        width=192,
        noise_scale=1.1,
        trace_scale=0.05,
        extraction="rules",
        background_scale=1.4,
        write_c_raw=False,
        n_animals=2,
    ),
    CohortSpec(
        "dom-e",
        seed=1505,
        cell_diameter_px=9.0,
        fps=8.0,
        n_frames=1500,
        height=96,
        width=96,
        noise_scale=1.6,
        trace_scale=20.0,
        extraction="cnmf",
        motion_px=2.0,
        n_animals=2,
    ),
    CohortSpec(
        "dom-f",
        seed=1606,
        cell_diameter_px=13.5,
        fps=25.0,
        n_frames=2000,
        height=128,
        width=128,
        noise_scale=0.7,
        trace_scale=1.0,
        extraction="rules",
        background_scale=1.2,
        n_animals=2,
    ),
    CohortSpec(
        "dom-g",
        seed=1707,
        cell_diameter_px=19.0,
        fps=20.0,
        n_frames=1500,
        height=160,
        width=160,
        noise_scale=0.9,
        trace_scale=2.0,
        extraction="cnmf",
        write_c_raw=False,
        n_animals=2,
    ),
    CohortSpec(
        "dom-h",
        seed=1808,
        cell_diameter_px=11.5,
        fps=20.0,
        n_frames=2000,
        height=128,
        width=128,
        noise_scale=1.0,
        trace_scale=1.0,
        extraction="rules",
        n_animals=2,
    ),
    CohortSpec(
        "dom-i",
        seed=1909,
        cell_diameter_px=24.0,
        fps=5.0,
        n_frames=1000,
        height=224,
        width=224,
        noise_scale=1.2,
        trace_scale=0.5,
        cell_density=24.0,
        extraction="cnmf",
        n_animals=2,
    ),
)


@dataclass(frozen=True)
class DefaultModelRecipe:
    """How the shipped default model is made (cohorts, model settings, seed)."""

    cohorts: tuple[CohortSpec, ...] = _DOMAIN_COHORTS
    kind: str = "ensemble"
    seed: int = 0
    clip_config: ClipModelConfig = field(default_factory=lambda: ClipModelConfig(epochs=40, patience=6))
    n_folds: int = 3
    model_id: str = "cellsift-default-v3"
    fps: float = 20.0

    def domain_ranges(self) -> dict[str, list[Any]]:
        """The ranges of the cohorts' domain settings, for the model card."""
        out: dict[str, list[Any]] = {}
        for name in ("cell_diameter_px", "fps", "n_frames", "height", "noise_scale", "trace_scale"):
            values = [float(getattr(c, name)) for c in self.cohorts if getattr(c, name) is not None]
            if values:
                out[name] = [min(values), max(values)]
        out["extraction"] = sorted({c.extraction for c in self.cohorts})
        out["write_c_raw"] = sorted({c.write_c_raw for c in self.cohorts})
        return out


DEFAULT_RECIPE: Final = DefaultModelRecipe()


def build_simulated_lake(
    lake: str | PathLike[str],
    cohorts: Sequence[CohortSpec],
    *,
    client: Any | None = None,
    raw_dir: str | PathLike[str] | None = None,
    n_workers: int = 2,
) -> Path:
    """Simulate, ingest and process cohorts into one lake.

    Parameters
    ----------
    lake
        Lake folder (created).
    cohorts
        Cohorts to simulate.
    client
        A ``distributed.Client``; default: a local cluster of ``n_workers`` processes.
    raw_dir
        Where the simulated raw files go (default: a temporary folder, removed after).
    n_workers
        Worker processes of the local cluster.

    Returns
    -------
    pathlib.Path
        The lake folder.
    """
    from cellsift.pipeline.ingest import ingest_cohort
    from cellsift.pipeline.sim import simulate_cohort
    from cellsift.pipeline.stages import run_pipeline

    lake = Path(lake)
    with _scratch_folder(raw_dir, prefix="cellsift-sim-") as raw_root:
        for spec in cohorts:
            t0 = time.perf_counter()
            simulate_cohort(raw_root / spec.cohort, spec.config())
            results = ingest_cohort(raw_root / spec.cohort, lake)
            failed = [r for r in results if r.status == "failed"]
            if failed:
                raise LakeError(f"simulated cohort {spec.cohort} failed to ingest: {failed[0]}", path=lake)
            logger.info("cohort %s simulated and ingested in %.0f s", spec.cohort, time.perf_counter() - t0)
        if client is None:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as own,
            ):
                summary = run_pipeline(lake, client=own)
        else:
            summary = run_pipeline(lake, client=client)
        if summary.n_failed:
            bad = [o for o in summary.outcomes if o.status == "failed"]
            raise LakeError(f"pipeline failed on {len(bad)} session(s): {bad[0].error}", path=lake)
    return lake


def train_default_model(
    out_dir: str | PathLike[str],
    *,
    recipe: DefaultModelRecipe = DEFAULT_RECIPE,
    work_dir: str | PathLike[str] | None = None,
    client: Any | None = None,
) -> Path:
    """Rebuild the shipped default model from simulated cohorts (deterministic).

    Simulates the recipe's cohorts, ingests and processes them (local Dask cluster
    unless ``client`` is given), trains the ensemble on every labelled, non-flagged
    cell, cross-validates nothing (the metrics on the card come from the ensemble's
    out-of-fold calibration predictions, grouped by animal) and writes the model folder.

    Parameters
    ----------
    out_dir
        Model folder to write (e.g. ``pipeline/classify/default_model``); replaced if present.
    recipe
        Cohorts and model settings.
    work_dir
        Where the simulated lake is built (default: a temporary folder, removed after).
    client
        Optional ``distributed.Client`` for the pipeline runs.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    import torch

    out = Path(out_dir)
    with _scratch_folder(work_dir, prefix="cellsift-default-") as work:
        work.mkdir(parents=True, exist_ok=True)
        lake = work / "lake"
        if not (lake / "tables" / "cells").exists():
            build_simulated_lake(lake, recipe.cohorts, client=client, raw_dir=work / "raw")
        torch.manual_seed(recipe.seed)
        data = load_cell_data(
            lake,
            labels=LabelSpec(sources=("simulator",)),
            model_crop=recipe.clip_config.model_crop,
            pool=recipe.clip_config.pool,
            target_fps=recipe.fps,
        )
        t0 = time.perf_counter()
        model = train_model(
            data,
            recipe.kind,
            seed=recipe.seed,
            clip_config=recipe.clip_config,
            model_id=recipe.model_id,
            n_folds=recipe.n_folds,
        )
        seconds = time.perf_counter() - t0
        attach_oof_metrics(model)
        card = model.require_card()
        metrics = {
            **dict(card.metrics),
            "train_seconds": round(seconds, 1),
            "train_cells_per_second": round(len(data) / max(seconds, 1e-9), 2),
        }
        training = {
            **dict(card.training),
            "recipe": recipe_dict(recipe),
            "domain_ranges": recipe.domain_ranges(),
        }
        model.card = replace(card, metrics=metrics, training=training)
        staging = out.with_name(f".{out.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        model.save(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        logger.info("default model written to %s (%.0f s training)", out, seconds)
        return out


@contextmanager
def _scratch_folder(folder: str | PathLike[str] | None, *, prefix: str) -> Iterator[Path]:
    """``folder`` as a path, or (``None``) a temporary folder removed on exit."""
    if folder is not None:
        yield Path(folder)
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recipe_dict(recipe: DefaultModelRecipe) -> dict[str, Any]:
    """The recipe as JSON-able data, as the model card records it."""
    d = asdict(recipe)
    d["cohorts"] = [asdict(c) for c in recipe.cohorts]
    return d
