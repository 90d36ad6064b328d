"""The ensemble: accuracy, calibration, reasons, the table-only model, and save/load of every kind."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cellsift.pipeline.classify.card import FEATURE_VERSION
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES
from cellsift.pipeline.classify.data import REASONS
from cellsift.pipeline.classify.ensemble import EnsembleConfig
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.store import load_model
from cellsift.schemas.errors import ModelMismatchError, ParameterError
from tests.pipeline.classify.synthetic import TINY_CLIPS, balanced_accuracy


def test_ensemble_is_accurate_calibrated_and_names_reasons(ensemble, train_test):
    _, test = train_test
    p = ensemble.predict_proba(test)
    assert np.all((p > 0) & (p < 1))
    assert balanced_accuracy(test.y, p, ensemble.decision_threshold) > 0.9
    parts = ensemble.predict_parts(test)
    assert list(parts.columns) == ["p_features", "p_clips", "p_good"]
    oof = ensemble.oof
    assert oof is not None and oof["fold"].min() >= 0 and len(oof) == 120
    # calibration: mean predicted probability close to the observed rate of good cells
    assert abs(oof["p_good"].mean() - oof["y"].mean()) < 0.08
    reasons = ensemble.predict_reason(test)
    assert set(r for r in reasons if r is not None) <= set(REASONS)
    card = ensemble.card
    assert card is not None and card.kind == "ensemble" and card.ood["threshold"] > 0
    assert card.training["n_cells"] == 120 and card.training["n_animals"] == 4
    assert len(card.training["data_sha256"]) == 64


def test_ensemble_scores_sessions_without_a_movie_with_its_table_only_model(ensemble, train_test, tmp_path):
    _, test = train_test
    assert ensemble.features.uses_clips and set(CLIP_SUMMARY_FEATURES) <= set(ensemble.features.columns)
    table_only = ensemble.table_only
    assert table_only is not None and not table_only.uses_clips
    assert "spatial_corr" not in table_only.columns and ensemble.can_score_without_clips
    no_movie = replace(test, clips=None, table=test.table.assign(spatial_corr=np.nan))
    p, reasons = ensemble.predict(no_movie)
    np.testing.assert_allclose(p, table_only.predict_proba(no_movie))
    assert balanced_accuracy(test.y, p) > 0.8 and reasons is not None
    parts = ensemble.predict_parts(no_movie)
    assert parts["p_clips"].isna().all()
    loaded = load_model(ensemble.save(tmp_path / "ens"))
    np.testing.assert_allclose(loaded.predict_proba(no_movie), p, atol=1e-6)


@pytest.mark.parametrize("kind", ["features", "clips", "ensemble"])
def test_save_load_roundtrip_and_tamper_detection(kind, ensemble, train_test, tmp_path):
    train, test = train_test
    if kind == "ensemble":
        model = ensemble
    elif kind == "features":
        model = FeatureClassifier(FeatureModelConfig(max_iter=30)).fit(train)
    else:
        model = ClipClassifier(replace(TINY_CLIPS, epochs=2, min_epochs=1)).fit(train)
    folder = model.save(tmp_path / kind)
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == kind and card["feature_version"] == FEATURE_VERSION
    assert set(card["files"]) == {p.name for p in folder.iterdir() if p.name != "card.json"}
    assert card["package_versions"]["torch"] and card["training"]["data_sha256"]
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.predict_proba(test), model.predict_proba(test), atol=1e-6)
    assert loaded.decision_threshold == pytest.approx(model.decision_threshold, abs=1e-4)
    s1, f1 = model.ood_scores(test)
    s2, f2 = loaded.ood_scores(test)
    np.testing.assert_allclose(s1, s2)
    # a changed weight file is refused
    weight = next(p for p in folder.iterdir() if p.name != "card.json")
    weight.write_bytes(weight.read_bytes() + b"x")
    with pytest.raises(ModelMismatchError, match="changed since training"):
        load_model(folder)


def test_bad_ensemble_settings_are_parameter_errors():
    with pytest.raises(ParameterError, match="calibration"):
        EnsembleConfig(calibration="beta")
    with pytest.raises(ParameterError, match="n_folds"):
        EnsembleConfig(n_folds=1)
    with pytest.raises(ParameterError):
        FeatureModelConfig(learning_rate=0.0)
