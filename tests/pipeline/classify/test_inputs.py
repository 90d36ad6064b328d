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
