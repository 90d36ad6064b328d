"""The one interface every cell classifier follows, its data container and its model card.

A *cell classifier* turns cell candidates into ``p_good`` (the probability that a
candidate is a real cell) and, where it can tell, the most likely artifact reason
(:data:`REASONS`). Every classifier implements :class:`CellClassifier`:

* ``fit(train, valid=None)`` on a :class:`CellData` with labels;
* ``predict_proba(data) -> p_good`` (float64, one per cell);
* ``predict_reason(data) -> reason`` (object array of reason names or ``None``);
* ``save(folder)`` / ``load(folder)``: weights in plain formats (``.npz`` without
  pickles, ``.json``, ``torch`` state dicts loaded with ``weights_only=True``) plus the
  JSON :class:`ModelCard`, whose file hashes are verified before anything is loaded.

The model card records what the model was trained on (feature set and pipeline
version, clip geometry, frame rate and pixel size, training-data summary and hash,
metrics, package versions); :meth:`ModelCard.check_compatible` compares it with the
data a model is about to score and raises :class:`~cellsift.schemas.errors.ModelMismatchError`
on a mismatch that would make its output meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from cellsift.schemas.errors import InputFormatError, ModelMismatchError
from cellsift.schemas.tables import FEATURE_COLUMNS, TABLE_SCHEMA_VERSION

logger = logging.getLogger(__name__)

__all__ = [
    "REASONS",
    "ID_COLUMNS",
    "CARD_NAME",
    "CARD_SCHEMA",
    "FEATURE_VERSION",
    "ClipArrays",
    "CellData",
    "ModelCard",
    "CellClassifier",
    "file_sha256",
    "group_keys",
    "labels_to_int",
]

#: Artifact reasons a model can name, in the order of the reason heads' outputs.
REASONS: Final = ("no_transients", "irregular_shape", "borrowed_fluorescence", "overlap", "background")

#: Columns that identify a cell across the lake.
ID_COLUMNS: Final = ("cohort", "animal", "session", "unit_id")

#: File name of the model card inside a model folder.
CARD_NAME: Final = "card.json"

#: Version of the card format.
CARD_SCHEMA: Final = "cellsift-model-card/1"

#: File of the out-of-distribution detector inside a model folder.
OOD_FILE: Final = "ood.npz"


def _feature_version() -> str:
    digest = hashlib.sha256(",".join(FEATURE_COLUMNS).encode()).hexdigest()[:8]
    return f"{TABLE_SCHEMA_VERSION}+{digest}"


#: Version of the quality-feature set: table schema version plus a hash of the column list.
FEATURE_VERSION: Final = _feature_version()


def file_sha256(path: str | PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def group_keys(table: pd.DataFrame) -> np.ndarray:
    """Return one group key per row identifying the animal: ``"<cohort>/<animal>"``.

    Animal names repeat across cohorts (``m01`` in every simulated cohort), so the
    cohort is part of the key.
    """
    if len(table) == 0:
        return np.zeros(0, dtype=object)
    cohort = table["cohort"].astype(str) if "cohort" in table else pd.Series("", index=table.index)
    return (cohort + "/" + table["animal"].astype(str)).to_numpy(dtype=object)


def labels_to_int(labels: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Map ``"good"``/``"bad"`` (or bools / 1/0) to int8 1/0; unknown values to -1."""
    out = np.full(len(labels), -1, dtype=np.int8)
    for i, value in enumerate(labels):
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("good", "cell", "accept", "accepted", "true", "1"):
                out[i] = 1
            elif v in ("bad", "artifact", "reject", "rejected", "false", "0"):
                out[i] = 0
        elif isinstance(value, (bool, np.bool_, int, np.integer)):
            out[i] = 1 if bool(value) else 0
        elif isinstance(value, (float, np.floating)) and np.isfinite(value):
            out[i] = 1 if value >= 0.5 else 0
    return out


