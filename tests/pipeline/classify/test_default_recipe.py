"""The shipped default model: its card, its recipe and the code agree, and a small default rebuilds from a recipe."""

from __future__ import annotations

import json

import pytest

from cellsift.pipeline.classify import DEFAULT_RECIPE, FEATURE_VERSION, CohortSpec, DefaultModelRecipe
from cellsift.pipeline.classify.card import ModelCard
from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.default_recipe import recipe_dict, train_default_model
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, table_columns_for
from cellsift.pipeline.classify.store import DEFAULT_MODEL_DIR


def _json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_shipped_card_matches_the_recipe_and_the_code():
    card = ModelCard.read(DEFAULT_MODEL_DIR)
    training = dict(card.training)
    # the recipe on the card is exactly what the code's DEFAULT_RECIPE writes (fps keys included)
    assert training["recipe"] == _json(recipe_dict(DEFAULT_RECIPE))
    assert training["domain_ranges"] == _json(DEFAULT_RECIPE.domain_ranges())
    assert card.model_id == DEFAULT_RECIPE.model_id
    assert card.kind == DEFAULT_RECIPE.kind
    assert card.fps == DEFAULT_RECIPE.fps
    # the model reads today's inputs, computed today's way
    assert card.feature_version == FEATURE_VERSION
    assert set(card.feature_columns) == set(table_columns_for(MODEL_FEATURES))
    assert sorted(training["cohorts"]) == sorted(c.cohort for c in DEFAULT_RECIPE.cohorts)
    # the card's out-of-fold metrics are reported, with cross-fitted thresholds
    oof = dict(card.metrics)["out_of_fold"]["p_good"]
    assert 0.5 < oof["balanced_accuracy"] <= 1.0


def test_a_small_default_rebuilds_from_its_recipe(tmp_path):
    recipe = DefaultModelRecipe(
        cohorts=(
            CohortSpec(
                "tiny-a",
                seed=7,
                n_animals=2,
                n_frames=400,
                height=64,
                width=64,
                cell_diameter_px=9.0,
                trace_scale=0.1,
            ),
            CohortSpec(
                "tiny-b",
                seed=8,
                n_animals=1,
                n_frames=400,
                height=64,
                width=64,
                fps=10.0,
                cell_diameter_px=14.0,
                write_c_raw=False,
            ),
        ),
        kind="features",
        model_id="tiny-default",
        clip_config=ClipModelConfig(epochs=2),
    )
    out = train_default_model(tmp_path / "model", recipe=recipe, work_dir=tmp_path / "work")
    card = ModelCard.read(out)
    training = dict(card.training)
    assert training["recipe"] == _json(recipe_dict(recipe))
    assert training["recipe"]["fps"] == recipe.fps
    assert all("fps" in c and "cell_diameter_px" in c for c in training["recipe"]["cohorts"])
    assert training["domain_ranges"]["cell_diameter_px"] == [9.0, 14.0]
    assert training["domain_ranges"]["fps"] == [10.0, 20.0]
    assert card.model_id == "tiny-default"
    assert card.feature_version == FEATURE_VERSION
    # the OOD detector keeps the session ranges it was trained on (diameters from the footprints)
    ranges = dict(card.ood)["domain_ranges"]
    assert ranges["fps"][0] == pytest.approx(10.0 / 1.1, rel=1e-3)
    assert ranges["fps"][1] == pytest.approx(20.0 * 1.1, rel=1e-3)
    assert 3.0 < ranges["cell_diameter_px"][0] < ranges["cell_diameter_px"][1] < 30.0
    # same recipe, same model: the rebuild is deterministic
    again = train_default_model(tmp_path / "model2", recipe=recipe, work_dir=tmp_path / "work")
    assert ModelCard.read(again).files == card.files
