"""The ``cells`` table as columns of an NWB ``PlaneSegmentation``.

HDF5 has no null, so missing values are written as follows (each column's description
says so): a column with no value at all (e.g. ``p_good`` when no classifier ran) is left
out; in float columns a missing value is NaN; in text columns it is ``""``; a boolean or
count column with missing values becomes float (1.0/0.0/NaN, counts as floats);
``overlap_partner`` uses -1 for "no partner".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas import FEATURE_COLUMNS

__all__ = ["CELL_COLUMN_DOCS", "CellColumn", "cell_columns"]

_FEATURE_DOCS: Final[dict[str, str]] = {
    "area_px": "footprint area (px)",
    "compactness": "4*pi*area/perimeter^2 of the binarised footprint, clipped to 1",
    "eccentricity": "eccentricity of the footprint (0 circle, towards 1 a line)",
    "solidity": "footprint area / convex hull area",
    "footprint_peak_frac": "weight share of the brightest 25% of binarised footprint pixels",
    "peak_to_noise": "(max of smoothed C_raw - running baseline) / noise_sd",
    "n_transients": "number of calcium transients detected in C_raw",
    "transient_rate_per_min": "transients per minute",
    "skewness": "skewness of C_raw",
    "noise_sd": "robust noise SD of C_raw (C_raw units)",
    "spatial_corr": "mean correlation of footprint and movie change at transient peaks",
    "spatial_corr_min": "minimum of spatial_corr over the clipped peaks",
    "peak_contrast": "in-footprint vs surround rise at peaks",
    "neighbour_trace_corr": "max correlation of C_raw with touching cells",
    "n_neighbours": "footprints sharing at least one pixel",
    "max_overlap_frac": "largest overlap with another footprint, as a fraction of the smaller one",
}

#: Description of every ``cells`` column the export writes, in table order.
CELL_COLUMN_DOCS: Final[dict[str, str]] = {
    "centroid_y": "footprint centroid, row (px)",
    "centroid_x": "footprint centroid, column (px)",
    **{name: _FEATURE_DOCS.get(name, name) + " (cellsift quality feature)" for name in FEATURE_COLUMNS},
    "overlap_flag": "true when max_overlap_frac exceeds the overlap threshold (likely duplicate)",
    "overlap_partner": "unit id (ROI id) of the footprint of largest overlap; -1 for none",
    "p_good": "calibrated probability that the candidate is a real cell (cellsift classifier)",
    "label": "classifier label: 'good' or 'bad'",
    "reason": "most likely artifact reason of a 'bad' candidate; '' for good ones",
    "model_id": "id of the cellsift model that labelled the candidate",
    "ood_score": "distance of the candidate from the model's training data",
    "ood_flag": "true when the candidate lies outside the model's training data",
}

_MISSING_INT: Final[dict[str, int]] = {"overlap_partner": -1}


@dataclass(frozen=True)
class CellColumn:
    """One ``PlaneSegmentation`` column: name, description and values in ROI order."""

    name: str
    description: str
    data: Any


def _is_bool(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(pd.api.types.is_bool_dtype(values.dtype)) or (
        values.dtype == object and len(present) > 0 and all(isinstance(v, bool | np.bool_) for v in present)
    )


def _convert(name: str, values: pd.Series) -> tuple[Any, str]:
    """Values of one column as an HDF5-friendly array and a note on missing values."""
    missing = values.isna().to_numpy()
    if name in _MISSING_INT:
        filled = values.astype("float64").fillna(_MISSING_INT[name])
        return filled.to_numpy().astype(np.int64), ""
    if _is_bool(values):
        if not missing.any():
            return values.astype(bool).to_numpy(), ""
        out = np.where(missing, np.nan, values.map(lambda v: 1.0 if v is True or v == 1 else 0.0))
        return out.astype(np.float64), " (1.0 true, 0.0 false, NaN unknown)"
    if pd.api.types.is_numeric_dtype(values.dtype):
        if name.startswith("n_") and not missing.any():  # counts stay integers when complete
            return values.to_numpy().astype(np.int64), ""
        return values.to_numpy(
            dtype=np.float64, na_value=np.nan
        ), " (NaN where unknown)" if missing.any() else ""
    text = ["" if m else str(v) for v, m in zip(values.tolist(), missing, strict=True)]
    return text, " ('' where not given)" if missing.any() and name != "reason" else ""


def cell_columns(cells: pd.DataFrame, unit_ids: np.ndarray) -> tuple[list[CellColumn], list[str]]:
    """The ``cells`` rows of a session as ``PlaneSegmentation`` columns.

    Parameters
    ----------
    cells
        The session's ``cells`` table (any subset of its columns; ``unit_id`` required).
    unit_ids
        ROI ids in ``PlaneSegmentation`` order; units without a row get missing values.

    Returns
    -------
    (list of CellColumn, list of str)
        The columns written, and the names left out because they had no value at all.
    """
    rows = cells.drop_duplicates("unit_id", keep="last").set_index("unit_id").reindex(unit_ids)
    out: list[CellColumn] = []
    omitted: list[str] = []
    for name, doc in CELL_COLUMN_DOCS.items():
        if name not in rows.columns or rows[name].isna().all():
            omitted.append(name)
            continue
        data, note = _convert(name, rows[name])
        out.append(CellColumn(name, doc + note, data))
    return out, omitted
