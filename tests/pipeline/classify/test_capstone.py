"""The capstone protocol on small trials."""

from __future__ import annotations

import pytest

from cellsift.pipeline.classify.capstone import (
    CAPSTONE_TABLE2,
    CapstoneTrial,
    capstone_protocol,
    format_capstone_table,
)
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import synthetic_cells


def test_capstone_protocol_on_small_trials():
    pool = synthetic_cells(200, seed=7, clips=False, n_animals=4)
    test_pool = synthetic_cells(80, seed=8, clips=False, n_animals=2, cohort="other")
    trials = (
        CapstoneTrial(1, 60, 30, 30, 73.68, 64.3, 64.3, 64.3),
        CapstoneTrial(4, 20, 10, 10, 100, 71.5, 78.6, 64.3),
    )
    table = capstone_protocol(
        pool,
        test_pool,
        {"features": lambda: FeatureClassifier(FeatureModelConfig(max_iter=30))},
        n_test_per_class=10,
        trials=trials,
    )
    assert table["n_train"].tolist() == [60, 20] and (table["test_accuracy"] >= 75).all()
    text = format_capstone_table(table)
    assert "64.3%" in text and "71.5%" in text
    with pytest.raises(InputFormatError, match="share animals"):
        capstone_protocol(pool, pool, {"features": FeatureClassifier}, trials=trials)
    assert [t.n_train for t in CAPSTONE_TABLE2] == [377, 300, 150, 50]
