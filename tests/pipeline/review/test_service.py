"""The review service: queue, cards from the lake's stores, labels, overview, a refused retrain."""

from __future__ import annotations

import base64

import numpy as np
import pytest

import cellsift
from cellsift.pipeline.review import ReviewConfig, ReviewService
from cellsift.schemas import ParameterError


def _bytes(b64):
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8)


def test_queue_card_field_and_labels(review_lake):
    service = ReviewService(ReviewConfig(lake=review_lake, reviewer="ana"))
    n_cells = len(cellsift.open_lake(review_lake).cells)
    queue = service.queue()
    assert len(queue["cid"]) == n_cells == len(set(queue["cid"]))
    assert all(m is None for m in queue["mine"])
    cid = queue["cid"][0]
    card = service.card(cid)
    size = card["crop"]["size"]
    assert _bytes(card["crop"]["max_proj"]).size == size * size
    assert _bytes(card["crop"]["footprint"]).sum() > 0  # the cell's own contour
    clips = card["clips"]
    assert _bytes(clips["frames"]).size == clips["n_peaks"] * clips["n_frames"] * clips["size"] ** 2
    assert len(card["trace"]["values"]) > 0 and card["n_frames"] > 0
    assert set(card["features"]) >= {"area_px", "peak_to_noise"}
    field = service.field(card["sid"])
    assert _bytes(field["max_proj"]).size == field["height"] * field["width"]
    assert card["unit_id"] in field["units"]
    flagged = [c for c, o in zip(queue["cid"], queue["overlap"], strict=True) if o]
    if flagged:  # an overlap-flagged cell shows its partner's contour
        assert service.card(flagged[0])["crop"].get("partner") is not None
    assert service.set_label(cid, "bad", "background") == {
        "cid": cid,
        "mine": "bad",
        "mine_reason": "background",
    }
    assert service.queue()["mine"][0] == "bad"
    overview = service.overview()
    assert overview["n_mine"] == 1 and overview["n_labelled"] == 1
    assert sum(s["mine"] for s in overview["sessions"]) == 1
    assert service.set_label(cid, None)["mine"] is None
    assert cellsift.open_lake(review_lake).labels.query("source == 'review'").empty


def test_unknown_names_are_refused_not_opened(review_lake):
    service = ReviewService(ReviewConfig(lake=review_lake, reviewer="ana"))
    for bad in ("../../etc/passwd", "tiny:m01:nope:1", ""):
        with pytest.raises(ParameterError, match="no cell"):
            service.card(bad)
    with pytest.raises(ParameterError, match="no session"):
        service.field("tiny:../..:x")


def test_retrain_with_too_few_labels_fails_with_a_reason(review_lake):
    service = ReviewService(ReviewConfig(lake=review_lake, reviewer="ana"))
    service.set_label(service.queue()["cid"][0], "good")
    assert service.start_retrain()["started"] is True
    assert service.retrain.wait(timeout=60)
    status = service.retrain.status()
    assert status["state"] == "failed" and "too few to retrain" in status["error"]
