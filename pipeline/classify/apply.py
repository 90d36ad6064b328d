"""Apply a cell classifier to sessions: per-session scoring, per-worker model cache, GPU resources.

* :func:`classify_session` scores one session's cells (its ``cells`` rows and clip
  store) after checking the model card against the data, in batches of units so memory
  is bounded by the batch, not the session.
* :func:`get_worker_model` loads a model folder once per process (each Dask worker) and
  reuses it for every task; the cache key includes the card's hash, so a replaced model
  is reloaded.
* :func:`gpu_resources` returns the Dask resource annotation for inference tasks:
  ``{"GPU": 1}`` when the cluster's workers advertise a ``GPU`` resource (e.g. started
  with ``dask worker --resources GPU=1``), else ``{}`` (any worker, CPU).
* :func:`classify_lake` scores every processed session of a lake (on a Dask client if
  given) and, with ``write=True``, fills the ``cells`` table's ``p_good, label, reason,
  model_id, ood_score, ood_flag`` columns.

Cells flagged by the overlap filter are scored like the others and keep their
``overlap_flag``; the models never trained on such cells, so their ``ood_flag`` stays
False (their ``ood_score`` is kept): the OOD flag warns about cells the overlap filter
did not already mark.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas.errors import LakeError

from cellsift.pipeline.classify.base import CellClassifier, CellData, ModelCard

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_COLUMNS",
    "classify_session",
    "get_worker_model",
    "clear_model_cache",
    "model_load_count",
    "gpu_resources",
    "units_per_batch",
    "classify_lake",
    "write_predictions",
]

#: Columns :func:`classify_session` returns.
OUTPUT_COLUMNS: Final = ("unit_id", "p_good", "label", "reason", "model_id", "ood_score", "ood_flag")

_CACHE: OrderedDict[tuple[str, str], CellClassifier] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE: Final = 4
_LOADS = {"n": 0}


# ---------------------------------------------------------------------------
# model cache


def get_worker_model(model: str | PathLike[str], *, lake: str | PathLike[str] | None = None) -> CellClassifier:
    """Return the model ``model`` (``"default"``, a registered id or a folder), loaded once per process.

    On a Dask worker this module's cache lives in the worker process, so every task on
    that worker shares one loaded model. The key is the folder's resolved path plus the
    hash of its card: retraining into the same folder loads the new model.
    """
    from cellsift.pipeline.classify.store import load_model, resolve_model

    folder = resolve_model(model, lake=lake).resolve()
    card = ModelCard.read(folder)
    key = (str(folder), card.card_hash())
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
        loaded = load_model(folder)
        _LOADS["n"] += 1
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        logger.info("loaded model %s from %s", loaded.model_id, folder)
        return loaded


def clear_model_cache() -> None:
    """Forget every cached model (tests, or to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def model_load_count() -> int:
    """How many times this process has loaded a model from disk."""
    return _LOADS["n"]


# ---------------------------------------------------------------------------
# resources and batches


def gpu_resources(client: Any) -> dict[str, float]:
    """Resource annotation for inference tasks on ``client``'s cluster.

    Returns
    -------
    dict
        ``{"GPU": 1}`` when any worker advertises a ``GPU`` resource, else ``{}``.
    """
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed
        info = client.scheduler_info()
    workers = dict(info.get("workers", {}) or {})
    for w in workers.values():
        res = dict(w.get("resources") or {})
        if float(res.get("GPU", 0) or 0) > 0:
            return {"GPU": 1}
    return {}


def units_per_batch(device: str | None = None) -> int:
    """Units scored at a time: 512 on the CPU, 4096 on a GPU with >= 8 GiB free, else 1024."""
    from cellsift.pipeline.classify.clip_model import choose_device

    device = device or choose_device("auto")
    if not device.startswith("cuda"):
        return 512
    import torch

    try:
        free, _ = torch.cuda.mem_get_info()
    except (RuntimeError, AssertionError):
        return 1024
    return 4096 if free >= 8 * 2**30 else 1024


# ---------------------------------------------------------------------------
# one session


def _clip_geometry(path: Path) -> dict[str, int]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        shape = group["clips"].shape
    except (FileNotFoundError, KeyError, ValueError, OSError):
        raise LakeError(
            "clip store cannot be read", path=path, fix="run 'cellsift run' so every session has its clip store"
        ) from None
    params = dict(group.attrs.get("params", {}) or {}).get("clips", {}) or {}
    return {
        "clip_frames": int(shape[2]),
        "clip_n_before": int(params.get("n_before", (shape[2] - 1) // 2)),
        "clip_crop_px": int(shape[-1]),
    }


def classify_session(
    cells: pd.DataFrame,
    clip_store_path: str | PathLike[str] | None,
    model: CellClassifier | str | PathLike[str],
    *,
    fps: float | None = None,
    pixel_size_um: float | None = None,
    strict: bool = True,
    batch_units: int | None = None,
    lake: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """Score one session's cells.

    Parameters
    ----------
    cells
        The session's rows of the ``cells`` table (all units, flagged ones included).
    clip_store_path
        The session's clip store (``LAKE / sessions.clips_path``); may be ``None`` for a
        model that does not read clips.
    model
        A loaded model, or ``"default"`` / a registered id / a model folder (loaded once
        per process, see :func:`get_worker_model`).
    fps
        The session's frame rate (Hz); default: the ``fps`` column of ``cells`` if present.
    pixel_size_um
        Pixel size (um) if known, checked against the model card.
    strict
        Refuse (raise) on a card mismatch; ``False``: warn and score anyway.
    batch_units
        Units scored at a time (default :func:`units_per_batch`).
    lake
        Lake for resolving registered model ids.

    Returns
    -------
    pandas.DataFrame
        :data:`OUTPUT_COLUMNS`, one row per cell in the order of ``cells``: ``p_good``
        (calibrated for ensembles), ``label`` (good/bad), ``reason`` (most likely artifact
        reason of bad cells, ``None`` if the model cannot tell), ``model_id``,
        ``ood_score`` (Mahalanobis distance to the training data) and ``ood_flag``.

    Raises
    ------
    ModelMismatchError
        The model card does not match the data (when ``strict``).
    LakeError
        The clip store is missing or does not hold the cells' units.
    """
    from cellsift.pipeline.classify.clip_model import read_clip_store
    from cellsift.pipeline.classify.feature_model import add_session_relative

    if not isinstance(model, CellClassifier):
        model = get_worker_model(model, lake=lake)
    card = model.card
    where = str(clip_store_path) if clip_store_path is not None else None
    if len(cells) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            OUTPUT_COLUMNS, ("int64", "float64", "object", "object", "object", "float64", "bool"), strict=True)})
    read_clips = model.uses_clips and clip_store_path is not None
    if model.uses_clips and clip_store_path is None and not model.can_score_without_clips:
        raise LakeError("the model reads clips but no clip store was given", field="clips_path",
                        fix="pass the session's clip store (sessions.clips_path)")
    geometry = _clip_geometry(Path(clip_store_path)) if read_clips else {}
    if fps is None and "fps" in cells and cells["fps"].notna().any():
        fps = float(cells["fps"].dropna().iloc[0])
    time_step = 1.0
    if read_clips and card is not None and card.fps and fps:
        time_step = float(fps) / float(card.fps)
        if abs(time_step - 1.0) > 0.1:
            logger.warning("%s: clips resampled from %.3g Hz to the %.3g Hz of model '%s'",
                           where, float(fps), float(card.fps), model.model_id)
    if card is not None:
        version = None
        if "pipeline_version" in cells and cells["pipeline_version"].notna().any():
            version = str(cells["pipeline_version"].dropna().iloc[0])
        card.check_compatible(
            pipeline_version=version, columns=list(cells.columns),
            fps=None if model.uses_clips else fps,  # clips are resampled; no clips: rates per minute
            pixel_size_um=pixel_size_um, strict=strict, where=where, **geometry,
        )
    table = cells.reset_index(drop=True)
    if {"area_px", "noise_sd"} <= set(table.columns):
        table = add_session_relative(table)
    batch = batch_units or units_per_batch()
    crop = (card.clip_model_crop if card is not None and card.clip_model_crop else None)
    pool = (card.clip_pool if card is not None and card.clip_pool else None)
    parts = []
    for start in range(0, len(table), batch):
        sub = table.iloc[start : start + batch]
        clips = None
        if read_clips:
            cfg = getattr(model, "config", None)
            cfg = getattr(cfg, "clips", cfg)
            clips = read_clip_store(
                Path(str(clip_store_path)), sub["unit_id"].to_numpy(),
                model_crop=crop or getattr(cfg, "model_crop", 32), pool=pool or getattr(cfg, "pool", 2),
                time_step=time_step,
            )
        data = CellData(table=sub, clips=clips, fps=fps)
        p, reason_p = model.predict(data)
        reason = model.predict_reason(data, proba=reason_p)
        score, flag = model.ood_scores(data)
        if "overlap_flag" in sub:  # flagged cells lie outside the training data by construction
            flag = flag & ~sub["overlap_flag"].fillna(False).to_numpy(dtype=bool)
        label = np.where(p >= model.decision_threshold, "good", "bad")
        parts.append(pd.DataFrame({
            "unit_id": sub["unit_id"].to_numpy(dtype=np.int64),
            "p_good": p.astype(np.float64),
            "label": label.astype(object),
            "reason": np.where(label == "bad", reason, None),
            "model_id": model.model_id,
            "ood_score": score.astype(np.float64),
            "ood_flag": flag.astype(bool),
        }))
    out = pd.concat(parts, ignore_index=True)
    n_ood = int(out["ood_flag"].sum())
    logger.info("%s: %d cells scored by %s, %d good, %d out of distribution",
                where or "session", len(out), model.model_id, int((out["label"] == "good").sum()), n_ood)
    return out


# ---------------------------------------------------------------------------
# a lake


def _classify_task(
    lake_root: str,
    key: tuple[str, str, str],
    cells: pd.DataFrame,
    clips_path: str | None,
    model_dir: str,
    fps: float | None,
    strict: bool,
) -> pd.DataFrame:
    from cellsift.schemas.errors import CellsiftError

    path = None if not clips_path else str(Path(lake_root) / clips_path)
    try:
        out = classify_session(cells, path, model_dir, fps=fps, strict=strict, lake=lake_root)
    except CellsiftError as exc:  # one bad session never stops the others
        return pd.DataFrame({"cohort": [key[0]], "animal": [key[1]], "session": [key[2]],
                             "error": [exc.one_line()]})
    out.insert(0, "session", key[2])
    out.insert(0, "animal", key[1])
    out.insert(0, "cohort", key[0])
    return out


def classify_lake(
    lake: str | PathLike[str],
    model: str | PathLike[str] = "default",
    *,
    client: Any | None = None,
    strict: bool = True,
    write: bool = True,
    cohorts: list[str] | None = None,
    only_stale: bool = False,
    progress: Any | None = None,
) -> pd.DataFrame:
    """Score every processed session of a lake with one model.

    Parameters
    ----------
    lake
        The lake.
    model
        ``"default"``, a registered model id, or a model folder.
    client
        A ``distributed.Client``: one task per session, annotated with
        :func:`gpu_resources`; the model is loaded once per worker. ``None``: in-process.
    strict
        Refuse on a model-card mismatch (``False``: warn and score anyway).
    write
        Fill the ``cells`` table's classification columns (see :func:`write_predictions`).
    cohorts
        Only these cohorts.
    only_stale
        Skip sessions whose every cell already carries this model's ``p_good``
        (``cellsift run`` uses this so a resumed run does not re-score finished sessions).
    progress
        Called with the list of futures (e.g. ``distributed.progress``) when ``client`` is given.

    Returns
    -------
    pandas.DataFrame
        ``cohort, animal, session`` + :data:`OUTPUT_COLUMNS` for every scored cell.
        ``DataFrame.attrs["failed"]`` lists ``(cohort, animal, session, error)`` of
        sessions that could not be scored (the others are scored and written anyway);
        ``attrs["skipped"]`` counts up-to-date sessions left alone.
    """
    from cellsift.catalog.lake import Lake

    from cellsift.pipeline.classify.store import resolve_model

    lk = Lake(lake)
    model_dir = str(resolve_model(model, lake=lk.root).resolve())
    sessions = lk.sessions
    cells = lk.cells
    if cohorts is not None:
        sessions = sessions[sessions["cohort"].isin(cohorts)]
    if len(sessions) == 0:
        raise LakeError("the lake has no processed sessions", path=lk.root, fix="run 'cellsift run' first")
    groups = cells.groupby(["cohort", "animal", "session"], sort=True)
    card = ModelCard.read(model_dir)
    model_id = card.model_id
    jobs = []
    skipped = 0
    for row in sessions.sort_values(["cohort", "animal", "session"]).itertuples():
        key = (str(row.cohort), str(row.animal), str(row.session))
        try:
            sub = groups.get_group(key)
        except KeyError:
            continue
        if only_stale and "model_id" in sub and (sub["model_id"] == model_id).all() and sub["p_good"].notna().all():
            skipped += 1
            continue
        jobs.append((key, sub, row.clips_path if isinstance(row.clips_path, str) else None,
                     float(row.fps) if pd.notna(row.fps) else None))
    if client is None:
        results = [_classify_task(str(lk.root), k, c, p, model_dir, f, strict) for k, c, p, f in jobs]
    else:
        resources = gpu_resources(client)
        futures = [
            client.submit(_classify_task, str(lk.root), k, c, p, model_dir, f, strict,
                          resources=resources or None, pure=False,
                          key=f"classify-{'-'.join(k)}-{uuid.uuid4().hex[:6]}")
            for k, c, p, f in jobs
        ]
        if progress is not None and futures:
            progress(futures)
        results = client.gather(futures)
    failed = [tuple(r.iloc[0][["cohort", "animal", "session", "error"]]) for r in results if "error" in r.columns]
    good = [r for r in results if "error" not in r.columns]
    for c, a, s_, err in failed:
        logger.warning("%s/%s/%s not classified: %s", c, a, s_, err)
    preds = (pd.concat(good, ignore_index=True) if good
             else pd.DataFrame(columns=["cohort", "animal", "session", *OUTPUT_COLUMNS]))
    if write and len(preds):
        write_predictions(lk.root, preds)
    preds.attrs["failed"] = failed
    preds.attrs["skipped"] = skipped
    if write:
        preds.attrs["record_path"] = _write_record(lk.root, model_dir, card, preds, failed, skipped, strict)
    return preds


def _write_record(root: Path, model_dir: str, card: ModelCard, preds: pd.DataFrame, failed: list, skipped: int,
                  strict: bool) -> Path:
    """Provenance of a classification: model, card hash, versions, sessions scored."""
    from cellsift.catalog.layout import LakeLayout

    from cellsift.pipeline.provenance import host_info, new_run_id, package_versions, utc_now, write_json_atomic

    run_id = "classify-" + new_run_id()
    scored = (preds.groupby(["cohort", "animal", "session"]).agg(n=("unit_id", "size"),
                                                                   good=("label", lambda s: int((s == "good").sum())))
              .reset_index() if len(preds) else pd.DataFrame(columns=["cohort", "animal", "session", "n", "good"]))
    record = {
        "run_id": run_id, "kind": "classify", "finished_at": utc_now().isoformat(),
        "model": {"model_id": card.model_id, "kind": card.kind, "path": model_dir, "card_hash": card.card_hash(),
                  "decision_threshold": dict(card.params).get("decision_threshold")},
        "strict": strict, "versions": package_versions(), "host": host_info(),
        "sessions": [{"cohort": r.cohort, "animal": r.animal, "session": r.session, "n_cells": int(r.n),
                      "n_good": int(r.good)} for r in scored.itertuples()],
        "failed": [{"cohort": c, "animal": a, "session": s_, "error": e} for c, a, s_, e in failed],
        "skipped_up_to_date": skipped,
    }
    path = LakeLayout(root).runs / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, path)
    return path


