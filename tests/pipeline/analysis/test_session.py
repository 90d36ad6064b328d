"""One session's analysis: its inputs and key, and a session without events."""

from __future__ import annotations

import dataclasses

import cellsift
from cellsift.catalog import Catalog, LakeLayout
from cellsift.pipeline.analysis.params import AnalysisParams
from cellsift.pipeline.analysis.session import session_inputs
from cellsift.pipeline.analysis.tables import build_analysis_tables
from tests.pipeline.analysis.synthetic_lake import N_FRAMES, N_UNITS, PARAMS, make_session


def test_session_without_events_still_gets_traces_and_a_summary(tmp_path):
    import dataclasses

    lake = tmp_path / "lake"
    Catalog(lake, create=True)
    make_session(lake, tmp_path / "raw", "d1_conditioning", "conditioning", 1, "frames", seed=1)
    catalog = Catalog(lake)
    catalog.upsert(dataclasses.replace(catalog.get("syn", "m01", "d1_conditioning"), events=""))
    summary = build_analysis_tables(lake, params=PARAMS)
    assert summary.count("processed") == 1, summary.outcomes
    lk = cellsift.open_lake(lake)
    assert len(lk.table("traces")) == N_UNITS * N_FRAMES
    assert lk.table("events").empty and lk.table("trial_responses").empty and lk.table("behaviour").empty
    cs = lk.table("cell_summary")
    assert len(cs) == N_UNITS and cs["cs_plus_response"].isna().all() and not cs["cs_plus_selective"].any()
    assert (cs["cs_plus_n_trials"] == 0).all()


def test_session_key_follows_the_inputs(tmp_path):
    lake = tmp_path / "lake"
    Catalog(lake, create=True)
    info = make_session(lake, tmp_path / "raw", "d2_safety", "safety", 2, "frames", seed=2)
    layout = LakeLayout(lake)
    rec = Catalog(lake).get("syn", "m01", "d2_safety")
    first = session_inputs(layout, rec, PARAMS)
    assert first.session_key.label == "syn/m01/d2_safety" and first.freezing_file == ""
    assert first.event_offset_s is None and first.events_file == str(info["events"])
    assert session_inputs(layout, rec, PARAMS).key == first.key
    # units_per_batch changes memory only, not the key; other parameters and the files do
    assert session_inputs(layout, rec, dataclasses.replace(PARAMS, units_per_batch=3)).key == first.key
    assert session_inputs(layout, rec, AnalysisParams()).key != first.key
    # a missing labels file hashes as empty: the key changes when it appears or goes
    labels = layout.table_file("labels", "syn", "m01", "d2_safety")
    labels.unlink()
    without = session_inputs(layout, rec, PARAMS)
    assert without.key != first.key and session_inputs(layout, rec, PARAMS).key == without.key
    info["events"].write_text(info["events"].read_text() + "CS-,300.0,304.0,\n")
    assert session_inputs(layout, rec, PARAMS).key != without.key
