"""Model registry in the lake, name resolution, and the shipped default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.classify import DEFAULT_RECIPE
from cellsift.pipeline.classify.card import FEATURE_VERSION, ModelCard
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.store import (
    DEFAULT_MODEL_DIR,
    list_models,
    load_model,
    register_model,
    remove_model,
    resolve_model,
)
from cellsift.schemas.errors import LakeError, ModelMismatchError
from tests.pipeline.classify.synthetic import synthetic_cells


@pytest.fixture()
def lake(tmp_path) -> Path:
    root = tmp_path / "lake"
    (root / "tmp").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def feature_model() -> FeatureClassifier:
    return FeatureClassifier(FeatureModelConfig(max_iter=20)).fit(synthetic_cells(80, clips=False))


def test_register_list_resolve_load_remove(lake, feature_model, tmp_path):
    path = register_model(feature_model, lake, model_id="lab-a")
    assert path == lake / "models" / "lab-a" and (path / "card.json").is_file()
    assert not any((lake / "tmp").iterdir())  # staging cleaned up
    table = list_models(lake)
    assert {"default", "lab-a"} <= set(table["model_id"])
    row = table.set_index("model_id").loc["lab-a"]
    assert row["kind"] == "features" and row["source"] == "lake" and row["n_train_cells"] == 80
    assert resolve_model("lab-a", lake=lake) == path
    assert resolve_model(path) == path
    data = synthetic_cells(30, seed=3, clips=False)
    np.testing.assert_allclose(
        load_model("lab-a", lake=lake).predict_proba(data), feature_model.predict_proba(data)
    )
    with pytest.raises(LakeError, match="already registered"):
        register_model(feature_model, lake, model_id="lab-a")
    register_model(feature_model, lake, model_id="lab-a", overwrite=True)
    # a saved folder can be registered under a new id; its card follows
    saved = feature_model.save(tmp_path / "saved")
    copy = register_model(saved, lake, model_id="lab-b")
    assert ModelCard.read(copy).model_id == "lab-b"
    remove_model(lake, "lab-b")
    assert "lab-b" not in set(list_models(lake)["model_id"])
    with pytest.raises(ModelMismatchError, match="lab-a"):  # the message lists what exists
        resolve_model("nope", lake=lake)
    with pytest.raises(LakeError, match="reserved"):
        register_model(feature_model, lake, model_id="default")


def test_registering_a_tampered_folder_is_refused(lake, feature_model, tmp_path):
    saved = feature_model.save(tmp_path / "tampered")
    card = json.loads((saved / "card.json").read_text())
    card["files"]["features.npz"] = "0" * 64
    (saved / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelMismatchError, match="changed since training"):
        register_model(saved, lake, model_id="bad")
    assert not (lake / "models" / "bad").exists()


def test_shipped_default_model_loads_and_its_card_is_consistent():
    from cellsift.pipeline.stages import ClipParams
    from cellsift.schemas import PIPELINE_VERSION

    assert resolve_model("default") == DEFAULT_MODEL_DIR
    card = ModelCard.read(DEFAULT_MODEL_DIR)
    card.verify_files(DEFAULT_MODEL_DIR)
    assert card.kind == "ensemble" and card.model_id == DEFAULT_RECIPE.model_id
    assert card.feature_version == FEATURE_VERSION
    assert card.pipeline_version == PIPELINE_VERSION
    assert card.clip_frames == ClipParams().n_frames and card.clip_n_before == ClipParams().n_before
    assert (card.clip_model_crop, card.clip_pool) == (24, 2) and card.fps == pytest.approx(
        20.0
    )  # crops scale
    assert card.training["n_cells"] > 500 and card.training["n_animals"] >= 6
    assert sorted(card.training["cohorts"]) == sorted(c.cohort for c in DEFAULT_RECIPE.cohorts)
    assert card.training["recipe"]["cohorts"]  # reproducible from the recorded recipe
    assert card.metrics["out_of_fold"]["p_good"]["roc_auc"] > 0.9
    assert card.ood["threshold"] > 0
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert total < 5 * 2**20
    assert set(card.files) | {"card.json"} == {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    model = load_model("default")
    assert model.kind == "ensemble" and 0.05 < model.decision_threshold < 0.95
    assert (
        card.check_compatible(
            pipeline_version=PIPELINE_VERSION, fps=20.0, clip_frames=21, clip_n_before=10, clip_crop_px=32
        )
        == []
    )
