"""The content of a lake's tables, for tests that build one lake two ways and compare them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

import cellsift
from cellsift.catalog import Catalog
from cellsift.schemas import TABLES

__all__ = ["assert_same_tables", "lake_tables"]

#: Columns that legitimately differ between two builds of the same data.
VOLATILE = {"run_id", "cells_run_id", "processed_at", "duration_s", "clips_path", "analysed_at", "updated_at"}
_KEYS = ("cohort", "animal", "session", "unit_id", "event_index", "trial", "frame", "peak")


def lake_tables(lake: Path) -> dict[str, pd.DataFrame]:
    """Every table of ``lake`` (and its catalog), sorted by key, without the volatile columns."""
    out: dict[str, pd.DataFrame] = {}
    handle = cellsift.open_lake(lake)
    for name in TABLES:
        if not (lake / "tables" / name).is_dir():
            continue
        df = handle.table(name)
        df = df.drop(columns=[c for c in df.columns if c in VOLATILE or c.endswith("_at")])
        df = df.astype({c: str for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})
        keys = [c for c in _KEYS if c in df]
        out[name] = df.sort_values(keys).reset_index(drop=True) if keys else df.reset_index(drop=True)
    rows = [dataclasses.asdict(r) for r in Catalog(lake).records()]
    out["catalog"] = (
        pd.DataFrame(rows).drop(columns=["updated_at"]).sort_values(["cohort", "animal", "session"])
    )
    out["catalog"] = out["catalog"].reset_index(drop=True)
    return out


def assert_same_tables(lake: Path, reference: Path) -> dict[str, pd.DataFrame]:
    """Assert both lakes hold the same tables, each without duplicate rows; return ``lake``'s."""
    got, expected = lake_tables(lake), lake_tables(reference)
    assert sorted(got) == sorted(expected)
    for name, df in got.items():
        pd.testing.assert_frame_equal(df, expected[name], obj=name)
        keys = [c for c in _KEYS if c in df]
        if name in ("cells", "sessions", "catalog"):
            assert not df.duplicated(subset=keys).any(), f"duplicate rows in {name}"
    return got
