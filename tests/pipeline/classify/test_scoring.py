"""Scoring one session: every cell, batches, the shipped model, card checks, frame-rate resampling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cellsift.pipeline.classify import DEFAULT_RECIPE
from cellsift.pipeline.classify.scoring import OUTPUT_COLUMNS, classify_session
from cellsift.pipeline.classify.store import load_model
from cellsift.schemas.errors import ModelMismatchError
from tests.pipeline.classify.conftest import one_session


def test_classify_session_outputs_every_cell(processed_lake, lake_model):
    cells, clips, fps = one_session(processed_lake)
    out = classify_session(cells, clips, str(lake_model), fps=fps, batch_units=7)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == len(cells) and out["unit_id"].tolist() == cells["unit_id"].tolist()
    assert out["p_good"].between(0, 1).all() and set(out["label"]) <= {"good", "bad"}
    assert out["model_id"].nunique() == 1 and out["ood_score"].notna().all()
    good = out["label"] == "good"
    assert out.loc[good, "reason"].isna().all()
    # overlap-flagged cells are outside the training data by construction: scored, not OOD-flagged
    flagged = cells["overlap_flag"].to_numpy(dtype=bool)
    assert not out.loc[flagged, "ood_flag"].any() and out.loc[flagged, "ood_score"].notna().all()
    # batching does not change the result (session-relative features use the whole session)
    whole = classify_session(cells, clips, str(lake_model), fps=fps)
    np.testing.assert_allclose(whole["p_good"], out["p_good"], atol=1e-6)


def test_default_model_scores_a_session(processed_lake):
    cells, clips, fps = one_session(processed_lake)
    out = classify_session(cells, clips, "default", fps=fps)
    assert len(out) == len(cells) and out["model_id"].iloc[0] == DEFAULT_RECIPE.model_id
    assert out["p_good"].between(0, 1).all()


def test_card_mismatch_refuses_with_a_clear_message(processed_lake, lake_model):
    cells, clips, fps = one_session(processed_lake)
    model = load_model(lake_model)
    model.card = replace(model.card, clip_frames=31)
    with pytest.raises(ModelMismatchError) as exc:
        classify_session(cells, clips, model, fps=fps)
    assert "clip_frames" in str(exc.value) and str(clips) in str(exc.value)
    other = replace(model.card, clip_frames=21)
    model.card = replace(other, pipeline_version="9.0.0")
    with pytest.raises(ModelMismatchError, match="pipeline"):
        classify_session(cells, clips, model, fps=fps)
    out = classify_session(cells, clips, model, fps=fps, strict=False)  # warn and score anyway
    assert len(out) == len(cells)


def test_other_frame_rates_are_resampled_to_the_model_rate(processed_lake, lake_model, caplog):
    cells, clips, fps = one_session(processed_lake)
    same = classify_session(cells, clips, load_model(lake_model), fps=fps)
    with caplog.at_level("WARNING"):
        faster = classify_session(cells, clips, load_model(lake_model), fps=fps * 2)
    assert f"resampled from {fps * 2:.3g} Hz to the {fps:.3g} Hz" in caplog.text
    assert len(faster) == len(cells) and not np.allclose(faster["p_good"], same["p_good"])
