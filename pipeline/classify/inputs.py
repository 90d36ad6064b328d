"""The models' table inputs: quality features made free of a lab's units.

The feature model and every model's out-of-distribution detector read the ``cells``
table's quality features, but only in forms that do not depend on the lab's units
(:data:`MODEL_FEATURES`):

- no pixel-scale inputs: ``area_px`` is replaced by ``area_rel`` (area over the
  session's median area); the shape measures (compactness, eccentricity, solidity,
  peak fraction) are ratios already;
- no trace-unit inputs: ``noise_sd`` is replaced by ``noise_rel`` (over the session's
  median noise) and ``pnr_rel`` (peak-to-noise over the session's median);
- no session-length inputs: ``n_transients`` (a count) is left out, its rate
  ``transient_rate_per_min`` stays;
- a component compared with its overlap partner (the unit of largest footprint
  overlap, ``overlap_partner``), which tells the real one of a duplicate pair from its
  copy: ``partner_pnr_ratio`` and ``partner_area_ratio`` (log ratios of this unit's
  peak-to-noise and area over the partner's; 0 without a partner).

The derived columns are computed over each whole session (:func:`add_session_relative`),
before cells are filtered or scored in batches. Missing values are NaN: the trace-noise
inputs (``peak_to_noise`` and what derives from it, ``noise_rel``) of sessions whose
extraction has no raw trace (revision 3), the spatial features of sessions without a movie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from cellsift.schemas import FEATURE_COLUMNS, InputFormatError

__all__ = [
    "DERIVED_FEATURES",
    "FEATURE_REVISION",
    "MODEL_FEATURES",
    "ROBUST_SD_PER_MAD",
    "add_session_relative",
    "feature_matrix",
    "table_columns_for",
]

#: Revision of the models' input definition (:data:`MODEL_FEATURES` and how every
#: input is computed). Raise it whenever a feature's computation changes; a test
#: holds a fingerprint of the computations per revision.
FEATURE_REVISION: Final = 3

#: Table columns that depend on a lab's units or a session's length: never model inputs.
_UNIT_DEPENDENT: Final = ("area_px", "noise_sd", "n_transients")

#: Derived inputs and the table columns each needs.
DERIVED_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "area_rel": ("area_px",),
    "noise_rel": ("noise_sd",),
    "pnr_rel": ("peak_to_noise",),
    "partner_pnr_ratio": ("peak_to_noise",),
    "partner_area_ratio": ("area_px",),
}

#: Columns the feature model reads, in order (derived columns included).
MODEL_FEATURES: Final = tuple(c for c in FEATURE_COLUMNS if c not in _UNIT_DEPENDENT) + tuple(
    DERIVED_FEATURES
)

#: Robust SD of a MAD as the models compute it (OOD standardisation, clip normalisation).
#: Part of the feature definition: changing it changes the model inputs (it is not
#: exactly ``cellsift.pipeline._util.MAD_TO_SD``). A Python float on purpose: it keeps
#: float32 arrays float32.
ROBUST_SD_PER_MAD: Final = 1.4826

_RELATIVE: Final = {"area_rel": "area_px", "noise_rel": "noise_sd", "pnr_rel": "peak_to_noise"}
_PARTNER: Final = {"partner_pnr_ratio": "peak_to_noise", "partner_area_ratio": "area_px"}


def _session_keys(table: pd.DataFrame) -> pd.Series:
    cols = [c for c in ("cohort", "animal", "session") if c in table.columns]
    if not cols:
        return pd.Series("all", index=table.index)
    return table[cols].astype(str).agg("/".join, axis=1)


def _numeric(table: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(table[col], errors="coerce").astype(np.float64)


def _relative(table: pd.DataFrame, keys: pd.Series, base: str) -> np.ndarray:
    values = _numeric(table, base)
    median = values.groupby(keys).transform("median")
    return (values / median.where(median > 0)).to_numpy(dtype=np.float64, na_value=np.nan)


def _partner_ratio(table: pd.DataFrame, keys: pd.Series, base: str) -> np.ndarray:
    """``log(value / partner's value)``; 0 without a partner, NaN when either value is unknown.

    Tables without ``overlap_partner``/``unit_id`` (not written by ``cellsift run``) give NaN.
    """
    values = _numeric(table, base).to_numpy(dtype=np.float64, na_value=np.nan)
    if not {"overlap_partner", "unit_id"} <= set(table.columns):
        return np.full(len(table), np.nan)
    unit = pd.to_numeric(table["unit_id"], errors="coerce")
    partner = pd.to_numeric(table["overlap_partner"], errors="coerce")
    lookup = pd.Series(values, index=pd.MultiIndex.from_arrays([keys.to_numpy(), unit.to_numpy()]))
    lookup = lookup[~lookup.index.duplicated()]
    has = partner.notna().to_numpy()
    other = np.full(len(table), np.nan)
    if has.any():
        idx = pd.MultiIndex.from_arrays([keys.to_numpy()[has], partner.to_numpy()[has]])
        other[has] = lookup.reindex(idx).to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.where((values > 0) & (other > 0), values / other, np.nan))
    return np.where(has, ratio, np.where(np.isnan(values), np.nan, 0.0))


def _derived(table: pd.DataFrame, keys: pd.Series, col: str) -> np.ndarray:
    if col in _RELATIVE:
        return _relative(table, keys, _RELATIVE[col])
    return _partner_ratio(table, keys, _PARTNER[col])


def feature_matrix(table: pd.DataFrame, columns: Sequence[str] = MODEL_FEATURES) -> np.ndarray:
    """Return the model's input matrix for the rows of a ``cells`` table.

    Parameters
    ----------
    table
        Cells with the needed table columns (and ``cohort``/``animal``/``session`` for
        the session-relative columns; without them the whole table is one session).
        Derived columns already in the table (:func:`add_session_relative`) are used
        as they are.
    columns
        Columns to return; those of :data:`DERIVED_FEATURES` are derived when absent.

    Returns
    -------
    numpy.ndarray
        ``(n, len(columns))`` float64; NaN where a value is missing.

    Raises
    ------
    InputFormatError
        If a needed table column is missing.
    """
    need: set[str] = set()
    for c in columns:
        if c in DERIVED_FEATURES and c not in table.columns:
            need.update(DERIVED_FEATURES[c])
        elif c not in DERIVED_FEATURES:
            need.add(c)
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
        if col in DERIVED_FEATURES and col not in table.columns:
            out[:, j] = _derived(table, keys, col)
        else:
            out[:, j] = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def add_session_relative(table: pd.DataFrame) -> pd.DataFrame:
    """Return ``table`` with every derived input (:data:`DERIVED_FEATURES`) computed over whole sessions.

    Call this on whole sessions (overlap-flagged cells included) before cells are
    filtered or scored in batches, so the session medians and overlap partners do not
    depend on the selection. Derived inputs whose columns are missing are skipped.
    """
    base = table.drop(columns=[c for c in DERIVED_FEATURES if c in table])
    cols = [c for c, need in DERIVED_FEATURES.items() if set(need) <= set(base.columns)]
    if not cols:
        return table
    values = feature_matrix(base, tuple(cols))
    return base.assign(**{c: values[:, j] for j, c in enumerate(cols)})


def table_columns_for(feature_columns: Sequence[str]) -> tuple[str, ...]:
    """Table columns needed to compute ``feature_columns`` (derived ones mapped back)."""
    out: list[str] = []
    for c in feature_columns:
        for base in DERIVED_FEATURES.get(c, (c,)):
            if base not in out:
                out.append(base)
    return tuple(out)
