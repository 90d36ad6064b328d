"""Cell data: labels as integers."""

from __future__ import annotations

from cellsift.pipeline.classify.data import labels_to_int


def test_labels_to_int():
    assert labels_to_int(["good", "bad", "Accepted", "rejected", 1, 0, True, "?", None]).tolist() == [
        1,
        0,
        1,
        0,
        1,
        0,
        1,
        -1,
        -1,
    ]
