"""Training labels from a CSV file: columns, values, reason aliases, matching the lake."""

from __future__ import annotations

import pandas as pd
import pytest

import cellsift
from cellsift.pipeline.classify.labels import LabelSpec, read_labels_csv
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.schemas.errors import InputFormatError


def test_labels_from_a_csv(processed_lake, tmp_path):
    cells = cellsift.open_lake(processed_lake).cells
    rows = cells[~cells["overlap_flag"]].head(10)
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "animal": rows["animal"],
            "session": rows["session"],
            "unit_id": rows["unit_id"],
            "label": ["good", "bad"] * 5,
            "reason": [None, "shape"] * 5,
        }
    ).to_csv(csv, index=False)
    data = load_cell_data(processed_lake, labels=LabelSpec(csv=str(csv)), clips=False)
    assert len(data) == 10 and data.y.tolist().count(1) == 5
    assert set(data.reasons[data.y == 0]) == {"irregular_shape"}  # alias normalised
    assert set(data.table["label_source"]) == {"csv"}
    bad = tmp_path / "bad.csv"
    bad.write_text("animal,session,unit\nm01,d1,3\n")
    with pytest.raises(InputFormatError, match="unit_id"):
        read_labels_csv(bad)
    bad.write_text("animal,session,unit_id,label\nm01,d1,3,maybe\n")
    with pytest.raises(InputFormatError, match="maybe"):
        read_labels_csv(bad)
    nomatch = tmp_path / "nomatch.csv"
    nomatch.write_text("animal,session,unit_id,label\nzz,d1,3,good\n")
    with pytest.raises(InputFormatError, match="no labelled cell matches"):
        load_cell_data(processed_lake, labels=LabelSpec(csv=str(nomatch)), clips=False)