@dataclass(frozen=True)
class ClipArrays:
    """Model-ready clips of a set of cells (see :func:`cellsift.pipeline.classify.clip_model.prepare_clips`).

    Attributes
    ----------
    dynamic
        ``(n, k, T, s, s)`` float16: per clip, the change from the pre-peak baseline
        divided by the clip's robust noise SD (dimensionless).
    static
        ``(n, k, 3, s, s)`` float16: footprint (scaled to max 1), neighbour mask (0/1)
        and the robust z-score of the clip's baseline image.
    valid
        ``(n, k)`` bool: True where a clip was cut around a real peak.
    n_before
        Frames before the peak frame in the clip.
    crop_px
        Side (px) of the clip store's crops, before centre cropping and pooling.
    pool
        Spatial pooling factor applied (``s = model_crop // pool``).
    """

    dynamic: np.ndarray
    static: np.ndarray
    valid: np.ndarray
    n_before: int
    crop_px: int
    pool: int

    def __post_init__(self) -> None:
        n = self.dynamic.shape[0]
        if self.dynamic.ndim != 5 or self.static.ndim != 5 or self.valid.shape != self.dynamic.shape[:2]:
            raise InputFormatError(
                f"clip arrays have inconsistent shapes: dynamic {self.dynamic.shape}, "
                f"static {self.static.shape}, valid {self.valid.shape}",
                field="clips",
            )
        if self.static.shape[:2] != (n, self.dynamic.shape[1]):
            raise InputFormatError("static channels do not match the clips", field="clips")

    @property
    def n_frames(self) -> int:
        """Frames per clip."""
        return int(self.dynamic.shape[2])

    def take(self, index: np.ndarray) -> ClipArrays:
        """Return the clips of rows ``index``."""
        return replace(
            self,
            dynamic=self.dynamic[index],
            static=self.static[index],
            valid=self.valid[index],
        )


@dataclass(frozen=True)
class CellData:
    """Cells to train on or to score: their table rows, clips and (optional) labels.

    Attributes
    ----------
    table
        One row per cell with at least :data:`ID_COLUMNS` and the quality features
        (``FEATURE_COLUMNS`` of the ``cells`` table). Index is reset to 0..n-1.
    clips
        Model-ready clips, row-aligned with ``table``; ``None`` if not loaded.
    y
        ``(n,)`` int8: 1 good, 0 bad, -1 unlabelled; ``None`` if no labels.
    reasons
        ``(n,)`` object: artifact reason of bad cells (one of :data:`REASONS`) or ``None``.
    fps
        Frame rate (Hz) of the sessions (one value if they agree, else the median).
    """

    table: pd.DataFrame
    clips: ClipArrays | None = None
    y: np.ndarray | None = None
    reasons: np.ndarray | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", self.table.reset_index(drop=True))
        n = len(self.table)
        if self.clips is not None and self.clips.dynamic.shape[0] != n:
            raise InputFormatError(
                f"{self.clips.dynamic.shape[0]} clip rows for {n} cells", field="clips"
            )
        if self.y is not None:
            y = np.asarray(self.y, dtype=np.int8)
            if y.shape != (n,):
                raise InputFormatError(f"{y.shape[0]} labels for {n} cells", field="label")
            object.__setattr__(self, "y", y)
        if self.reasons is not None:
            r = np.asarray(self.reasons, dtype=object)
            if r.shape != (n,):
                raise InputFormatError(f"{r.shape[0]} reasons for {n} cells", field="reason")
            object.__setattr__(self, "reasons", r)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def groups(self) -> np.ndarray:
        """Animal key of each cell (``cohort/animal``), for grouped splits."""
        return group_keys(self.table)

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of cells with a good/bad label."""
        if self.y is None:
            return np.zeros(len(self), dtype=bool)
        return self.y >= 0

    def take(self, index: np.ndarray | Sequence[int]) -> CellData:
        """Return the cells at positions ``index`` (int positions or a boolean mask)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return CellData(
            table=self.table.iloc[idx].reset_index(drop=True),
            clips=None if self.clips is None else self.clips.take(idx),
            y=None if self.y is None else self.y[idx],
            reasons=None if self.reasons is None else self.reasons[idx],
            fps=self.fps,
        )

    def require_labels(self, *, what: str) -> np.ndarray:
        """Return ``y`` or raise if cells are unlabelled or a class is missing."""
        if self.y is None or not np.all(self.y >= 0):
            raise InputFormatError(
                f"{what} needs a good/bad label for every cell",
                field="label",
                fix="drop unlabelled cells before training (training.load_cell_data does)",
            )
        if len(np.unique(self.y)) < 2:
            raise InputFormatError(
                f"{what} needs both good and bad cells, got only "
                f"{'good' if self.y[0] == 1 else 'bad'} ({len(self.y)} cells)",
                field="label",
                fix="add labels of the other class",
            )
        return self.y

    @staticmethod
    def concat(parts: Sequence[CellData]) -> CellData:
        """Stack several :class:`CellData` (clips must agree in geometry)."""
        parts = [p for p in parts if len(p) > 0] or list(parts[:1])
        if not parts:
            raise InputFormatError("nothing to concatenate", field="cells")
        table = pd.concat([p.table for p in parts], ignore_index=True)
        clips = None
        arrays = [p.clips for p in parts if p.clips is not None]
        if len(arrays) == len(parts):
            geoms = {(c.dynamic.shape[1:], c.n_before, c.pool) for c in arrays}
            if len(geoms) > 1:
                raise InputFormatError(
                    f"clip geometries differ between sessions: {sorted(map(str, geoms))}",
                    field="clips",
                    fix="process all sessions with the same pipeline parameters",
                )
            clips = replace(
                arrays[0],
                dynamic=np.concatenate([c.dynamic for c in arrays]),
                static=np.concatenate([c.static for c in arrays]),
                valid=np.concatenate([c.valid for c in arrays]),
            )
        y = np.concatenate([p.y for p in parts]) if all(p.y is not None for p in parts) else None
        reasons = (
            np.concatenate([p.reasons for p in parts])
            if all(p.reasons is not None for p in parts)
            else None
        )
        fps_values = [p.fps for p in parts if p.fps]
        fps = float(np.median(fps_values)) if fps_values else None
        return CellData(table=table, clips=clips, y=y, reasons=reasons, fps=fps)


