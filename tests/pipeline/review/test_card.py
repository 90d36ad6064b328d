"""Cell cards: the per-session cache, its read-ahead, its survival across a re-score, and labels on cards."""

from __future__ import annotations

import json
import time

import cellsift
from cellsift.pipeline.review import CardReader, ReviewConfig, ReviewService


def _until(check, timeout=120.0):
    """Wait for a background read (not a timing check: the deadline only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _keys(lake):
    sessions = cellsift.open_lake(lake).sessions
    return sessions, [(str(r.cohort), str(r.animal), str(r.session)) for r in sessions.itertuples()]


def test_warm_reads_sessions_ahead_and_a_warm_card_equals_a_cold_one(review_lake):
    sessions, keys = _keys(review_lake)
    cells = cellsift.open_lake(review_lake).cells
    key = keys[-1]
    mine = cells[(cells.animal == key[1]) & (cells.session == key[2])]
    cell = mine.iloc[0].to_dict()
    cold = CardReader(review_lake, sessions).card(key, cell, mine)
    warm = CardReader(review_lake, sessions)
    assert not any(warm.cached(k) for k in keys)
    warm.warm(keys)
    assert _until(lambda: all(warm.cached(k) for k in keys))
    arrays = {c: mine[c].to_numpy() for c in ("unit_id", "centroid_y", "centroid_x")}
    assert json.dumps(warm.card(key, cell, arrays), sort_keys=True) == json.dumps(cold, sort_keys=True)
    assert cold["clips"] is not None and cold["crop"]["footprint"]


def test_adopt_keeps_sessions_whose_stores_are_unchanged(review_lake):
    sessions, keys = _keys(review_lake)
    first = CardReader(review_lake, sessions)
    for k in keys:
        first.session(k)
    again = CardReader(review_lake, sessions)
    again.adopt(first)
    assert all(again.cached(k) for k in keys)
    moved = sessions.copy()
    moved.loc[0, "dataset_path"] = "sessions/elsewhere.zarr"  # a re-ingested session: another store
    other = CardReader(review_lake, moved)
    other.adopt(first)
    assert [other.cached(k) for k in keys] == [False, *[True] * (len(keys) - 1)]


def test_cards_show_labels_as_they_are_written_and_after_a_reload(review_lake):
    service = ReviewService(ReviewConfig(lake=review_lake, reviewer="ana", read_ahead=4))
    queue = service.queue()
    cid = queue["cid"][0]
    assert service.card(cid)["labels"] == []
    service.set_label(cid, "bad", "overlap")
    labels = service.card(cid)["labels"]
    assert [(x["reviewer"], x["label"], x["reason"]) for x in labels] == [("ana", "bad", "overlap")]
    other = ReviewService(ReviewConfig(lake=review_lake, reviewer="ben", read_ahead=0))
    other.set_label(cid, "good")
    assert {x["reviewer"] for x in other.card(cid)["labels"]} == {"ana", "ben"}
    service.set_label(cid, None)
    assert [x["reviewer"] for x in service.card(cid)["labels"]] == ["ben"]
    service.set_label(queue["cid"][1], "good")
    service.reload()  # as after a retrain: cells, queue order and labels read again
    again = service.queue()
    assert sorted(again["cid"]) == sorted(queue["cid"])
    why = dict(zip(again["cid"], again["why"], strict=True))
    assert why[cid] == why[queue["cid"][1]] == "labelled"  # after the suggested cells now
    assert service.card(queue["cid"][1])["labels"][0]["reviewer"] == "ana"
