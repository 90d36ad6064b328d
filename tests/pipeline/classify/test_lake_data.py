"""A lake's cells as training data: labels and clips joined, overlap-flagged cells left out."""

from __future__ import annotations

import numpy as np
import pytest

import cellsift
from cellsift.pipeline.classify.data import REASONS
from cellsift.pipeline.classify.lake_data import load_cell_data


def test_load_cell_data_joins_labels_and_clips_and_leaves_out_flagged(processed_lake):
    lake = cellsift.open_lake(processed_lake)
    cells = lake.cells
    data = load_cell_data(processed_lake, model_crop=32, pool=2)
    assert len(data) > 20 and data.y is not None and set(np.unique(data.y)) == {0, 1}
    assert not data.table["overlap_flag"].any()
    n_flagged = int(cells["overlap_flag"].sum())
    assert n_flagged > 0
    assert len(data) == len(cells) - n_flagged  # every unflagged simulated cell has a label
    assert data.clips is not None and data.clips.dynamic.shape[1:] == (5, 21, 16, 16)
    assert data.fps == pytest.approx(20.0)
    bad_reasons = {r for r, y in zip(data.reasons, data.y, strict=True) if y == 0}
    assert bad_reasons <= set(REASONS) | {None} and len(bad_reasons - {None}) >= 2
    assert all(r is None for r, y in zip(data.reasons, data.y, strict=True) if y == 1)
    with_flagged = load_cell_data(processed_lake, clips=False, include_flagged=True)
    assert len(with_flagged) == len(cells)
