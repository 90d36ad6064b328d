"""The models' table inputs: the quality features, with the unit-dependent ones made relative.

The feature model and every model's out-of-distribution detector read the ``cells``
table's quality features (``FEATURE_COLUMNS``) with the two that depend on a lab's
units made relative to their session: ``noise_sd`` (trace units) is replaced by
``noise_rel`` (noise over the session's median noise) and ``area_rel`` (area over the
session's median area) is added next to ``area_px`` (:data:`MODEL_FEATURES`). Missing
values are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from cellsift.schemas import FEATURE_COLUMNS, InputFormatError

__all__ = [
    "MODEL_FEATURES",
    "ROBUST_SD_PER_MAD",
    "add_session_relative",
    "feature_matrix",
    "table_columns_for",
]

#: Columns the feature model reads, in order (derived columns included).
MODEL_FEATURES: Final = tuple(c for c in FEATURE_COLUMNS if c != "noise_sd") + ("area_rel", "noise_rel")

#: Robust SD of a MAD as the v1 models compute it (OOD standardisation, clip normalisation).
#: Part of the v1 feature definition: changing it changes the model inputs (it is not
#: exactly ``cellsift.pipeline._util.MAD_TO_SD``). A Python float on purpose: it keeps
#: float32 arrays float32.
ROBUST_SD_PER_MAD: Final = 1.4826

_DERIVED: Final = {"area_rel": "area_px", "noise_rel": "noise_sd"}


def _session_keys(table: pd.DataFrame) -> pd.Series:
    cols = [c for c in ("cohort", "animal", "session") if c in table.columns]
    if not cols:
        return pd.Series("all", index=table.index)
    return table[cols].astype(str).agg("/".join, axis=1)


def feature_matrix(table: pd.DataFrame, columns: tuple[str, ...] = MODEL_FEATURES) -> np.ndarray:
    """Return the model's input matrix for the rows of a ``cells`` table.

    Parameters
    ----------
    table
        Cells with ``FEATURE_COLUMNS`` (and ``cohort``/``animal``/``session`` for the
        session-relative columns; without them the whole table is one session).
    columns
        Columns to return; ``area_rel`` and ``noise_rel`` are derived.

    Returns
    -------
    numpy.ndarray
        ``(n, len(columns))`` float64; NaN where a value is missing.

    Raises
    ------
    InputFormatError
        If a needed table column is missing.
    """
    need = {c for c in columns if c not in _DERIVED}
    for derived, base in _DERIVED.items():
        if derived in columns and derived not in table.columns:
            need.add(base)
    missing = sorted(need - set(table.columns))
    if missing:
        raise InputFormatError(
            f"cells table lacks column(s) {', '.join(missing)}",
            field=missing[0],
            fix="score cells from the lake's cells table written by 'cellsift run'",
        )
    out = np.empty((len(table), len(columns)), dtype=np.float64)
    if len(table) == 0:
        return out
    keys = _session_keys(table)
    for j, col in enumerate(columns):
        if col in _DERIVED and col not in table.columns:
            values = pd.to_numeric(table[_DERIVED[col]], errors="coerce").astype(np.float64)
            median = values.groupby(keys).transform("median")
            rel = values / median.where(median > 0)
            out[:, j] = rel.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # a table column, or a relative column precomputed over the whole session
            out[:, j] = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def add_session_relative(table: pd.DataFrame) -> pd.DataFrame:
    """Return ``table`` with ``area_rel`` and ``noise_rel`` computed over each whole session.

    Call this before scoring a session in batches of units, so the session medians do
    not depend on the batch.
    """
    rel = feature_matrix(table.drop(columns=[c for c in _DERIVED if c in table]), ("area_rel", "noise_rel"))
    return table.assign(area_rel=rel[:, 0], noise_rel=rel[:, 1])


def table_columns_for(feature_columns: Sequence[str]) -> tuple[str, ...]:
    """Table columns needed to compute ``feature_columns`` (derived ones mapped back)."""
    out: list[str] = []
    for c in feature_columns:
        base = _DERIVED.get(c, c)
        if base not in out:
            out.append(base)
    return tuple(out)
