"""The model store: model folders under ``LAKE/models/<model_id>/`` and the shipped default.

A model folder holds the weights and ``card.json``
(:class:`~cellsift.pipeline.classify.card.ModelCard`). Folders are written in
``LAKE/tmp`` and renamed into place, so a reader never sees a half-written model. The
package ships one model, ``default`` (``cellsift/pipeline/classify/default_model``), trained on
simulated cohorts by :func:`cellsift.pipeline.classify.default_recipe.train_default_model`.

``resolve_model(spec)`` turns what a user types into a folder: ``"default"``, a model
id registered in the lake, or a path to a model folder.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any, Final

import pandas as pd

from cellsift.catalog import publish_dir, remove_tree_quietly, safe_name
from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card import ModelCard
from cellsift.pipeline.classify.kinds import model_class
from cellsift.schemas import CARD_FILE, LakeError, ModelMismatchError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_NAME",
    "models_dir",
    "check_model_id",
    "register_model",
    "list_models",
    "resolve_model",
    "load_model",
    "remove_model",
]

#: Folder of the model shipped inside the package.
DEFAULT_MODEL_DIR: Final = Path(__file__).resolve().parent / "default_model"
#: The name that always means the shipped model.
DEFAULT_NAME: Final = "default"


def models_dir(lake: str | PathLike[str]) -> Path:
    """``LAKE/models``."""
    return Path(lake) / "models"


def check_model_id(model_id: str) -> str:
    """Return ``model_id`` if it can name a folder (and is not ``default``), else raise.

    Raises
    ------
    LakeError
        The id is ``default`` or cannot name a folder.
    """
    safe_name(model_id, field="model_id")
    if model_id == DEFAULT_NAME:
        raise LakeError(
            "'default' is reserved for the model shipped with cellsift",
            field="model_id",
            fix="choose another model id",
        )
    return model_id


def register_model(
    model: CellClassifier | str | PathLike[str],
    lake: str | PathLike[str],
    *,
    model_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Store a model in the lake (``LAKE/models/<model_id>``).

    Parameters
    ----------
    model
        A trained model, or the folder of a saved one (its card and file hashes are
        verified before it is copied).
    lake
        The lake.
    model_id
        Id in the lake (default: the card's ``model_id``).
    overwrite
        Replace a registered model of the same id.

    Returns
    -------
    pathlib.Path
        ``LAKE/models/<model_id>``.

    Raises
    ------
    LakeError
        The lake is missing, or the id is taken and ``overwrite`` is false.
    ModelMismatchError
        The folder is not a valid model.
    """
    lake = Path(lake)
    if not lake.is_dir():
        raise LakeError("lake folder not found", path=lake, fix="create it with 'cellsift ingest'")
    tmp_root = lake / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = tmp_root / f"model-{uuid.uuid4().hex[:12]}"
    try:
        if isinstance(model, CellClassifier):
            if model.card is None:
                raise ModelMismatchError("the model is not trained", fix="train it before registering")
            mid = check_model_id(model_id or model.card.model_id)
            model.card = replace(model.card, model_id=mid)
            model.save(staging)
        else:
            src = Path(model)
            card = ModelCard.read(src)
            card.verify_files(src)
            mid = check_model_id(model_id or card.model_id)
            shutil.copytree(src, staging)
            if mid != card.model_id:
                replace(card, model_id=mid).write(staging)
        final = models_dir(lake) / mid
        if final.exists() and not overwrite:
            raise LakeError(
                f"a model '{mid}' is already registered",
                path=final,
                field="model_id",
                fix="choose another id or pass overwrite=True (--overwrite)",
            )
        publish_dir(staging, final)
    finally:
        remove_tree_quietly(staging)
    logger.info("registered model %s in %s", mid, final)
    return final


def _card_row(card: ModelCard, path: Path, source: str) -> dict[str, Any]:
    metrics = dict(card.metrics or {})
    held = (
        metrics.get("heldout") or metrics.get("out_of_fold", {}).get("p_good") or metrics.get("p_good") or {}
    )
    training = dict(card.training or {})
    return {
        "model_id": card.model_id,
        "card_id": card.model_id,
        "kind": card.kind,
        "source": source,
        "created_at": card.created_at,
        "n_train_cells": training.get("n_cells"),
        "n_animals": training.get("n_animals"),
        "cohorts": ",".join(training.get("cohorts", []) or []),
        "balanced_accuracy": held.get("balanced_accuracy") if isinstance(held, dict) else None,
        "roc_auc": held.get("roc_auc") if isinstance(held, dict) else None,
        "pipeline_version": card.pipeline_version,
        "fps": card.fps,
        "parent_model_id": card.parent_model_id,
        "path": str(path),
    }


