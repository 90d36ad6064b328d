"""The model card: what a model is, what it was trained on, and whether it fits some data.

The card (``card.json`` in a model folder) records the feature set and pipeline
version, clip geometry, frame rate and pixel size, a summary and hash of the training
data, metrics, package versions and the SHA-256 of every weight file.
:meth:`ModelCard.check_compatible` compares it with the data a model is about to score
and raises :class:`~cellsift.schemas.ModelMismatchError` on a mismatch that would make
its output meaningless; :meth:`ModelCard.verify_files` refuses weight files that changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.catalog import write_json_atomic
from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.inputs import FEATURE_REVISION, MODEL_FEATURES
from cellsift.schemas import (
    CARD_FILE,
    FEATURE_COLUMNS,
    TABLE_SCHEMA_VERSION,
    ModelMismatchError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CARD_SCHEMA",
    "FEATURE_VERSION",
    "ModelCard",
    "cells_pipeline_version",
    "check_card_for_cells",
]

#: Version of the card format.
CARD_SCHEMA: Final = "cellsift-model-card/1"

_REQUIRED: Final = (
    "model_id",
    "kind",
    "created_at",
    "cellsift_version",
    "pipeline_version",
    "feature_version",
    "feature_columns",
    "uses_clips",
)
_RETRAIN: Final = (
    "train or fine-tune a model on such data ('cellsift train --lake LAKE --base default'), "
    "or pass --no-strict to score anyway"
)


def _feature_version() -> str:
    text = ",".join(FEATURE_COLUMNS) + "|" + ",".join(MODEL_FEATURES) + f"|r{FEATURE_REVISION}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{TABLE_SCHEMA_VERSION}+{digest}"


#: Version of the models' inputs: table schema version plus a hash of the table's feature
#: columns, the model inputs and :data:`~cellsift.pipeline.classify.inputs.FEATURE_REVISION`
#: (raised whenever a feature's computation changes; a fingerprint test enforces it).
FEATURE_VERSION: Final = _feature_version()

#: One mismatch: (field, problem, fix).
_Problem = tuple[str, str, str]


def _major(version: str) -> str:
    return version.split(".")[0] if version else ""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


@dataclass(frozen=True)
class ModelCard:
    """What a model is and what it was trained on; stored as ``card.json`` in its folder.

    Attributes
    ----------
    model_id
        Unique id (also the folder name in a lake's model store).
    kind
        ``"features"``, ``"clips"`` or ``"ensemble"``.
    created_at
        ISO time (UTC) of training.
    cellsift_version, pipeline_version, feature_version
        Versions of the code that produced the training data (``feature_version`` =
        table schema version + hash of ``FEATURE_COLUMNS``).
    feature_columns
        Table columns the model reads.
    uses_clips
        Whether the model reads clips (then the clip geometry below must match).
    clip_frames, clip_n_before, clip_crop_px, clip_pool, clip_model_crop
        Clip length (frames), frames before the peak, crop side in the clip store
        (px), pooling factor and centre crop (px) used by the model.
    fps
        Frame rate (Hz) of the training sessions.
    pixel_size_um
        Pixel size (micrometres) of the training movies, ``None`` if unknown.
    training
        Training-data summary: cells, classes, reasons, cohorts, animals, sessions,
        label sources, SHA-256 of the (ids, labels) list, clip-store hashes.
    metrics
        Evaluation results (e.g. cross-validated or validation metrics).
    params
        The model's configuration.
    package_versions
        Versions of python, numpy, torch, scikit-learn, ... at training time.
    files
        ``{file name: SHA-256}`` of every weight file in the folder.
    ood
        Out-of-distribution detector summary (features, threshold, quantile).
    parent_model_id
        The model this one was fine-tuned from, if any.
    schema
        Card format version.
    """

    model_id: str
    kind: str
    created_at: str
    cellsift_version: str
    pipeline_version: str
    feature_version: str
    feature_columns: tuple[str, ...]
    uses_clips: bool
    clip_frames: int | None = None
    clip_n_before: int | None = None
    clip_crop_px: int | None = None
    clip_pool: int | None = None
    clip_model_crop: int | None = None
    fps: float | None = None
    pixel_size_um: float | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    package_versions: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    ood: Mapping[str, Any] = field(default_factory=dict)
    parent_model_id: str | None = None
    schema: str = CARD_SCHEMA

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_columns", tuple(self.feature_columns))

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the card as plain JSON-able data."""
        d = asdict(self)
        d["feature_columns"] = list(self.feature_columns)
        out: dict[str, Any] = json.loads(json.dumps(d, default=_json_default))
        return out

    def to_json(self) -> str:
        """Return the card as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | PathLike[str] | None = None) -> ModelCard:
        """Build a card from parsed JSON.

        Raises
        ------
        ModelMismatchError
            ``data`` is not a cellsift model card, or a required key is missing.
        """
        if data.get("schema") != CARD_SCHEMA:
            raise ModelMismatchError(
                f"not a cellsift model card (schema {data.get('schema')!r}, expected {CARD_SCHEMA!r})",
                path=path,
                field="schema",
                fix="point to a folder written by cellsift's training (card.json next to the weights)",
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ModelMismatchError(
                f"model card lacks {', '.join(missing)}",
                path=path,
                field=missing[0],
                fix="re-train the model or restore its card.json",
            )
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls, folder: str | PathLike[str]) -> ModelCard:
        """Read ``folder/card.json``.

        Raises
        ------
        ModelMismatchError
            No card, or it is not valid JSON or not a card.
        """
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise ModelMismatchError(
                "no model card here",
                path=path,
                fix="point to a model folder (weights + card.json), a model id in the lake's "
                "model store, or 'default'",
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelMismatchError(
                f"model card is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})",
                path=path,
                fix="restore the card.json written by training",
            ) from None
        return cls.from_dict(data, path=path)

    def write(self, folder: str | PathLike[str]) -> Path:
        """Write ``folder/card.json`` atomically and return its path."""
        path = Path(folder) / CARD_FILE
        write_json_atomic(self.to_dict(), path)
        return path

    def card_hash(self) -> str:
        """Short SHA-256 of the card's canonical JSON (identifies a model's exact version)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- checks -------------------------------------------------------------
    def verify_files(self, folder: str | PathLike[str]) -> None:
        """Check that every weight file listed on the card is present and unchanged.

        Raises
        ------
        ModelMismatchError
            If a file is missing or its SHA-256 differs from the card's.
        """
        folder = Path(folder)
        for name, digest in self.files.items():
            path = folder / name
            if not path.is_file():
                raise ModelMismatchError(
                    "weight file listed on the model card is missing",
                    path=path,
                    field=f"files.{name}",
                    fix="restore the complete model folder",
                )
            actual = file_sha256(path)
            if actual != digest:
                raise ModelMismatchError(
                    f"weight file changed since training (SHA-256 {actual[:12]}..., card says {digest[:12]}...)",
                    path=path,
                    field=f"files.{name}",
                    fix="restore the original file or re-train; cellsift does not load weights "
                    "that do not match their card",
                )

    def check_compatible(
        self,
        *,
        pipeline_version: str | None = None,
        feature_version: str | None = FEATURE_VERSION,
        columns: Sequence[str] | None = None,
        clip_frames: int | None = None,
        clip_n_before: int | None = None,
        clip_crop_px: int | None = None,
        fps: float | None = None,
        pixel_size_um: float | None = None,
        fps_tolerance: float = 0.1,
        pixel_tolerance: float = 0.1,
        strict: bool = True,
        where: str | None = None,
    ) -> list[str]:
        """Compare the card with the data a model is about to score.

        Parameters
        ----------
        pipeline_version
            ``pipeline_version`` of the cells (``None``: not checked). A different major
            version is a mismatch, a different minor/patch version a warning.
        feature_version
            Feature-set version of the running code (default: this installation's).
        columns
            Columns present in the cells table; every ``feature_columns`` entry must be there.
        clip_frames, clip_n_before, clip_crop_px
            Clip geometry of the clip store (only checked for models that use clips).
        fps
            Frame rate (Hz) of the sessions.
        pixel_size_um
            Pixel size (um) of the movies, ``None`` if unknown.
        fps_tolerance, pixel_tolerance
            Relative differences allowed before a mismatch (0.1 = 10 %).
        strict
            ``True``: raise on a mismatch. ``False``: log and return it as a warning
            (the user accepts the risk, e.g. ``--no-strict``).
        where
            Path or name of the data, for messages.

        Returns
        -------
        list of str
            Warnings (mismatches that do not invalidate the model, and every mismatch
            when ``strict`` is false). Each is also logged.

        Raises
        ------
        ModelMismatchError
            On the first mismatch, with the field and a fix, when ``strict``.
        """
        problems: list[_Problem] = []
        warnings: list[str] = []
        self._version_problems(feature_version, pipeline_version, problems, warnings)
        if columns is not None:
            missing = [c for c in self.feature_columns if c not in set(columns)]
            if missing:
                problems.append(
                    (
                        missing[0],
                        f"the cells lack feature column(s) {', '.join(missing)} that model '{self.model_id}' needs",
                        "run 'cellsift run' so the cells table has every feature",
                    )
                )
        if self.uses_clips:
            problems += self._clip_problems(clip_frames, clip_n_before, clip_crop_px)
        self._rate_problems(fps, fps_tolerance, pixel_size_um, pixel_tolerance, problems, warnings)
        for fld, problem, fix in problems:
            if strict:
                raise ModelMismatchError(problem, path=where, field=fld, fix=fix)
            warnings.append(f"{problem} (scored anyway)")
        for w in warnings:
            logger.warning("%s%s", f"{where}: " if where else "", w)
        return warnings

    def _version_problems(
        self,
        feature_version: str | None,
        pipeline_version: str | None,
        problems: list[_Problem],
        warnings: list[str],
    ) -> None:
        if feature_version is not None and feature_version != self.feature_version:
            problems.append(
                (
                    "feature_version",
                    f"model '{self.model_id}' was trained on feature set {self.feature_version}, "
                    f"this cellsift computes {feature_version}",
                    "re-run 'cellsift run' with the cellsift version the model was trained with, "
                    "or re-train the model",
                )
            )
        if pipeline_version is None or pipeline_version == self.pipeline_version:
            return
        if _major(pipeline_version) != _major(self.pipeline_version):
            problems.append(
                (
                    "pipeline_version",
                    f"model '{self.model_id}' was trained on pipeline {self.pipeline_version}, "
                    f"the cells come from pipeline {pipeline_version}",
                    "re-run 'cellsift run --force' with a matching cellsift, or re-train",
                )
            )
        else:
            warnings.append(
                f"model '{self.model_id}' was trained on pipeline {self.pipeline_version}, "
                f"the cells come from {pipeline_version} (same major version)"
            )

    def _clip_problems(
        self, clip_frames: int | None, clip_n_before: int | None, clip_crop_px: int | None
    ) -> list[_Problem]:
        out: list[_Problem] = []
        del clip_crop_px  # crops scale with each session's cell size; clips are resampled
        for name, have, want in (
            ("clip_frames", clip_frames, self.clip_frames),
            ("clip_n_before", clip_n_before, self.clip_n_before),
        ):
            if have is not None and want is not None and int(have) != int(want):
                out.append(
                    (
                        name,
                        f"model '{self.model_id}' was trained on clips with {name}={want}, "
                        f"the clip store has {name}={have}",
                        "re-run the pipeline with the model's clip parameters, or " + _RETRAIN,
                    )
                )
        return out

    def _rate_problems(
        self,
        fps: float | None,
        fps_tolerance: float,
        pixel_size_um: float | None,
        pixel_tolerance: float,
        problems: list[_Problem],
        warnings: list[str],
    ) -> None:
        if fps is not None and self.fps:
            rel = abs(float(fps) - float(self.fps)) / float(self.fps)
            if rel > fps_tolerance:
                msg = (
                    f"model '{self.model_id}' was trained at {self.fps:g} Hz, the data are at "
                    f"{float(fps):g} Hz ({rel:.0%} apart)"
                )
                if self.uses_clips:
                    problems.append(("fps", msg, _RETRAIN))
                else:
                    warnings.append(msg + "; rates are per minute, so the features still compare")
        if pixel_size_um is not None and self.pixel_size_um:
            rel = abs(float(pixel_size_um) - float(self.pixel_size_um)) / float(self.pixel_size_um)
            if rel > pixel_tolerance:
                problems.append(
                    (
                        "pixel_size_um",
                        f"model '{self.model_id}' was trained at {self.pixel_size_um:g} um/px, the data "
                        f"have {float(pixel_size_um):g} um/px",
                        _RETRAIN,
                    )
                )


def cells_pipeline_version(table: pd.DataFrame) -> str | None:
    """The ``pipeline_version`` of a cells table's first row that has one (``None``: none has)."""
    if "pipeline_version" in table and table["pipeline_version"].notna().any():
        return str(table["pipeline_version"].dropna().iloc[0])
    return None


def check_card_for_cells(card: ModelCard, data: CellData, *, where: str, strict: bool = True) -> list[str]:
    """:meth:`ModelCard.check_compatible` against loaded cells (their table, frame rate and clips).

    Returns
    -------
    list of str
        The warnings of :meth:`ModelCard.check_compatible`.
    """
    clips = data.clips
    return card.check_compatible(
        pipeline_version=cells_pipeline_version(data.table),
        columns=list(data.table.columns),
        fps=data.fps,
        strict=strict,
        where=where,
        clip_frames=clips.n_frames if clips is not None else None,
        clip_n_before=clips.n_before if clips is not None else None,
        clip_crop_px=clips.crop_px if clips is not None else None,
    )
