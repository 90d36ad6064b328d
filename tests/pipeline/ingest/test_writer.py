"""Writing a session store: whole-chunk movie writes, footprint blocks in either pixel
order, and the labels table."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.ingest.writer import aligned_blocks, footprint_block, labels_table
from cellsift.pipeline.readers import UnitLabels
from cellsift.schemas import LABELS_SCHEMA


def test_aligned_blocks_cover_whole_chunks() -> None:
    frames = np.arange(23)[:, None, None] * np.ones((1, 2, 3))
    blocks = [frames[i : i + 7] for i in range(0, 23, 7)]  # 7, 7, 7, 2
    out = list(aligned_blocks(iter(blocks), 5))
    assert [len(b) for b in out] == [5, 5, 10, 3]
    np.testing.assert_array_equal(np.concatenate(out), frames)


def test_footprint_block_reads_either_pixel_order() -> None:
    h, w = 3, 4
    images = np.arange(2 * h * w, dtype=np.float32).reshape(2, h, w)
    column_major = sp.csc_matrix(np.stack([im.ravel(order="F") for im in images], axis=1))
    row_major = sp.csc_matrix(np.stack([im.ravel(order="C") for im in images], axis=1))
    np.testing.assert_array_equal(footprint_block(column_major, 0, 2, h, w, "F"), images)
    np.testing.assert_array_equal(footprint_block(row_major, 1, 2, h, w, "C"), images[1:])


def test_labels_table() -> None:
    assert labels_table("c", "m", "s", []) is None
    sets = [
        UnitLabels(np.array([1, 2]), ("good", "bad"), source="csv", reasons=(None, "dendrite")),
        UnitLabels(np.array([2]), ("good",), source="suite2p_iscell"),
    ]
    table = labels_table("c", "m", "s", sets)
    assert table is not None and table.schema.equals(LABELS_SCHEMA)
    rows = table.to_pylist()
    assert [(r["unit_id"], r["label"], r["source"]) for r in rows] == [
        (1, "good", "csv"),
        (2, "bad", "csv"),
        (2, "good", "suite2p_iscell"),
    ]
    assert {r["cohort"] for r in rows} == {"c"} and rows[1]["reason"] == "dendrite"
