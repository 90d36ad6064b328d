"""Grouped cross-validation and fine-tuning."""

from __future__ import annotations

import numpy as np

from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.metrics import binary_metrics
from cellsift.pipeline.classify.training import cross_validate, fine_tune
from tests.pipeline.classify.synthetic import TINY_CLIPS, synthetic_cells


def test_cross_validation_is_grouped_and_out_of_fold():
    data = synthetic_cells(120, seed=3, clips=False, n_animals=4)
    oof = cross_validate(data, lambda: FeatureClassifier(FeatureModelConfig(max_iter=40)), n_folds=4)
    assert oof["p_good"].notna().all() and sorted(oof["fold"].unique()) == [0, 1, 2, 3]
    for _, g in oof.groupby("fold"):
        assert g["animal"].nunique() == 1  # 4 animals, 4 folds: one animal per test fold
    m = binary_metrics(oof["y"].to_numpy(), oof["p_good"].to_numpy())
    assert m["balanced_accuracy"] > 0.9 and m["roc_auc"] > 0.95


def test_fine_tune_starts_from_the_base_and_records_the_parent():
    base_data = synthetic_cells(80, seed=4)
    lab_data = synthetic_cells(40, seed=5, cohort="lab")
    base = ClipClassifier(TINY_CLIPS).fit(base_data)
    tuned = fine_tune(base, lab_data, model_id="lab-v1")
    assert tuned.card is not None and tuned.card.parent_model_id == base.model_id
    assert tuned.model_id == "lab-v1"
    p = tuned.predict_proba(synthetic_cells(30, seed=6, cohort="lab"))
    assert np.isfinite(p).all()
    feat = FeatureClassifier(FeatureModelConfig(max_iter=20)).fit(base_data)
    assert fine_tune(feat, lab_data).card.parent_model_id == feat.model_id