# ---------------------------------------------------------------------------
# model card


def _major(version: str) -> str:
    return version.split(".")[0] if version else ""


@dataclass(frozen=True)
class ModelCard:
    """What a model is and what it was trained on; stored as ``card.json`` in its folder.

    Attributes
    ----------
    model_id
        Unique id (also the folder name in a lake's registry).
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
        return json.loads(json.dumps(d, default=_json_default))

    def to_json(self) -> str:
        """Return the card as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | PathLike[str] | None = None) -> ModelCard:
        """Build a card from parsed JSON; raise ``ModelMismatchError`` if it is not a card."""
        if data.get("schema") != CARD_SCHEMA:
            raise ModelMismatchError(
                f"not a cellsift model card (schema {data.get('schema')!r}, expected {CARD_SCHEMA!r})",
                path=path,
                field="schema",
                fix="point to a folder written by cellsift's training (card.json next to the weights)",
            )
        names = {f.name for f in fields(cls)}
        required = ("model_id", "kind", "created_at", "cellsift_version", "pipeline_version",
                    "feature_version", "feature_columns", "uses_clips")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelMismatchError(
                f"model card lacks {', '.join(missing)}",
                path=path,
                field=missing[0],
                fix="re-train the model or restore its card.json",
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls, folder: str | PathLike[str]) -> ModelCard:
        """Read ``folder/card.json``."""
        path = Path(folder) / CARD_NAME
        if not path.is_file():
            raise ModelMismatchError(
                "no model card here",
                path=path,
                fix="point to a model folder (weights + card.json), a model id in the lake's "
                "registry, or 'default'",
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
        path = Path(folder) / CARD_NAME
        tmp = path.with_name(f".{CARD_NAME}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(self.to_json() + "\n")
        os.replace(tmp, path)
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
        problems: list[tuple[str, str, str]] = []  # (field, problem, fix)
        warnings: list[str] = []
        retrain = "train or fine-tune a model on such data ('cellsift train --lake LAKE --base default'), or pass --no-strict to score anyway"
        if feature_version is not None and feature_version != self.feature_version:
            problems.append((
                "feature_version",
                f"model '{self.model_id}' was trained on feature set {self.feature_version}, "
                f"this cellsift computes {feature_version}",
                "re-run 'cellsift run' with the cellsift version the model was trained with, "
                "or re-train the model",
            ))
        if pipeline_version is not None and pipeline_version != self.pipeline_version:
            if _major(pipeline_version) != _major(self.pipeline_version):
                problems.append((
                    "pipeline_version",
                    f"model '{self.model_id}' was trained on pipeline {self.pipeline_version}, "
                    f"the cells come from pipeline {pipeline_version}",
                    "re-run 'cellsift run --force' with a matching cellsift, or re-train",
                ))
            else:
                warnings.append(
                    f"model '{self.model_id}' was trained on pipeline {self.pipeline_version}, "
                    f"the cells come from {pipeline_version} (same major version)"
                )
        if columns is not None:
            missing = [c for c in self.feature_columns if c not in set(columns)]
            if missing:
                problems.append((
                    missing[0],
                    f"the cells lack feature column(s) {', '.join(missing)} that model "
                    f"'{self.model_id}' needs",
                    "run 'cellsift run' so the cells table has every feature",
                ))
        if self.uses_clips:
            for name, have, want in (
                ("clip_frames", clip_frames, self.clip_frames),
                ("clip_n_before", clip_n_before, self.clip_n_before),
                ("clip_crop_px", clip_crop_px, self.clip_crop_px),
            ):
                if have is not None and want is not None and int(have) != int(want):
                    problems.append((
                        name,
                        f"model '{self.model_id}' was trained on clips with {name}={want}, "
                        f"the clip store has {name}={have}",
                        "re-run the pipeline with the model's clip parameters, or " + retrain,
                    ))
        if fps is not None and self.fps:
            rel = abs(float(fps) - float(self.fps)) / float(self.fps)
            if rel > fps_tolerance:
                msg = (
                    f"model '{self.model_id}' was trained at {self.fps:g} Hz, the data are at "
                    f"{float(fps):g} Hz ({rel:.0%} apart)"
                )
                if self.uses_clips:
                    problems.append(("fps", msg, retrain))
                else:
                    warnings.append(msg + "; rates are per minute, so the features still compare")
        if pixel_size_um is not None and self.pixel_size_um:
            rel = abs(float(pixel_size_um) - float(self.pixel_size_um)) / float(self.pixel_size_um)
            if rel > pixel_tolerance:
                problems.append((
                    "pixel_size_um",
                    f"model '{self.model_id}' was trained at {self.pixel_size_um:g} um/px, the data "
                    f"have {float(pixel_size_um):g} um/px",
                    retrain,
                ))
        for fld, problem, fix in problems:
            if strict:
                raise ModelMismatchError(problem, path=where, field=fld, fix=fix)
            warnings.append(f"{problem} (scored anyway)")
        for w in warnings:
            logger.warning("%s%s", f"{where}: " if where else "", w)
        return warnings


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


# ---------------------------------------------------------------------------
# the interface


class CellClassifier(ABC):
    """A model that scores cell candidates.

    Subclasses set :attr:`kind`, implement the abstract methods and keep ``card``
    (``None`` until trained or loaded).
    """

    kind: ClassVar[str] = ""
    #: Whether the model reads clips (``CellData.clips`` must then be loaded).
    uses_clips: ClassVar[bool] = False

    card: ModelCard | None = None
    #: Out-of-distribution detector fitted on the training cells' features (``None`` if
    #: the training table had no quality features).
    ood: Any = None

    @abstractmethod
    def fit(self, train: CellData, *, valid: CellData | None = None) -> CellClassifier:
        """Train on labelled cells; ``valid`` (optional) drives early stopping.

        Returns ``self``.
        """

    @abstractmethod
    def predict_proba(self, data: CellData) -> np.ndarray:
        """Return ``p_good``, ``(n,)`` float64 in [0, 1]."""

    @abstractmethod
    def reason_proba(self, data: CellData) -> np.ndarray | None:
        """Return ``(n, len(REASONS))`` probabilities of each artifact reason given the cell
        is an artifact, or ``None`` if the model cannot tell reasons."""

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(p_good, reason probabilities)`` in one pass (models that share work override it)."""
        return self.predict_proba(data), self.reason_proba(data)

    def predict_reason(
        self, data: CellData, *, min_prob: float = 0.4, proba: np.ndarray | None = None
    ) -> np.ndarray:
        """Most likely artifact reason per cell, ``None`` where the model cannot tell.

        Parameters
        ----------
        data
            Cells to score.
        min_prob
            A reason is named only if its probability (given the cell is an artifact)
            is at least this.
        proba
            Reason probabilities already computed (from :meth:`predict`).

        Returns
        -------
        numpy.ndarray
            ``(n,)`` object array of reason names (:data:`REASONS`) or ``None``.
        """
        out = np.full(len(data), None, dtype=object)
        if proba is None:
            proba = self.reason_proba(data)
        if proba is None or len(data) == 0:
            return out
        best = np.argmax(proba, axis=1)
        ok = proba[np.arange(len(data)), best] >= min_prob
        names = np.asarray(REASONS, dtype=object)
        out[ok] = names[best[ok]]
        return out

    @abstractmethod
    def save(self, folder: str | PathLike[str]) -> Path:
        """Write weights and ``card.json`` into ``folder`` (created); return the folder."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | PathLike[str]) -> CellClassifier:
        """Read a model written by :meth:`save` (verifies the card's file hashes)."""

    def require_card(self) -> ModelCard:
        """The model's card; raises if the model is not trained (or loaded) yet."""
        if self.card is None:
            raise ModelMismatchError(f"the {self.kind} model is not trained", fix="call fit() or load a saved model")
        return self.card

    @classmethod
    def _checked_card(cls, folder: Path) -> ModelCard:
        """The card of ``folder``, refused if it is another kind or a weight file changed."""
        card = ModelCard.read(folder)
        if card.kind != cls.kind:
            raise ModelMismatchError(
                f"model '{card.model_id}' is a {card.kind} model, not a {cls.kind} model",
                path=folder, field="kind", fix="load it with registry.load_model()",
            )
        card.verify_files(folder)
        return card

    def _save_base(self, folder: str | PathLike[str], weights: Callable[[Path], dict[str, str]]) -> Path:
        """Write ``weights(folder)``, the OOD detector and ``card.json`` (with file hashes)."""
        card = self.require_card()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {**weights(folder), **self._save_ood(folder)}
        self.card = replace(card, files=files)
        self.card.write(folder)
        return folder

    # -- out-of-distribution detector (shared by every model) ----------------------
    def fit_ood(self, train: CellData, *, quantile: float = 0.99) -> None:
        """Fit the OOD detector on the training cells' quality features (if present)."""
        from cellsift.pipeline.classify.feature_model import MODEL_FEATURES, feature_matrix
        from cellsift.pipeline.classify.ood import OODDetector

        self.ood = None
        try:
            X = feature_matrix(train.table, MODEL_FEATURES)
        except InputFormatError:
            logger.info("no quality features in the training table: no OOD detector")
            return
        if len(X) >= 3:
            self.ood = OODDetector.fit(X, quantile=quantile)

    def ood_scores(self, data: CellData) -> tuple[np.ndarray, np.ndarray]:
        """``(ood_score, ood_flag)`` per cell; NaN/False without a detector."""
        from cellsift.pipeline.classify.feature_model import MODEL_FEATURES, feature_matrix

        if self.ood is None:
            return np.full(len(data), np.nan), np.zeros(len(data), dtype=bool)
        X = feature_matrix(data.table, MODEL_FEATURES)
        score = self.ood.score(X)
        return score, score > self.ood.threshold

    def _save_ood(self, folder: Path) -> dict[str, str]:
        if self.ood is None:
            return {}
        np.savez_compressed(folder / OOD_FILE, **self.ood.to_arrays(""))
        return {OOD_FILE: file_sha256(folder / OOD_FILE)}

    def _load_ood(self, folder: Path) -> None:
        from cellsift.pipeline.classify.ood import OODDetector

        path = folder / OOD_FILE
        self.ood = None
        if not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as arrays:
                self.ood = OODDetector.from_arrays(arrays, "")
        except (OSError, KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"OOD detector cannot be read ({type(exc).__name__})", path=path,
                fix="restore the model folder or re-train",
            ) from None

    def _card_with_ood(self, card: ModelCard) -> ModelCard:
        return replace(card, ood=self.ood.summary() if self.ood is not None else {})

    @property
    def can_score_without_clips(self) -> bool:
        """True when the model can score a session that has no movie (no clip store)."""
        return not self.uses_clips

    @property
    def decision_threshold(self) -> float:
        """A cell is labelled good when ``p_good >= decision_threshold`` (0.5 unless the
        model chose one on out-of-fold predictions to balance the errors on both classes)."""
        return float(getattr(self, "_threshold", 0.5))

    def predict_label(self, data: CellData) -> np.ndarray:
        """``"good"``/``"bad"`` per cell (``p_good`` against :attr:`decision_threshold`)."""
        return np.where(self.predict_proba(data) >= self.decision_threshold, "good", "bad").astype(object)

    @property
    def model_id(self) -> str:
        """The model's id (from its card), ``"untrained"`` before training."""
        return self.card.model_id if self.card is not None else "untrained"


# ---------------------------------------------------------------------------
# cards from training data


def training_summary(data: CellData) -> dict[str, Any]:
    """Summarise labelled training cells for a model card.

    Returns
    -------
    dict
        ``n_cells``, ``n_good``, ``n_bad``, ``reasons`` (counts), ``cohorts``,
        ``n_animals``, ``animals`` (``cohort/animal``), ``n_sessions``, ``label_sources``,
        ``data_sha256`` (SHA-256 of the sorted ``cohort/animal/session/unit_id=label``
        lines) and ``clip_stores`` (``{session: clip-store name}`` where known).
    """
    table = data.table
    y = data.y if data.y is not None else np.full(len(data), -1, dtype=np.int8)
    keys = (
        table["cohort"].astype(str) + "/" + table["animal"].astype(str) + "/"
        + table["session"].astype(str) + "/" + table["unit_id"].astype(str)
    ) if len(table) else pd.Series([], dtype=str)
    lines = sorted(f"{k}={int(v)}" for k, v in zip(keys, y, strict=True))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    reasons: dict[str, int] = {}
    if data.reasons is not None:
        for r in data.reasons[y == 0]:
            name = str(r) if r is not None and not (isinstance(r, float) and np.isnan(r)) else "unknown"
            reasons[name] = reasons.get(name, 0) + 1
    sessions = (
        table[["cohort", "animal", "session"]].astype(str).agg("/".join, axis=1)
        if len(table) else pd.Series([], dtype=str)
    )
    summary: dict[str, Any] = {
        "n_cells": int(len(table)),
        "n_good": int((y == 1).sum()),
        "n_bad": int((y == 0).sum()),
        "reasons": dict(sorted(reasons.items())),
        "cohorts": sorted(table["cohort"].astype(str).unique().tolist()) if len(table) else [],
        "n_animals": int(len(set(group_keys(table)))),
        "animals": sorted(set(group_keys(table).tolist())),
        "n_sessions": int(sessions.nunique()),
        "data_sha256": digest,
    }
    if "label_source" in table:
        summary["label_sources"] = (
            table["label_source"].fillna("unknown").astype(str).value_counts().sort_index().to_dict()
        )
    if "clips_path" in table:
        stores = table.drop_duplicates("clips_path")
        summary["clip_stores"] = {
            f"{r.cohort}/{r.animal}/{r.session}": Path(str(r.clips_path)).name
            for r in stores.itertuples()
        }
    if "params_hash" in table:
        summary["params_hashes"] = sorted(table["params_hash"].dropna().astype(str).unique().tolist())
    return summary


def new_card(
    model: CellClassifier,
    train: CellData,
    *,
    params: Mapping[str, Any],
    feature_columns: Sequence[str],
    model_id: str | None = None,
    pixel_size_um: float | None = None,
    model_crop: int | None = None,
) -> ModelCard:
    """Build the card of a model just trained on ``train`` (no metrics, no files yet)."""
    import cellsift

    from cellsift.pipeline.provenance import package_versions, utc_now
    from cellsift.pipeline.stages.run import PIPELINE_VERSION

    table = train.table
    pipeline_version = PIPELINE_VERSION
    if "pipeline_version" in table and table["pipeline_version"].notna().any():
        versions = sorted(table["pipeline_version"].dropna().astype(str).unique())
        pipeline_version = versions[-1]
        if len(versions) > 1:
            logger.warning("training cells come from several pipeline versions: %s", versions)
    if pixel_size_um is None and "pixel_size_um" in table and table["pixel_size_um"].notna().any():
        pixel_size_um = float(table["pixel_size_um"].median())
    clips = train.clips if model.uses_clips else None
    now = utc_now()
    versions = package_versions()
    try:
        from importlib.metadata import version

        versions["scikit-learn"] = version("scikit-learn")
    except Exception:  # noqa: BLE001 - optional
        versions["scikit-learn"] = "not installed"
    return ModelCard(
        model_id=model_id or f"{model.kind}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}",
        kind=model.kind,
        created_at=now.isoformat(),
        cellsift_version=cellsift.__version__,
        pipeline_version=pipeline_version,
        feature_version=FEATURE_VERSION,
        feature_columns=tuple(c for c in feature_columns),
        uses_clips=model.uses_clips,
        clip_frames=None if clips is None else clips.n_frames,
        clip_n_before=None if clips is None else clips.n_before,
        clip_crop_px=None if clips is None else clips.crop_px,
        clip_pool=None if clips is None else clips.pool,
        clip_model_crop=model_crop,
        fps=train.fps,
        pixel_size_um=pixel_size_um,
        training=training_summary(train),
        params=dict(params),
        package_versions=versions,
    )


def table_columns_for(feature_columns: Sequence[str]) -> tuple[str, ...]:
    """Table columns needed to compute ``feature_columns`` (derived ones mapped back)."""
    out: list[str] = []
    for c in feature_columns:
        base = {"area_rel": "area_px", "noise_rel": "noise_sd"}.get(c, c)
        if base not in out:
            out.append(base)
    return tuple(out)
