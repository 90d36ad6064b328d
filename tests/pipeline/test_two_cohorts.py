"""Two cohorts whose animals and sessions share names, in one lake.

Labs number their mice, so ``m01/d1_conditioning`` exists in many cohorts. Every name
derived from a session (staging folders, clip stores, Dask keys) must use the full key,
so such a lake gives, per cohort, exactly the tables a lake of that cohort alone gives.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import cellsift
from cellsift.catalog import Catalog
from cellsift.pipeline.analysis import build_analysis_tables
from cellsift.pipeline.classify import classify_lake
from cellsift.pipeline.ingest import ingest_cohort
from cellsift.pipeline.sim import simulate_cohort
from cellsift.pipeline.stages import run_pipeline
from cellsift.schemas import TABLES, SessionKey
from tests.conftest import tiny_config

# columns that legitimately differ between two runs of the same data
_VOLATILE = {
    "run_id",
    "cells_run_id",
    "processed_at",
    "duration_s",
    "dataset_path",
    "clips_path",
    "analysed_at",
}


def _build(lake: Path, sources: list[Path], client) -> None:
    for source in sources:
        results = ingest_cohort(source, lake)
        assert all(r.status == "ingested" for r in results), results
    summary = run_pipeline(lake, client=client)
    assert summary.n_failed == 0, [o.error for o in summary.outcomes]
    preds = classify_lake(lake, "default", client=client)
    assert not preds.attrs["failed"], preds.attrs["failed"]
    analysis = build_analysis_tables(lake, client=client)
    assert analysis.n_failed == 0, [o.error for o in analysis.outcomes]


def _table(lake: Path, name: str, cohort: str) -> pd.DataFrame:
    df = cellsift.open_lake(lake).table(name)
    df = df[df["cohort"].astype(str) == cohort]
    df = df.drop(columns=[c for c in df.columns if c in _VOLATILE or c.endswith("_at")])
    df = df.astype({c: str for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})
    keys = [c for c in ("cohort", "animal", "session", "unit_id", "event_index", "trial", "frame") if c in df]
    return df.sort_values(keys).reset_index(drop=True) if keys else df.reset_index(drop=True)


@pytest.fixture(scope="module")
def other_cohort(tiny_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("other_cohort")
    simulate_cohort(out, tiny_config(cohort="other", seed=11))
    return out


def test_same_animal_and_session_names_in_two_cohorts(tiny_cohort, other_cohort, tmp_path):
    from distributed import Client, LocalCluster

    shared = tmp_path / "shared" / "lake"
    alone = {"tiny": tmp_path / "tiny" / "lake", "other": tmp_path / "other" / "lake"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            _build(shared, [tiny_cohort, other_cohort], client)
            _build(alone["tiny"], [tiny_cohort], client)
            _build(alone["other"], [other_cohort], client)

    keys = {(r.cohort, r.animal, r.session) for r in Catalog(shared).records()}
    by_cohort = {c: {(a, s) for cc, a, s in keys if cc == c} for c in ("tiny", "other")}
    assert by_cohort["tiny"] == by_cohort["other"] and len(by_cohort["tiny"]) == 4, keys

    tables = sorted(p.name for p in (shared / "tables").iterdir())
    assert set(tables) >= {"cells", "sessions", "traces", "cell_summary", "cell_registry"}
    assert set(tables) <= set(TABLES)
    for name in tables:
        for cohort, lake in alone.items():
            got, want = _table(shared, name, cohort), _table(lake, name, cohort)
            assert len(got) > 0, (name, cohort)
            pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=False, obj=f"{name}/{cohort}")
    assert not any((shared / "tmp").iterdir()), "staging left behind"
    # a second run finds every session up to date and changes nothing
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            again = run_pipeline(shared, client=client)
    assert again.count("skipped") == 8 and again.n_failed == 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("c", "m-1", "d1"), ("c", "m", "1-d1")),
        (("c-m", "1", "d1"), ("c", "m-1", "d1")),
        (("c", "m 1", "d1"), ("c", "m_1", "d1")),
        (("c", "m/1", "d1"), ("c", "m", "1/d1")),
        (("c", "maus1", "tag1"), ("c", "maus1", "täg1")),
        (("Kohorte", "м01", "d1"), ("Kohorte", "м02", "d1")),
    ],
)
def test_derived_names_stay_apart(a, b):
    ka, kb = SessionKey(*a), SessionKey(*b)
    assert ka.slug != kb.slug
    assert ka.staging_name("clips", "r1", suffix=".zarr") != kb.staging_name("clips", "r1", suffix=".zarr")
    assert ka.task_key("finalize", "r1") != kb.task_key("finalize", "r1")
    for name in (ka.slug, kb.slug, ka.staging_name("clips", "r1")):
        assert name.isascii() and "/" not in name and " " not in name


def test_slug_is_stable_across_releases():
    # staging and clip-store names outlive a release: the slug of a key must never change
    assert SessionKey("demo", "m01", "d1_conditioning").slug == "demo_m01_d1_conditioning.58c6a1a95f6f"
