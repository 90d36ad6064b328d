"""The cells table as PlaneSegmentation columns: missing values have a defined form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsift.pipeline.export.nwb_columns import CELL_COLUMN_DOCS, cell_columns
from cellsift.schemas import FEATURE_COLUMNS


def test_missing_values_become_nan_empty_text_or_no_column():
    cells = pd.DataFrame(
        {
            "unit_id": [5, 2, 9],
            "area_px": [10.0, np.nan, 30.0],
            "n_transients": pd.array([1, 2, None], dtype="Int32"),
            "n_neighbours": pd.array([0, 1, 2], dtype="Int32"),
            "overlap_flag": [True, False, True],
            "overlap_partner": [2.0, np.nan, np.nan],
            "p_good": [0.9, 0.1, np.nan],
            "label": ["good", "bad", None],
            "reason": [None, "background", None],
            "model_id": [None, None, None],
            "ood_flag": [False, True, None],
        }
    )
    columns, omitted = cell_columns(cells, np.array([2, 5, 9, 11]))  # 11 has no row
    by_name = {c.name: c for c in columns}
    assert "model_id" in omitted and "ood_score" in omitted and "model_id" not in by_name
    np.testing.assert_array_equal(by_name["area_px"].data, [np.nan, 10.0, 30.0, np.nan])
    assert by_name["n_transients"].data.dtype == np.float64  # a count with gaps becomes float
    assert "NaN" in by_name["n_transients"].description
    assert by_name["overlap_partner"].data.tolist() == [-1, 2, -1, -1]
    assert by_name["label"].data == ["bad", "good", "", ""]
    assert by_name["reason"].data == ["background", "", "", ""]
    np.testing.assert_array_equal(by_name["ood_flag"].data, [1.0, 0.0, np.nan, np.nan])
    np.testing.assert_array_equal(by_name["p_good"].data, [0.1, 0.9, np.nan, np.nan])


def test_complete_columns_keep_their_types_and_order():
    cells = pd.DataFrame(
        {
            "unit_id": [1, 2],
            "n_neighbours": pd.array([0, 3], dtype="int32"),
            "overlap_flag": [True, False],
            **{name: [1.0, 2.0] for name in FEATURE_COLUMNS if name not in ("n_neighbours",)},
        }
    )
    columns, _ = cell_columns(cells, np.array([1, 2]))
    by_name = {c.name: c for c in columns}
    assert by_name["n_neighbours"].data.dtype == np.int64
    assert by_name["overlap_flag"].data.dtype == bool
    names = [c.name for c in columns]
    assert names == [n for n in CELL_COLUMN_DOCS if n in names]
    assert set(FEATURE_COLUMNS) <= set(names)
