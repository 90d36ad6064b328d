"""What every classifier reads: cells with their table rows, clips and labels.

* :class:`CellData` — cells to train on or to score: their ``cells`` table rows, their
  model-ready clips (:class:`ClipArrays`), labels ``y`` and artifact reasons;
* :data:`REASONS` — the artifact reasons a model can name, in the order of the reason
  heads' outputs; :data:`ID_COLUMNS` — the columns that identify a cell in a lake;
* :func:`labels_to_int` and :func:`group_keys` — labels as 1/0/-1 and the animal key
  (``cohort/animal``) that grouped splits use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas import InputFormatError

__all__ = [
    "ID_COLUMNS",
    "REASONS",
    "CellData",
    "ClipArrays",
    "group_keys",
    "labels_to_int",
]

#: Artifact reasons a model can name, in the order of the reason heads' outputs.
REASONS: Final = ("no_transients", "irregular_shape", "borrowed_fluorescence", "overlap", "background")

#: Columns that identify a cell across the lake.
ID_COLUMNS: Final = ("cohort", "animal", "session", "unit_id")

_GOOD_WORDS: Final = ("good", "cell", "accept", "accepted", "true", "1")
_BAD_WORDS: Final = ("bad", "artifact", "reject", "rejected", "false", "0")


def group_keys(table: pd.DataFrame) -> np.ndarray:
    """Return one group key per row identifying the animal: ``"<cohort>/<animal>"``.

    Animal names repeat across cohorts (``m01`` in every simulated cohort), so the
    cohort is part of the key.

    Parameters
    ----------
    table
        Rows with ``animal`` (and ``cohort``, if known).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` object array of ``cohort/animal`` strings.
    """
    if len(table) == 0:
        return np.zeros(0, dtype=object)
    cohort = table["cohort"].astype(str) if "cohort" in table else pd.Series("", index=table.index)
    return (cohort + "/" + table["animal"].astype(str)).to_numpy(dtype=object)


def labels_to_int(labels: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Map ``"good"``/``"bad"`` (or bools / 1/0) to int8 1/0; unknown values to -1.

    Parameters
    ----------
    labels
        Label values: words (``good``/``bad``, ``accepted``/``rejected``, ...), bools,
        integers, or probabilities (``>= 0.5`` is good).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int8: 1 good, 0 bad, -1 unknown.
    """
    out = np.full(len(labels), -1, dtype=np.int8)
    for i, value in enumerate(labels):
        if isinstance(value, str):
            v = value.strip().lower()
            if v in _GOOD_WORDS:
                out[i] = 1
            elif v in _BAD_WORDS:
                out[i] = 0
        elif isinstance(value, (bool, np.bool_, int, np.integer)):
            out[i] = 1 if bool(value) else 0
        elif isinstance(value, (float, np.floating)) and np.isfinite(value):
            out[i] = 1 if value >= 0.5 else 0
    return out


@dataclass(frozen=True)
class ClipArrays:
    """Model-ready clips of a set of cells (see :func:`~cellsift.pipeline.classify.clip_prep.prepare_clips`).

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
            raise InputFormatError(f"{self.clips.dynamic.shape[0]} clip rows for {n} cells", field="clips")
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
        """Return ``y`` or raise if cells are unlabelled or a class is missing.

        Raises
        ------
        InputFormatError
            A cell has no label, or only one class is present.
        """
        if self.y is None or not np.all(self.y >= 0):
            raise InputFormatError(
                f"{what} needs a good/bad label for every cell",
                field="label",
                fix="drop unlabelled cells before training (load_cell_data does)",
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
        """Stack several :class:`CellData` (clips must agree in geometry).

        Raises
        ------
        InputFormatError
            Nothing to stack, or the clip geometries differ.
        """
        parts = [p for p in parts if len(p) > 0] or list(parts[:1])
        if not parts:
            raise InputFormatError("nothing to concatenate", field="cells")
        table = pd.concat([p.table for p in parts], ignore_index=True)
        y_parts = [p.y for p in parts if p.y is not None]
        reason_parts = [p.reasons for p in parts if p.reasons is not None]
        fps_values = [p.fps for p in parts if p.fps]
        return CellData(
            table=table,
            clips=_concat_clips(parts),
            y=np.concatenate(y_parts) if len(y_parts) == len(parts) else None,
            reasons=np.concatenate(reason_parts) if len(reason_parts) == len(parts) else None,
            fps=float(np.median(fps_values)) if fps_values else None,
        )


def _concat_clips(parts: Sequence[CellData]) -> ClipArrays | None:
    """The clips of ``parts`` stacked, ``None`` unless every part has clips."""
    arrays = [p.clips for p in parts if p.clips is not None]
    if len(arrays) != len(parts):
        return None
    geoms = {(c.dynamic.shape[1:], c.n_before, c.pool) for c in arrays}
    if len(geoms) > 1:
        raise InputFormatError(
            f"clip geometries differ between sessions: {sorted(map(str, geoms))}",
            field="clips",
            fix="process all sessions with the same pipeline parameters",
        )
    return replace(
        arrays[0],
        dynamic=np.concatenate([c.dynamic for c in arrays]),
        static=np.concatenate([c.static for c in arrays]),
        valid=np.concatenate([c.valid for c in arrays]),
    )
