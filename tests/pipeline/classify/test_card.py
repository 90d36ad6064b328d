"""Model cards: JSON round trip, hashes and the mismatch messages that refuse wrong data."""

from __future__ import annotations

import json

import pytest

from cellsift.pipeline.classify.card import ModelCard
from cellsift.schemas.errors import ModelMismatchError


def test_card_json_roundtrip_and_mismatch_messages(ensemble):
    card = ensemble.card
    assert card is not None
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card and again.card_hash() == card.card_hash()
    ok = card.check_compatible(
        pipeline_version=card.pipeline_version,
        columns=list(card.feature_columns),
        clip_frames=21,
        clip_n_before=10,
        clip_crop_px=card.clip_crop_px,
        fps=20.0,
    )
    assert ok == []
    with pytest.raises(ModelMismatchError) as exc:
        card.check_compatible(clip_frames=31)
    msg = str(exc.value)
    assert "clip_frames" in msg and "21" in msg and "31" in msg and "Fix:" in msg
    with pytest.raises(ModelMismatchError, match="30 Hz"):
        card.check_compatible(fps=30.0)
    with pytest.raises(ModelMismatchError, match="lack feature column"):
        card.check_compatible(columns=["area_px"])
    with pytest.raises(ModelMismatchError, match="pipeline 2.0.0"):
        card.check_compatible(pipeline_version="2.0.0")
    with pytest.raises(ModelMismatchError, match="feature set"):
        card.check_compatible(feature_version="9.9+deadbeef")
    warnings = card.check_compatible(pipeline_version="1.9.0", fps=30.0, strict=False)
    assert len(warnings) == 2 and any("30 Hz" in w for w in warnings)
    with pytest.raises(ModelMismatchError, match="not a cellsift model card"):
        ModelCard.from_dict({"schema": "something-else"})


def test_card_written_and_read_back(ensemble, tmp_path):
    card = ensemble.card
    path = card.write(tmp_path)
    assert path.name == "card.json" and ModelCard.read(tmp_path) == card
    path.write_text("{not json")
    with pytest.raises(ModelMismatchError, match="not valid JSON"):
        ModelCard.read(tmp_path)
