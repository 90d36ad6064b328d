"""Training data from a lake, grouped cross-validation, training, fine-tuning and the default model.

Labels come from the lake's ``labels`` table (simulator ground truth or imported
curation labels, optionally filtered by ``source``) or from a CSV file with columns
``animal, session, unit_id, label`` (``cohort`` and ``reason`` optional). They are
joined with the ``cells`` table and, for models that read clips, with each session's
clip store. Cells flagged by the overlap filter (``overlap_flag``) keep their flag in
the lake and are left out of training (and, by default, of evaluation).

Cross-validation is grouped by animal (``cohort/animal``): no fold is ever scored on an
animal it trained on (:func:`grouped_folds` checks this).

:func:`train_default_model` rebuilds the model that ships inside the package, from
simulated cohorts, deterministically (fixed seeds).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas.errors import InputFormatError, LakeError

from cellsift.pipeline.classify.clip_model import ClipClassifier, ClipModelConfig, read_clip_store
from cellsift.pipeline.classify.base import ID_COLUMNS, REASONS, CellClassifier, CellData, labels_to_int

logger = logging.getLogger(__name__)

__all__ = [
    "LabelSpec",
    "read_labels_csv",
    "load_labels",
    "load_cell_data",
    "grouped_folds",
    "make_model",
    "cross_validate",
    "train_model",
    "fine_tune",
    "DefaultModelRecipe",
    "DEFAULT_RECIPE",
    "build_simulated_lake",
    "train_default_model",
    "train_on_lake",
    "fine_tune_on_lake",
]

_REASON_ALIASES: Final = {
    "no_transient": "no_transients",
    "notransients": "no_transients",
    "inactive": "no_transients",
    "shape": "irregular_shape",
    "irregular": "irregular_shape",
    "borrowed": "borrowed_fluorescence",
    "crosstalk": "borrowed_fluorescence",
    "duplicate": "overlap",
    "overlapping": "overlap",
    "neuropil": "background",
}


def _norm_reason(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if not text or text in ("nan", "none"):
        return None
    text = _REASON_ALIASES.get(text, text)
    return text if text in REASONS else None


# ---------------------------------------------------------------------------
# labels


@dataclass(frozen=True)
class LabelSpec:
    """Where training labels come from.

    Attributes
    ----------
    csv
        A CSV file with ``animal, session, unit_id, label`` (``cohort``, ``reason``
        optional); ``None``: the lake's ``labels`` table.
    sources
        Keep only lake labels of these ``source`` values (e.g. ``("simulator",)``);
        ``None``: all. Where a cell has labels from several sources, the first source
        in this order (or alphabetical order) wins.
    """

    csv: str | None = None
    sources: tuple[str, ...] | None = None


def read_labels_csv(path: str | PathLike[str]) -> pd.DataFrame:
    """Read curation labels from a CSV file.

    Parameters
    ----------
    path
        CSV with columns ``animal``, ``session``, ``unit_id``, ``label`` (``good``/``bad``,
        or 1/0, accepted/rejected) and optionally ``cohort`` and ``reason``.

    Returns
    -------
    pandas.DataFrame
        Columns ``cohort`` (may be missing), ``animal``, ``session``, ``unit_id`` (int),
        ``label`` (good/bad), ``reason``, ``source`` (``"csv"``).

    Raises
    ------
    InputFormatError
        Missing file or columns, unknown label values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError("labels file not found", path=path, fix="pass an existing CSV file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(f"labels file is not a readable CSV ({type(exc).__name__})", path=path) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("animal", "session", "unit_id", "label") if c not in df.columns]
    if missing:
        raise InputFormatError(
            f"labels CSV lacks column(s) {', '.join(missing)}",
            path=path,
            field=missing[0],
            fix="columns must be animal,session,unit_id,label[,cohort,reason]",
        )
    y = labels_to_int(df["label"].tolist())
    if np.any(y < 0):
        bad = df["label"][y < 0].astype(str).unique()[:3].tolist()
        raise InputFormatError(
            f"unknown label value(s) {bad}", path=path, field="label", fix="use good/bad (or 1/0)"
        )
    try:
        unit = pd.to_numeric(df["unit_id"], errors="raise").astype(np.int64)
    except (ValueError, TypeError):
        raise InputFormatError("unit_id must be integers", path=path, field="unit_id") from None
    out = pd.DataFrame({
        "animal": df["animal"].astype(str),
        "session": df["session"].astype(str),
        "unit_id": unit,
        "label": np.where(y == 1, "good", "bad"),
        "reason": df["reason"] if "reason" in df else None,
        "source": "csv",
    })
    if "cohort" in df:
        out.insert(0, "cohort", df["cohort"].astype(str))
    return out


def load_labels(lake: Any, spec: LabelSpec = LabelSpec()) -> pd.DataFrame:
    """Return one label per cell: ``[cohort?], animal, session, unit_id, y, true_reason, label_source``."""
    if spec.csv is not None:
        labels = read_labels_csv(spec.csv)
    else:
        labels = lake.labels
        if spec.sources is not None:
            labels = labels[labels["source"].isin(spec.sources)]
    if len(labels) == 0:
        raise InputFormatError(
            "no labels to train on",
            path=spec.csv or getattr(lake, "root", None),
            field="label",
            fix="ingest a cohort with labels.csv, import curation labels, or pass a labels CSV",
        )
    labels = labels.copy()
    order = list(spec.sources) if spec.sources else sorted(labels["source"].astype(str).unique())
    labels["_rank"] = labels["source"].astype(str).map({s: i for i, s in enumerate(order)}).fillna(len(order))
    keys = [c for c in ID_COLUMNS if c in labels.columns]
    labels = labels.sort_values([*keys, "_rank"]).drop_duplicates(keys, keep="first")
    return pd.DataFrame({
        **{k: labels[k].to_numpy() for k in keys},
        "y": labels_to_int(labels["label"].tolist()),
        "true_reason": [_norm_reason(r) for r in labels["reason"]] if "reason" in labels else None,
        "label_source": labels["source"].astype(str).to_numpy(),
    })


# ---------------------------------------------------------------------------
# cells + labels + clips


def load_cell_data(
    lake: str | PathLike[str] | Any,
    *,
    labels: LabelSpec | None = LabelSpec(),
    clips: bool = True,
    include_flagged: bool = False,
    require_labels: bool = True,
    model_crop: int = 24,
    pool: int = 2,
    cohorts: Sequence[str] | None = None,
    where: Callable[[pd.DataFrame], pd.Series] | None = None,
    target_fps: float | None = None,
) -> CellData:
    """Join a lake's cells, labels and clips into :class:`CellData`.

    Parameters
    ----------
    lake
        Lake folder or an opened :class:`~cellsift.catalog.lake.Lake`.
    labels
        Where labels come from; ``None``: no labels (scoring).
    clips
        Load and prepare clips (needed by clip and ensemble models).
    include_flagged
        Keep cells flagged by the overlap filter (default: left out, as for training).
    require_labels
        Keep only labelled cells (training); otherwise unlabelled cells get ``y = -1``.
    model_crop, pool
        Clip preparation (see :func:`cellsift.pipeline.classify.clip_model.prepare_clips`).
    cohorts
        Keep only these cohorts.
    where
        Extra row filter on the cells table (returns a boolean Series).
    target_fps
        Resample every session's clips in time to this frame rate (Hz), e.g. a model's
        ``fps``; ``None``: clips as stored. ``CellData.fps`` is then ``target_fps``.

    Returns
    -------
    CellData
        Table = cells rows (+ ``fps``, ``clips_path``, ``params_hash``, ``label_source``),
        sorted by cohort, animal, session, unit_id.

    Raises
    ------
    LakeError
        No processed cells in the lake.
    InputFormatError
        No labels, or no labelled cell matches a cell in the lake.
    """
    from cellsift.catalog.lake import Lake

    lk = lake if isinstance(lake, Lake) else Lake(lake)
    cells = lk.cells
    if len(cells) == 0:
        raise LakeError("the lake has no processed cells", path=lk.root, fix="run 'cellsift run' first")
    sessions = lk.sessions[["cohort", "animal", "session", "fps", "clips_path", "params_hash"]]
    cells = cells.drop(columns=[c for c in ("fps", "clips_path", "params_hash") if c in cells])
    cells = cells.merge(sessions, on=["cohort", "animal", "session"], how="left")
    if cohorts is not None:
        cells = cells[cells["cohort"].isin(list(cohorts))]
    if where is not None:
        cells = cells[where(cells).to_numpy(dtype=bool)]
    n_all = len(cells)
    if not include_flagged:
        cells = cells[~cells["overlap_flag"].fillna(False).astype(bool)]
    n_flagged = n_all - len(cells)
    y = np.full(len(cells), -1, dtype=np.int8)
    reasons = np.full(len(cells), None, dtype=object)
    if labels is not None:
        lab = load_labels(lk, labels)
        keys = [c for c in ID_COLUMNS if c in lab.columns]
        cells = cells.merge(lab, on=keys, how="left")
        y = cells["y"].fillna(-1).to_numpy(dtype=np.int8)
        reasons = cells["true_reason"].to_numpy(dtype=object)
        cells = cells.drop(columns=["y", "true_reason"])
        if require_labels:
            keep = y >= 0
            if not keep.any():
                raise InputFormatError(
                    "no labelled cell matches a cell of the lake",
                    path=labels.csv or lk.root,
                    field="unit_id",
                    fix="check that labels use the lake's animal/session names and unit ids",
                )
            cells, y, reasons = cells[keep], y[keep], reasons[keep]
    order = np.lexsort((cells["unit_id"].to_numpy(), cells["session"].astype(str).to_numpy(),
                        cells["animal"].astype(str).to_numpy(), cells["cohort"].astype(str).to_numpy()))
    cells = cells.iloc[order].reset_index(drop=True)
    y, reasons = y[order], np.where(y[order] == 0, reasons[order], None)
    clip_arrays = None
    if clips:
        parts = []
        for (cohort, animal, session), idx in cells.groupby(["cohort", "animal", "session"], sort=False).indices.items():
            path = cells["clips_path"].iloc[idx[0]]
            if not isinstance(path, str) or not path:  # no movie: its cells get no valid clip
                logger.warning("%s/%s/%s has no clip store (no movie): its cells have no clips",
                               cohort, animal, session)
                continue
            step = 1.0
            if target_fps is not None:
                f = cells["fps"].iloc[idx[0]] if "fps" in cells else None
                step = float(f) / float(target_fps) if f is not None and pd.notna(f) and f > 0 else 1.0
                if abs(step - 1.0) > 0.1:
                    logger.info("%s/%s/%s: clips resampled from %.3g Hz to %.3g Hz",
                                cohort, animal, session, float(f), float(target_fps))
            parts.append((idx, read_clip_store(lk.root / path, cells["unit_id"].to_numpy()[idx],
                                               model_crop=model_crop, pool=pool, time_step=step)))
        if parts:
            first = parts[0][1]
            n = len(cells)
            dyn = np.zeros((n, *first.dynamic.shape[1:]), dtype=first.dynamic.dtype)
            sta = np.zeros((n, *first.static.shape[1:]), dtype=first.static.dtype)
            val = np.zeros((n, first.valid.shape[1]), dtype=bool)
            for idx, ca in parts:
                if ca.dynamic.shape[1:] != first.dynamic.shape[1:]:
                    raise LakeError(
                        f"clip stores differ in shape ({ca.dynamic.shape[1:]} vs {first.dynamic.shape[1:]})",
                        path=lk.root,
                        fix="process all sessions with the same pipeline parameters",
                    )
                dyn[idx], sta[idx], val[idx] = ca.dynamic, ca.static, ca.valid
            clip_arrays = replace(first, dynamic=dyn, static=sta, valid=val)
    fps_values = cells["fps"].dropna().to_numpy(dtype=np.float64) if "fps" in cells else np.zeros(0)
    fps = float(np.median(fps_values)) if fps_values.size else None
    if target_fps is not None and clip_arrays is not None:
        fps = float(target_fps)
    logger.info(
        "loaded %d cells (%d good, %d bad, %d unlabelled; %d overlap-flagged left out) from %s",
        len(cells), int((y == 1).sum()), int((y == 0).sum()), int((y < 0).sum()), n_flagged, lk.root,
    )
    return CellData(table=cells, clips=clip_arrays, y=y if labels is not None else None,
                    reasons=reasons if labels is not None else None, fps=fps)


# ---------------------------------------------------------------------------
# splits


def grouped_folds(
    groups: np.ndarray, y: np.ndarray, *, n_folds: int = 5, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_idx, test_idx)`` with every animal in exactly one test fold.

    Uses ``StratifiedGroupKFold`` (classes balanced across folds as far as animals allow)
    with ``min(n_folds, n_animals)`` folds.

    Raises
    ------
    InputFormatError
        Fewer than two animals (no grouped split is possible).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise InputFormatError(
            f"cross-validation grouped by animal needs at least 2 animals, got {n_groups}",
            field="animal",
            fix="add labelled cells of more animals",
        )
    k = min(n_folds, n_groups)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in splitter.split(np.zeros(len(groups)), y, groups):
        shared = set(groups[tr]) & set(groups[te])
        if shared:  # never happens with StratifiedGroupKFold; guard the contract anyway
            raise RuntimeError(f"grouped split shares animals {sorted(shared)}")
        yield tr, te


# ---------------------------------------------------------------------------
# models


def make_model(kind: str, *, seed: int = 0, clip_config: ClipModelConfig | None = None,
               feature_config: Any = None, n_folds: int = 3) -> CellClassifier:
    """Return an untrained model of ``kind`` (``features``, ``clips`` or ``ensemble``)."""
    from cellsift.pipeline.classify.ensemble import EnsembleClassifier, EnsembleConfig
    from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig

    fcfg = feature_config or FeatureModelConfig(seed=seed)
    ccfg = clip_config or ClipModelConfig(seed=seed)
    if kind == "features":
        return FeatureClassifier(fcfg)
    if kind == "clips":
        return ClipClassifier(ccfg)
    if kind == "ensemble":
        return EnsembleClassifier(EnsembleConfig(features=fcfg, clips=ccfg, n_folds=n_folds, seed=seed))
    raise InputFormatError(f"unknown model kind {kind!r}", field="kind", fix="use features, clips or ensemble")


def _early_split(data: CellData, fraction: float, seed: int) -> tuple[CellData, CellData | None]:
    from cellsift.pipeline.classify.clip_model import _split_valid

    tr, va = _split_valid(data, fraction, seed)
    if len(va) == 0:
        return data, None
    return data.take(tr), data.take(va)


def cross_validate(
    data: CellData,
    make: Callable[[], CellClassifier],
    *,
    n_folds: int = 5,
    seed: int = 0,
    early_stopping_fraction: float = 0.2,
) -> pd.DataFrame:
    """Out-of-fold ``p_good`` and reasons, folds grouped by animal.

    Parameters
    ----------
    data
        Labelled cells.
    make
        Returns a fresh untrained model.
    n_folds
        Folds (at most the number of animals).
    seed
        Split seed.
    early_stopping_fraction
        Fraction of each training fold held out for early stopping.

    Returns
    -------
    pandas.DataFrame
        ``ID_COLUMNS`` + ``fold``, ``y``, ``p_good``, ``reason_pred``, ``true_reason``.
    """
    y = data.require_labels(what="cross-validation")
    p = np.full(len(data), np.nan)
    reason = np.full(len(data), None, dtype=object)
    fold = np.full(len(data), -1)
    for k, (tr, te) in enumerate(grouped_folds(data.groups, y, n_folds=n_folds, seed=seed)):
        fit_data, val = _early_split(data.take(tr), early_stopping_fraction, seed + k)
        model = make().fit(fit_data, valid=val)
        test = data.take(te)
        p[te] = model.predict_proba(test)
        reason[te] = model.predict_reason(test)
        fold[te] = k
        logger.info("fold %d: %d train / %d test cells", k, len(tr), len(te))
    out = data.table[list(ID_COLUMNS)].copy()
    out["fold"], out["y"], out["p_good"], out["reason_pred"] = fold, y, p, reason
    out["true_reason"] = data.reasons if data.reasons is not None else None
    return out


def train_model(
    data: CellData,
    kind: str = "ensemble",
    *,
    seed: int = 0,
    clip_config: ClipModelConfig | None = None,
    early_stopping_fraction: float = 0.2,
    model_id: str | None = None,
    n_folds: int = 3,
) -> CellClassifier:
    """Train a model of ``kind`` on all of ``data`` (with an early-stopping split)."""
    model = make_model(kind, seed=seed, clip_config=clip_config, n_folds=n_folds)
    if kind == "ensemble":
        model.fit(data)  # the ensemble splits for early stopping and calibration itself
    else:
        fit_data, val = _early_split(data, early_stopping_fraction, seed)
        model.fit(fit_data, valid=val)
    if model_id is not None and model.card is not None:
        _rename(model, model_id)
    return model


def _rename(model: CellClassifier, model_id: str) -> None:
    from cellsift.pipeline.classify.store import check_model_id

    check_model_id(model_id)
    model.card = replace(model.require_card(), model_id=model_id)


def fine_tune(
    base: CellClassifier,
    data: CellData,
    *,
    seed: int = 0,
    model_id: str | None = None,
    base_data: CellData | None = None,
) -> CellClassifier:
    """Adapt a trained model to a lab's own labels.

    The clip network starts from the base model's weights and trains on the new labels
    with a lower learning rate; the feature model and the calibration are re-fitted on
    the new labels (together with ``base_data``, if given). The card records
    ``parent_model_id``.

    Parameters
    ----------
    base
        A trained model (e.g. ``registry.load_model("default")``).
    data
        The lab's labelled cells (with clips if ``base`` uses clips).
    seed
        Random seed.
    model_id
        Id of the new model (default: generated).
    base_data
        Optional training data of the base model to mix in (guards against forgetting).
    """
    from cellsift.pipeline.classify.ensemble import EnsembleClassifier

    train = data if base_data is None else CellData.concat([base_data, data])
    train.require_labels(what="fine-tuning")
    parent = base.model_id
    if isinstance(base, EnsembleClassifier):
        model = base.fine_tune(train, seed=seed)
    elif isinstance(base, ClipClassifier):
        model = ClipClassifier(replace(base.config, lr=base.config.lr / 4, seed=seed, epochs=max(10, base.config.epochs // 2)))
        fit_data, val = _early_split(train, 0.2, seed)
        model.fit_from(base, fit_data, valid=val)
    else:
        model = make_model(base.kind, seed=seed)
        fit_data, val = _early_split(train, 0.2, seed)
        model.fit(fit_data, valid=val)
    model.card = replace(model.require_card(), parent_model_id=parent)
    if model_id is not None:
        _rename(model, model_id)
    return model


# ---------------------------------------------------------------------------
# simulated cohorts and the shipped default model


@dataclass(frozen=True)
class CohortSpec:
    """One simulated cohort: ``SimulationConfig`` overrides (cohort name and seed included)."""

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

    def config(self) -> Any:
        """The ``SimulationConfig`` of this cohort."""
        from cellsift.pipeline.sim.cohort import SimulationConfig

        return SimulationConfig(
            n_animals=self.n_animals, n_frames=self.n_frames, height=self.height, width=self.width,
            cell_density=self.cell_density, artifact_fraction=self.artifact_fraction,
            noise_scale=self.noise_scale, background_scale=self.background_scale,
            motion_px=self.motion_px, seed=self.seed, cohort=self.cohort, fps=self.fps,
        )


@dataclass(frozen=True)
class DefaultModelRecipe:
    """How the shipped default model is made (cohorts, model settings, seed)."""

    cohorts: tuple[CohortSpec, ...] = (
        CohortSpec("sim-a", seed=101, noise_scale=0.8, cell_density=14.0, background_scale=0.9),
        CohortSpec("sim-b", seed=202, noise_scale=1.0, cell_density=18.0, background_scale=1.0,
                   artifact_fraction=0.4),
        CohortSpec("sim-c", seed=303, noise_scale=1.3, cell_density=16.0, background_scale=1.2,
                   artifact_fraction=0.3, motion_px=1.5),
        CohortSpec("sim-d", seed=404, noise_scale=1.1, cell_density=13.0, background_scale=1.4,
                   artifact_fraction=0.35, motion_px=2.5),
        CohortSpec("sim-e", seed=505, noise_scale=0.95, cell_density=11.0, background_scale=1.3,
                   artifact_fraction=0.3, motion_px=1.8),
    )
    kind: str = "ensemble"
    seed: int = 0
    clip_config: ClipModelConfig = field(default_factory=ClipModelConfig)
    n_folds: int = 3
    model_id: str = "cellsift-default-v1"
    fps: float = 20.0


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
    from cellsift.pipeline.ingest.cohort import ingest_cohort
    from cellsift.pipeline.stages import run_pipeline
    from cellsift.pipeline.sim.cohort import simulate_cohort

    lake = Path(lake)
    tmp = None
    if raw_dir is None:
        tmp = tempfile.mkdtemp(prefix="cellsift-sim-")
        raw_root = Path(tmp)
    else:
        raw_root = Path(raw_dir)
    try:
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

            with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as own:
                summary = run_pipeline(lake, client=own)
        else:
            summary = run_pipeline(lake, client=client)
        if summary.n_failed:
            bad = [o for o in summary.outcomes if o.status == "failed"]
            raise LakeError(f"pipeline failed on {len(bad)} session(s): {bad[0].error}", path=lake)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
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
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="cellsift-default-")
        work = Path(tmp)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        lake = work / "lake"
        if not (lake / "tables" / "cells").exists():
            build_simulated_lake(lake, recipe.cohorts, client=client, raw_dir=work / "raw")
        torch.manual_seed(recipe.seed)
        data = load_cell_data(lake, labels=LabelSpec(sources=("simulator",)),
                              model_crop=recipe.clip_config.model_crop, pool=recipe.clip_config.pool,
                              target_fps=recipe.fps)
        t0 = time.perf_counter()
        model = train_model(data, recipe.kind, seed=recipe.seed, clip_config=recipe.clip_config,
                            model_id=recipe.model_id, n_folds=recipe.n_folds)
        seconds = time.perf_counter() - t0
        _attach_oof_metrics(model)
        card = model.require_card()
        metrics = {**dict(card.metrics), "train_seconds": round(seconds, 1),
                   "train_cells_per_second": round(len(data) / max(seconds, 1e-9), 2)}
        training = {**dict(card.training), "recipe": _recipe_dict(recipe)}
        model.card = replace(card, metrics=metrics, training=training)
        staging = out.with_name(f".{out.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        model.save(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        logger.info("default model written to %s (%.0f s training)", out, seconds)
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _recipe_dict(recipe: DefaultModelRecipe) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(recipe)
    d["cohorts"] = [asdict(c) for c in recipe.cohorts]
    return d


# ---------------------------------------------------------------------------
# one-call entry points (for the CLI)


def train_on_lake(
    lake: str | PathLike[str],
    *,
    kind: str = "ensemble",
    labels: LabelSpec = LabelSpec(),
    model_id: str | None = None,
    seed: int = 0,
    register: bool = True,
    overwrite: bool = False,
    clip_config: ClipModelConfig | None = None,
) -> tuple[CellClassifier, Path | None]:
    """Train a model on a lake's labelled, non-flagged cells and register it in the lake.

    Parameters
    ----------
    lake
        The lake (processed by ``cellsift run``).
    kind
        ``ensemble`` (default), ``features`` or ``clips``.
    labels
        Where labels come from (lake ``labels`` table, optionally by source, or a CSV).
    model_id
        Registry id (default: generated from kind and time).
    seed
        Random seed.
    register
        Store the model under ``LAKE/models/<model_id>``.
    overwrite
        Replace a registered model of the same id.
    clip_config
        Clip-model settings (default :class:`ClipModelConfig`).

    Returns
    -------
    model, path
        The trained model and its registry folder (``None`` if not registered).
    """
    from cellsift.pipeline.classify.store import register_model

    cfg = clip_config or ClipModelConfig(seed=seed)
    data = load_cell_data(lake, labels=labels, model_crop=cfg.model_crop, pool=cfg.pool)
    model = train_model(data, kind, seed=seed, clip_config=cfg, model_id=model_id)
    _attach_oof_metrics(model)
    path = register_model(model, lake, overwrite=overwrite) if register else None
    return model, path


def fine_tune_on_lake(
    lake: str | PathLike[str],
    *,
    base: str | PathLike[str] = "default",
    labels: LabelSpec = LabelSpec(),
    model_id: str | None = None,
    seed: int = 0,
    register: bool = True,
    overwrite: bool = False,
) -> tuple[CellClassifier, Path | None]:
    """Fine-tune ``base`` (default: the shipped model) on a lab's labels and register the result.

    The lake's cells must come from the clip geometry and frame rate the base model was
    trained at (its card is checked first).
    """
    from cellsift.pipeline.classify.store import load_model, register_model

    model = load_model(base, lake=lake)
    card = model.require_card()
    crop = card.clip_model_crop or 24
    pool = card.clip_pool or 2
    data = load_cell_data(lake, labels=labels, clips=model.uses_clips, model_crop=crop, pool=pool,
                          target_fps=card.fps if model.uses_clips and card.fps else None)
    card.check_compatible(
        pipeline_version=str(data.table["pipeline_version"].dropna().iloc[0])
        if "pipeline_version" in data.table and data.table["pipeline_version"].notna().any() else None,
        columns=list(data.table.columns), fps=data.fps, where=str(lake),
        clip_frames=data.clips.n_frames if data.clips is not None else None,
        clip_n_before=data.clips.n_before if data.clips is not None else None,
        clip_crop_px=data.clips.crop_px if data.clips is not None else None,
    )
    tuned = fine_tune(model, data, seed=seed, model_id=model_id)
    _attach_oof_metrics(tuned)
    path = register_model(tuned, lake, overwrite=overwrite) if register else None
    return tuned, path


def _attach_oof_metrics(model: CellClassifier) -> None:
    """Put the ensemble's out-of-fold metrics (grouped by animal) on its card."""
    from cellsift.pipeline.classify.evaluation import binary_metrics

    oof = getattr(model, "oof", None)
    if oof is None or model.card is None:
        return
    metrics = {
        name: binary_metrics(oof["y"].to_numpy(), oof[name].to_numpy(),
                             threshold=model.decision_threshold if name == "p_good" else 0.5)
        for name in ("p_features", "p_clips", "p_good") if name in oof
    }
    model.card = replace(model.card, metrics={**dict(model.card.metrics), "out_of_fold": metrics})