def write_predictions(lake: str | PathLike[str], predictions: pd.DataFrame) -> int:
    """Fill the classification columns of the ``cells`` table from ``predictions``.

    Each session's Parquet file is rewritten whole (atomically) with ``p_good, label,
    reason, model_id, ood_score, ood_flag`` set for the predicted units; other columns,
    ``overlap_flag`` included, are unchanged. Holds the lake's run lock while writing.

    Returns
    -------
    int
        Number of session files rewritten.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cellsift.catalog.atomic import write_parquet_atomic
    from cellsift.catalog.layout import LakeLayout
    from cellsift.catalog.lock import run_lock
    from cellsift.schemas.tables import CELLS_SCHEMA

    layout = LakeLayout(Path(lake))
    cols = [c for c in OUTPUT_COLUMNS if c != "unit_id"]
    n = 0
    with run_lock(layout.root, run_id=f"classify-{uuid.uuid4().hex[:12]}"):
        for (cohort, animal, session), pred in predictions.groupby(["cohort", "animal", "session"], sort=True):
            path = layout.table_file("cells", str(cohort), str(animal), str(session))
            if not path.exists():
                raise LakeError("cells file of a scored session is missing", path=path,
                                fix="run 'cellsift run' and classify again")
            table = pq.read_table(path)
            df = table.to_pandas()
            idx = pd.Index(pred["unit_id"].to_numpy())
            pos = idx.get_indexer(df["unit_id"].to_numpy())
            hit = pos >= 0
            for c in cols:
                values = pred[c].to_numpy(dtype=object)
                col = (np.array(df[c].astype(object).to_numpy(), dtype=object, copy=True)
                       if c in df else np.full(len(df), None, dtype=object))
                col[hit] = values[pos[hit]]
                df[c] = col
            out = pa.Table.from_pandas(df, schema=CELLS_SCHEMA, preserve_index=False)
            write_parquet_atomic(out, path, tmp_root=layout.tmp)
            n += 1
    logger.info("wrote predictions for %d session(s) into %s", n, layout.tables_dir("cells"))
    return n

