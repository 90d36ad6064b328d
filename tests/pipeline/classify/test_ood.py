"""Out-of-distribution warnings: shifted features are flagged, training-like ones are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.classify.inputs import feature_matrix
from cellsift.pipeline.classify.ood import OODDetector, session_ood
from cellsift.schemas.errors import ParameterError
from tests.pipeline.classify.synthetic import synthetic_cells


def test_ood_flags_shifted_features_not_training_like_ones():
    train = synthetic_cells(300, seed=5, clips=False)
    det = OODDetector.fit(feature_matrix(train.table), quantile=0.99)
    same = synthetic_cells(300, seed=6, clips=False)
    shifted = synthetic_cells(300, seed=7, clips=False, shift=8.0)
    assert det.flag(feature_matrix(same.table)).mean() < 0.08
    assert det.flag(feature_matrix(shifted.table)).mean() > 0.9
    assert np.median(det.score(feature_matrix(shifted.table))) > 2 * det.threshold
    cells = pd.concat([same.table.assign(session="a"), shifted.table.assign(session="b")], ignore_index=True)
    X = feature_matrix(cells)
    summary = session_ood(cells.assign(ood_score=det.score(X), ood_flag=det.flag(X)))
    assert summary.set_index("session")["ood_flag"].to_dict() == {"a": False, "b": True}


def test_quantile_outside_the_unit_interval_is_a_parameter_error():
    X = feature_matrix(synthetic_cells(20, clips=False).table)
    with pytest.raises(ParameterError, match="quantile"):
        OODDetector.fit(X, quantile=1.5)
