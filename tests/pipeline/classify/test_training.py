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


def test_train_on_lake_refuses_a_taken_id_before_training(tmp_path, monkeypatch):
    import pytest

    from cellsift.pipeline.classify import training
    from cellsift.schemas import LakeError

    (tmp_path / "lake" / "models" / "lab-v1").mkdir(parents=True)
    monkeypatch.setattr(training, "load_cell_data", lambda *a, **k: pytest.fail("loaded cells first"))
    with pytest.raises(LakeError, match="already registered") as err:
        training.train_on_lake(tmp_path / "lake", kind="features", model_id="lab-v1")
    assert "--overwrite" in err.value.one_line()
    with pytest.raises(LakeError, match="already registered"):
        training.fine_tune_on_lake(tmp_path / "lake", model_id="lab-v1")


def test_train_on_lake_reports_progress(processed_lake, caplog):
    from cellsift.pipeline.classify import PROGRESS_LOGGER
    from cellsift.pipeline.classify.training import train_on_lake

    with caplog.at_level("INFO", logger=PROGRESS_LOGGER):
        model, path = train_on_lake(processed_lake, kind="features", register=False)
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert lines[0] == "loading labels and clips..." and path is None
    assert lines[1].startswith("labels: ") and "from 2 animals" in lines[1]
    assert "fitting features model..." in lines
    assert model.card.training["cells"]  # the training cells are recorded on the card


def test_card_records_every_cell_the_model_saw(train_test):
    from cellsift.pipeline.classify.card_build import training_cell_keys
    from cellsift.pipeline.classify.training import train_model

    train, _ = train_test
    model = train_model(train.take(list(range(60))), "features")
    assert model.card.training["n_cells"] < 60  # the early-stopping split is not fitted on ...
    assert len(training_cell_keys(model.card.training)) == 60  # ... but is recorded as seen
