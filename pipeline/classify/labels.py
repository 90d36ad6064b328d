"""Training labels: where they come from and how they are read.

Labels come from the lake's ``labels`` table (simulator ground truth or imported
curation labels, optionally filtered by ``source``) or from a CSV file with columns
``animal, session, unit_id, label`` (``cohort`` and ``reason`` optional). Artifact
reasons are normalised to :data:`~cellsift.pipeline.classify.data.REASONS` (common
aliases such as ``shape`` or ``crosstalk`` are understood).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.data import ID_COLUMNS, REASONS, labels_to_int
from cellsift.schemas import InputFormatError

__all__ = ["ALL_LABELS", "LabelSpec", "load_labels", "normalise_reason", "read_labels_csv"]

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


def normalise_reason(value: Any) -> str | None:
    """The :data:`REASONS` entry ``value`` names (aliases understood), ``None`` if none."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if not text or text in ("nan", "none"):
        return None
    text = _REASON_ALIASES.get(text, text)
    return text if text in REASONS else None


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


#: Every label of the lake's ``labels`` table (the default).
ALL_LABELS: Final = LabelSpec()


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
        raise InputFormatError(
            f"labels file is not a readable CSV ({type(exc).__name__})", path=path
        ) from None
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
    out = pd.DataFrame(
        {
            "animal": df["animal"].astype(str),
            "session": df["session"].astype(str),
            "unit_id": unit,
            "label": np.where(y == 1, "good", "bad"),
            "reason": df["reason"] if "reason" in df else None,
            "source": "csv",
        }
    )
    if "cohort" in df:
        out.insert(0, "cohort", df["cohort"].astype(str))
    return out


def load_labels(lake: Any, spec: LabelSpec = ALL_LABELS) -> pd.DataFrame:
    """Return one label per cell: ``[cohort?], animal, session, unit_id, y, true_reason, label_source``.

    Parameters
    ----------
    lake
        An opened :class:`~cellsift.catalog.Lake` (its ``labels`` table), unless
        ``spec.csv`` is set.
    spec
        Where labels come from.

    Raises
    ------
    InputFormatError
        No labels, or an unreadable CSV.
    """
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
    return pd.DataFrame(
        {
            **{k: labels[k].to_numpy() for k in keys},
            "y": labels_to_int(labels["label"].tolist()),
            "true_reason": [normalise_reason(r) for r in labels["reason"]] if "reason" in labels else None,
            "label_source": labels["source"].astype(str).to_numpy(),
        }
    )
