"""Model kinds: kind names to classes, untrained models of a kind."""

from __future__ import annotations

import pytest

from cellsift.pipeline.classify.ensemble import EnsembleClassifier
from cellsift.pipeline.classify.kinds import MODEL_KINDS, make_model, model_class
from cellsift.schemas.errors import ModelMismatchError, ParameterError


def test_every_kind_makes_and_names_its_class():
    for kind, cls in MODEL_KINDS.items():
        model = make_model(kind, seed=3)
        assert type(model) is cls and model.kind == kind and model_class(kind) is cls
    ens = make_model("ensemble", seed=3, n_folds=4)
    assert isinstance(ens, EnsembleClassifier) and ens.config.n_folds == 4 and ens.config.clips.seed == 3
    with pytest.raises(ParameterError, match="unknown model kind"):
        make_model("forest")
    with pytest.raises(ModelMismatchError, match="newer cellsift"):
        model_class("forest")