def list_models(lake: str | PathLike[str] | None = None, *, include_default: bool = True) -> pd.DataFrame:
    """Registered models (and the shipped default) with their card's key facts.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model_id`` (``default`` for the shipped one), ``card_id`` (the
        id on its card, which predictions carry), ``kind, source ('package'/'lake'), created_at,
        n_train_cells, n_animals, cohorts, balanced_accuracy, roc_auc, pipeline_version,
        fps, parent_model_id, path``. Folders without a readable card are skipped with
        a warning.

    Raises
    ------
    LakeError
        ``lake`` is given but is not a folder.
    """
    if lake is not None and not Path(lake).is_dir():
        raise LakeError(
            "lake folder not found",
            path=lake,
            field="--lake",
            fix="check the path, or create the lake with 'cellsift ingest RAW --lake LAKE'",
        )
    rows = []
    if include_default and (DEFAULT_MODEL_DIR / CARD_FILE).is_file():
        card = ModelCard.read(DEFAULT_MODEL_DIR)
        rows.append({**_card_row(card, DEFAULT_MODEL_DIR, "package"), "model_id": DEFAULT_NAME})
    if lake is not None:
        root = models_dir(lake)
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                card = ModelCard.read(folder)
            except ModelMismatchError as exc:
                logger.warning("skipping %s: %s", folder, exc)
                continue
            rows.append(_card_row(card, folder, "lake"))
    cols = [
        "model_id",
        "card_id",
        "kind",
        "source",
        "created_at",
        "n_train_cells",
        "n_animals",
        "cohorts",
        "balanced_accuracy",
        "roc_auc",
        "pipeline_version",
        "fps",
        "parent_model_id",
        "path",
    ]
    return pd.DataFrame(rows, columns=cols)


def resolve_model(spec: str | PathLike[str], *, lake: str | PathLike[str] | None = None) -> Path:
    """Folder of the model ``spec``: ``"default"``, a registered id, or a model folder.

    Raises
    ------
    ModelMismatchError
        Nothing matches (the message lists the registered ids).
    """
    text = str(spec)
    if text == DEFAULT_NAME:
        if not (DEFAULT_MODEL_DIR / CARD_FILE).is_file():
            raise ModelMismatchError(
                "the package's default model is missing",
                path=DEFAULT_MODEL_DIR,
                fix="rebuild it with 'cellsift train --default pipeline/classify/default_model'",
            )
        return DEFAULT_MODEL_DIR
    path = Path(text)
    if (path / CARD_FILE).is_file():
        return path
    if lake is not None:
        candidate = models_dir(lake) / text
        if (candidate / CARD_FILE).is_file():
            return candidate
    known = list_models(lake)["model_id"].tolist()
    raise ModelMismatchError(
        f"no model '{text}'",
        path=None if lake is None else models_dir(lake),
        field="model",
        fix=f"use one of {', '.join(known) or '(none registered)'} or the path of a model folder",
    )


def load_model(spec: str | PathLike[str], *, lake: str | PathLike[str] | None = None) -> CellClassifier:
    """Resolve ``spec`` (see :func:`resolve_model`), verify its card and files, and load it."""
    folder = resolve_model(spec, lake=lake)
    card = ModelCard.read(folder)
    return model_class(card.kind, folder).load(folder)


def remove_model(lake: str | PathLike[str], model_id: str) -> None:
    """Delete a registered model folder.

    Raises
    ------
    ModelMismatchError
        No such model in the lake (the shipped default cannot be removed).
    """
    check_model_id(model_id)
    folder = models_dir(lake) / model_id
    if not (folder / CARD_FILE).is_file():
        raise ModelMismatchError(
            f"no model '{model_id}' in the lake", path=models_dir(lake), field="model_id"
        )
    remove_tree_quietly(folder)
