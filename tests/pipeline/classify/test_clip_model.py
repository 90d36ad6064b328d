"""The clip model: learning on synthetic clips, refusing data without clips."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import TINY_CLIPS, balanced_accuracy


def test_clip_model_learns_separable_problem(train_test):
    train, test = train_test
    model = ClipClassifier(TINY_CLIPS).fit(train)
    p = model.predict_proba(test)
    assert balanced_accuracy(test.y, p) > 0.9
    assert model.history and "valid_loss" in model.history[0]
    assert model.best_epoch is not None and model.best_epoch <= len(model.history)
    assert model.card is not None and model.card.clip_frames == 21 and model.card.uses_clips


def test_clip_model_refuses_data_without_clips(train_test):
    train, _ = train_test
    with pytest.raises(InputFormatError, match="clips"):
        ClipClassifier(TINY_CLIPS).fit(replace(train, clips=None))
