"""The models' table inputs: quality features with session-relative area and noise."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.classify.inputs import MODEL_FEATURES, feature_matrix
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import synthetic_cells


def test_feature_matrix_derives_session_relative_columns():
    data = synthetic_cells(20, clips=False)
    X = feature_matrix(data.table)
    assert X.shape == (20, len(MODEL_FEATURES))
    j = MODEL_FEATURES.index("area_rel")
    assert np.nanmedian(X[:, j]) == pytest.approx(1.0)
    with pytest.raises(InputFormatError, match="lacks column"):
        feature_matrix(data.table.drop(columns=["spatial_corr"]))


def test_model_inputs_do_not_depend_on_units_pixel_size_or_session_length():
    from cellsift.pipeline.classify.inputs import DERIVED_FEATURES

    for col in ("area_px", "noise_sd", "n_transients"):
        assert col not in MODEL_FEATURES
    data = synthetic_cells(30, clips=False)
    table = data.table.assign(overlap_partner=[None] * 29 + [3])
    other_lab = table.assign(
        noise_sd=table["noise_sd"] * 137.0,  # another extractor's trace units
        area_px=table["area_px"] * 4.0,  # twice the pixel density
        n_transients=table["n_transients"] * 10,  # a ten times longer session
    )
    np.testing.assert_allclose(feature_matrix(table), feature_matrix(other_lab), rtol=1e-12, equal_nan=True)
    assert set(DERIVED_FEATURES) <= set(MODEL_FEATURES)


def test_partner_ratios_compare_a_unit_with_its_overlap_partner():
    data = synthetic_cells(6, clips=False)
    table = data.table.assign(
        peak_to_noise=[10.0, 5.0, 8.0, 8.0, 8.0, 8.0],
        area_px=[100.0, 50.0, 80.0, 80.0, 80.0, 80.0],
        overlap_partner=[1, 0, None, None, None, 99],  # 99: not in the table
        animal="m01",
    )
    X = feature_matrix(table, ("partner_pnr_ratio", "partner_area_ratio"))
    assert X[0] == pytest.approx([np.log(2.0), np.log(2.0)])
    assert X[1] == pytest.approx([-np.log(2.0), -np.log(2.0)])
    assert (X[2] == 0).all()  # no partner
    assert np.isnan(X[5]).all()  # a partner that is not known
