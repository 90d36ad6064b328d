"""Classification of a lake: every session scored with one model, loaded once per worker.

:func:`classify_lake` scores every processed session of a lake through
:func:`cellsift.pipeline.executor.run_sessions` (in-process, or one Dask task per
session): each worker loads the model once (:func:`load_worker_model`, keyed by the
model folder and its card's hash, :func:`model_init_key`, so a replaced model is
reloaded); tasks ask for a ``GPU`` resource when the cluster's workers advertise one
(:func:`gpu_resources`); one failed session never stops the others. With
``write=True`` it fills the ``cells`` table's classification columns and writes a
provenance record (:mod:`~cellsift.pipeline.classify.writeback`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final

import pandas as pd

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card import ModelCard
from cellsift.pipeline.classify.scoring import OUTPUT_COLUMNS, classify_session
from cellsift.pipeline.classify.store import load_model, resolve_model
from cellsift.pipeline.classify.writeback import write_classify_record, write_predictions
from cellsift.pipeline.executor import clear_worker_contexts, run_sessions
from cellsift.schemas import LakeError, SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "STAGE",
    "SessionJob",
    "classify_job",
    "classify_lake",
    "clear_model_cache",
    "gpu_resources",
    "load_worker_model",
    "model_init_key",
    "model_load_count",
]

_KEY_COLUMNS: Final = ("cohort", "animal", "session")
#: Stage name of the classification (outcomes, Dask task keys, the record's id).
STAGE: Final = "classify"

_LOADS = {"n": 0}
_LOADS_LOCK = threading.Lock()


# ---------------------------------------------------------------------------
# one model per worker


def load_worker_model(model_dir: str) -> CellClassifier:
    """Load the model folder ``model_dir``: the per-worker ``init`` of :func:`classify_lake`.

    :func:`~cellsift.pipeline.executor.run_sessions` calls it once per worker process
    and :func:`model_init_key`, so every session a worker scores shares one loaded model.
    """
    loaded = load_model(model_dir)
    with _LOADS_LOCK:
        _LOADS["n"] += 1
    logger.info("loaded model %s from %s", loaded.model_id, model_dir)
    return loaded


def model_init_key(model_dir: str | PathLike[str], card: ModelCard) -> str:
    """Per-worker cache key of a model: its folder plus its card's hash (a retrained model reloads)."""
    return f"{STAGE}:{Path(model_dir)}:{card.card_hash()}"


def clear_model_cache() -> None:
    """Forget every model (every per-worker context) this process holds (tests, or to free memory)."""
    clear_worker_contexts()


def model_load_count() -> int:
    """How many times this process has loaded a model for classification (:func:`load_worker_model`)."""
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


# ---------------------------------------------------------------------------
# a lake


@dataclass(frozen=True)
class SessionJob:
    """One session to classify (the payload of a classification task).

    Attributes
    ----------
    key
        The session.
    cells
        Its rows of the ``cells`` table.
    clips_path
        Absolute path of its clip store, ``None`` if it has no movie.
    fps
        Its frame rate (Hz), if known.
    strict
        Refuse on a model-card mismatch.
    """

    key: SessionKey
    cells: pd.DataFrame
    clips_path: str | None
    fps: float | None
    strict: bool


def classify_job(model: CellClassifier, job: SessionJob) -> pd.DataFrame:
    """Score one session with the worker's model; ``cohort, animal, session`` + :data:`OUTPUT_COLUMNS`."""
    out = classify_session(job.cells, job.clips_path, model, fps=job.fps, strict=job.strict)
    out.insert(0, "session", job.key.session)
    out.insert(0, "animal", job.key.animal)
    out.insert(0, "cohort", job.key.cohort)
    return out


def _jobs(
    lk: Any, model_id: str, *, cohorts: list[str] | None, only_stale: bool, strict: bool
) -> tuple[list[SessionJob], int]:
    """Sessions to score (sorted by key) and how many were skipped as up to date."""
    sessions = lk.sessions
    cells = lk.cells
    if cohorts is not None:
        sessions = sessions[sessions["cohort"].isin(cohorts)]
    if len(sessions) == 0:
        raise LakeError("the lake has no processed sessions", path=lk.root, fix="run 'cellsift run' first")
    groups = cells.groupby(list(_KEY_COLUMNS), sort=True)
    jobs = []
    skipped = 0
    for row in sessions.sort_values(list(_KEY_COLUMNS)).itertuples():
        key = SessionKey(str(row.cohort), str(row.animal), str(row.session))
        try:
            sub = groups.get_group(key.as_tuple())
        except KeyError:
            continue
        if (
            only_stale
            and "model_id" in sub
            and (sub["model_id"] == model_id).all()
            and sub["p_good"].notna().all()
        ):
            skipped += 1
            continue
        clips = str(lk.root / row.clips_path) if isinstance(row.clips_path, str) and row.clips_path else None
        jobs.append(SessionJob(key, sub, clips, float(row.fps) if pd.notna(row.fps) else None, strict))
    return jobs, skipped


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
        :func:`gpu_resources`; the model is loaded once per worker. ``None``: in-process
        (the model is loaded once per process).
    strict
        Refuse on a model-card mismatch (``False``: warn and score anyway).
    write
        Fill the ``cells`` table's classification columns (see :func:`write_predictions`)
        and write the provenance record ``runs/classify-<run id>.json``.
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
        ``attrs["skipped"]`` counts up-to-date sessions left alone; with ``write``,
        ``attrs["record_path"]`` is the provenance record.
    """
    from cellsift.catalog import Lake
    from cellsift.pipeline.provenance import new_run_id

    lk = Lake(lake)
    model_dir = str(resolve_model(model, lake=lk.root).resolve())
    card = ModelCard.read(model_dir)
    jobs, skipped = _jobs(lk, card.model_id, cohorts=cohorts, only_stale=only_stale, strict=strict)
    run_id = new_run_id()
    outcomes = run_sessions(
        [(job.key, job) for job in jobs],
        classify_job,
        stage=STAGE,
        run_id=run_id,
        client=client,
        init=load_worker_model,
        init_args=(model_dir,),
        init_key=model_init_key(model_dir, card),
        resources=gpu_resources(client) if client is not None else None,
        progress=progress,
    )
    failed = [o for o in outcomes if o.failed]
    good = [o.value for o in outcomes if not o.failed]
    preds = (
        pd.concat(good, ignore_index=True) if good else pd.DataFrame(columns=[*_KEY_COLUMNS, *OUTPUT_COLUMNS])
    )
    if write and len(preds):
        write_predictions(lk.root, preds)
    preds.attrs["failed"] = [(o.cohort, o.animal, o.session, o.error) for o in failed]
    preds.attrs["skipped"] = skipped
    if write:
        preds.attrs["record_path"] = write_classify_record(
            lk.root, f"{STAGE}-{run_id}", model_dir, card, preds, failed, skipped, strict
        )
    return preds
