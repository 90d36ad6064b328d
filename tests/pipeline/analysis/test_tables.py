"""``build_analysis_tables`` end to end on the synthetic lake (:mod:`.synthetic_lake`):
every table, re-runs and keys, failures that stay in their session, Dask and batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cellsift
from cellsift.catalog import Catalog, LakeLayout, write_parquet_atomic
from cellsift.pipeline.analysis.clock import AlignParams
from cellsift.pipeline.analysis.params import AnalysisParams
from cellsift.pipeline.analysis.report import README_QUERY
from cellsift.pipeline.analysis.tables import build_analysis_tables
from cellsift.pipeline.executor import PROCESSED, SKIPPED, SessionOutcome
from cellsift.pipeline.sim.behaviour import simulate_freezing
from cellsift.schemas import ANALYSIS_TABLES, CELLS_SCHEMA
from tests.pipeline.analysis.synthetic_lake import (
    CS_MINUS_UNITS,
    CS_PLUS_UNITS,
    FPS,
    N_FRAMES,
    N_UNITS,
    OFFSET_S,
    PARAMS,
    SESSIONS,
    build_synthetic_lake,
    make_session,
    protocol,
)


def _frame(lake: Path, name: str) -> pd.DataFrame:
    return cellsift.open_lake(lake).table(name)


def test_tables_end_to_end(synthetic):
    lake, truth = synthetic
    summary = build_analysis_tables(lake, params=PARAMS)
    assert summary.count("processed") == 3 and summary.n_failed == 0, summary.outcomes
    assert json.loads(summary.record_path.read_text())["status"] == "finished"
    lk = cellsift.open_lake(lake)
    for name, schema in ANALYSIS_TABLES.items():
        files = lk.table_files(name)
        assert len(files) == 3, name  # one file per session, behaviour included (maybe empty)
        assert pq.read_schema(files[0]).remove_metadata().equals(schema.remove_metadata()), name
        assert pq.read_schema(files[0]).metadata[b"cellsift.table"] == name.encode()
    # traces: long format, every unit x frame, times from the timestamps
    traces = lk.sql("SELECT session, count(*) AS n, count(DISTINCT unit_id) AS u FROM traces GROUP BY 1")
    assert (traces["n"] == N_UNITS * N_FRAMES).all() and (traces["u"] == N_UNITS).all()
    one = lk.sql(
        "SELECT frame, time_s FROM traces WHERE session = 'd2_safety' AND unit_id = 1 ORDER BY frame"
    )
    assert np.array_equal(one["time_s"].to_numpy(), truth["d2_safety"]["time_s"])
    # events: every tone on the frame a correct alignment gives, despite drops, offset and drift
    events = lk.table("events")
    for session, info in truth.items():
        ev = events[(events["session"] == session)].sort_values("event_index")
        t = info["time_s"]
        tones = ev[ev["event"].isin(["CS+", "CS-"])]
        true_on = info["proto"].query("event != 'shock'")["onset_s"].to_numpy()
        expected = np.searchsorted(t, true_on - 1e-6)
        got = tones["onset_frame"].to_numpy()
        # exact, except where a frame was taken within 2 ms of the onset (ms-rounded timestamps)
        near = np.abs(t[np.minimum(expected, t.size - 1)] - true_on) < 0.002
        assert np.array_equal(got[~near], expected[~near]) and np.all(np.abs(got - expected) <= 1), session
        assert np.allclose(tones["onset_s"], true_on, atol=0.003)
        assert ev["clock_offset_s"].iloc[0] == pytest.approx(OFFSET_S, abs=0.01)
        assert ev["n_dropped"].sum() > 0  # the drops fall inside some events
    methods = events.groupby("session")["clock_method"].first().to_dict()
    assert methods == {"d1_conditioning": "sync", "d2_safety": "sync", "d3_extinction": "offset"}
    # trial responses: one row per unit x tone trial
    trials = lk.table("trial_responses")
    assert len(trials) == 3 * N_UNITS * 10
    assert set(trials["trial_type"]) == {"CS+", "CS-"}
    assert trials.groupby(["session", "unit_id", "trial_type"])["trial"].max().eq(5).all()
    # the README query returns exactly the CS+-only cells (unit 11 is overlap-flagged)
    found = lk.sql(README_QUERY)
    ids = truth["d1_conditioning"]["unit_ids"]
    for session in truth:
        got = sorted(found.loc[found["session"] == session, "unit_id"])
        assert got == sorted(ids[list(CS_PLUS_UNITS)].tolist()), session
    cs = lk.table("cell_summary")
    assert cs["good_rule"].eq("not_overlap_flagged").all() and cs["curation_label"].isna().all()
    assert cs["truth_label"].notna().all() and set(cs["truth_source"]) == {"test"}
    by_unit = cs[cs["session"] == "d1_conditioning"].set_index("unit_id")
    assert by_unit.loc[ids[11], "cs_plus_selective"] and not by_unit.loc[ids[11], "is_good"]
    assert sorted(by_unit.index[by_unit["cs_minus_selective"]]) == sorted(ids[list(CS_MINUS_UNITS)].tolist())
    assert by_unit.loc[ids[5], "selectivity"] == "both"  # answers both tones: not selective
    assert by_unit.loc[ids[6], "selectivity"] == "none"  # shock responses are outside the response window
    assert (by_unit.loc[ids[list(CS_PLUS_UNITS)], "discrimination_index"] > 0.8).all()
    assert set(cs["dff_method"]) == {"movie_p10", "max_proj"}
    # behaviour: freezing trace (d1) and epochs (d2); none for d3
    beh = lk.table("behaviour")
    assert set(beh["session"]) == {"d1_conditioning", "d2_safety"}
    d2 = beh[beh["session"] == "d2_safety"].set_index("trial_type")
    assert d2.loc["CS+", "freezing_pct"] == pytest.approx((50 + 75 + 0 + 0 + 0) / 5, abs=0.2)
    assert d2.loc["CS-", "freezing_pct"] == pytest.approx((0 + 0 + 50 + 0 + 0) / 5, abs=0.2)
    assert d2.loc["pre_tone", "freezing_pct"] == 0.0 and d2.loc["CS+", "n_trials"] == 5
    assert d2.loc["iti", "freezing_s"] == pytest.approx(2.0, abs=0.01)
    frz, beh_fps = truth["d1_conditioning"]["freezing"]
    d1 = beh[beh["session"] == "d1_conditioning"].set_index("trial_type")
    beh_t = np.arange(frz.size) / beh_fps
    expected_pct = np.mean(
        [
            100
            * frz[
                (beh_t >= truth["d1_conditioning"]["to_beh"](on))
                & (beh_t < truth["d1_conditioning"]["to_beh"](on + 4.0))
            ].mean()
            for on in truth["d1_conditioning"]["proto"].query("event == 'CS+'")["onset_s"]
        ]
    )
    assert d1.loc["CS+", "freezing_pct"] == pytest.approx(expected_pct, abs=2.0)
    assert set(d1["source"]) == {"trace"} and set(d2["source"]) == {"epochs"}
    ev1 = events[(events["session"] == "d1_conditioning") & (events["event"] == "CS+")]
    assert ev1["freezing_pct"].mean() == pytest.approx(d1.loc["CS+", "freezing_pct"], abs=1e-6)


def test_rerun_skips_and_new_labels_recompute(synthetic):
    lake, truth = synthetic
    assert build_analysis_tables(lake, params=PARAMS).count("processed") == 3
    again = build_analysis_tables(lake, params=PARAMS)
    assert again.count("skipped") == 3 and again.count("processed") == 0
    # a classifier labels d3: unit 1 (a CS+ cell) bad, unit 11 (overlap-flagged) good
    layout = LakeLayout(lake)
    path = layout.table_file("cells", "syn", "m01", "d3_extinction")
    cells = pq.read_table(path).to_pandas()
    ids = truth["d3_extinction"]["unit_ids"]
    cells["label"] = np.where(cells["unit_id"] == ids[1], "bad", "good")
    cells["p_good"] = np.where(cells["unit_id"] == ids[1], 0.1, 0.9)
    cells["model_id"] = "feature-v1"
    write_parquet_atomic(
        pa.Table.from_pandas(cells, schema=CELLS_SCHEMA, preserve_index=False), path, tmp_root=layout.tmp
    )
    third = build_analysis_tables(lake, params=PARAMS)
    assert third.count("processed") == 1 and third.count("skipped") == 2
    cs = _frame(lake, "cell_summary")
    d3 = cs[cs["session"] == "d3_extinction"].set_index("unit_id")
    assert d3["good_rule"].eq("classifier").all() and d3["label_source"].eq("classifier").all()
    assert not d3.loc[ids[1], "is_good"] and d3.loc[ids[11], "is_good"]
    found = cellsift.open_lake(lake).sql(README_QUERY)
    assert sorted(found.loc[found["session"] == "d3_extinction", "unit_id"]) == sorted(
        ids[[0, 2, 11]].tolist()
    )
    # other parameters: everything is recomputed
    fourth = build_analysis_tables(
        lake,
        params=AnalysisParams(
            align=AlignParams(event_offset_s=OFFSET_S), dff=PARAMS.dff.__class__(baseline_window_s=20.0)
        ),
    )
    assert fourth.count("processed") == 3


def test_bad_sessions_fail_alone(tmp_path):
    lake = tmp_path / "lake"
    Catalog(lake, create=True)
    raw = tmp_path / "raw"
    make_session(lake, raw, "d1_conditioning", "conditioning", 1, "frames", seed=1)
    tone_after_the_end = [("CS+", "500.0", "504.0", "")]
    unknown_event = [("laser", "20.0", "21.0", "")]
    late = make_session(
        lake, raw, "d2_safety", "safety", 2, "frames", seed=2, extra_events=tone_after_the_end
    )
    make_session(lake, raw, "d3_extinction", "extinction", 3, "frames", seed=3, extra_events=unknown_event)
    LakeLayout(lake).table_file("cells", "syn", "m01", "d1_conditioning").unlink()
    summary = build_analysis_tables(lake, params=PARAMS)
    by = {o.session: o for o in summary.outcomes}
    assert summary.n_failed == 3
    assert "no cells table" in by["d1_conditioning"].error and "cellsift run" in by["d1_conditioning"].error
    assert "outside the recording" in by["d2_safety"].error and "events.csv" in by["d2_safety"].error
    last_line = len(late["events"].read_text().splitlines())  # the added row is the file's last line
    assert f"line {last_line}: CS+ event at 500-504 s" in by["d2_safety"].error
    assert "unknown event type(s) 'laser'" in by["d3_extinction"].error
    assert json.loads(summary.record_path.read_text())["status"] == "failed"


def test_batching_and_dask_give_the_same_tables(tmp_path):
    sessions = SESSIONS[:2]
    a = build_synthetic_lake(tmp_path / "a", sessions=sessions) and tmp_path / "a" / "lake"
    b = build_synthetic_lake(tmp_path / "b", sessions=sessions) and tmp_path / "b" / "lake"
    build_analysis_tables(a, params=PARAMS)
    from distributed import Client

    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        summary = build_analysis_tables(
            b, client=client, params=AnalysisParams(align=PARAMS.align, units_per_batch=5)
        )
    assert summary.count("processed") == 2
    for name in ("cell_summary", "trial_responses", "events"):
        x = _frame(a, name).drop(columns=["events_file"], errors="ignore")
        y = _frame(b, name).drop(columns=["events_file"], errors="ignore")
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9)
    tx, ty = _frame(a, "traces"), _frame(b, "traces")
    assert np.array_equal(tx["dff"].to_numpy(), ty["dff"].to_numpy())


def test_simulated_freezing_has_realistic_structure():
    events = protocol("conditioning")
    t = np.arange(int(110 * FPS)) / FPS
    pct: dict[str, dict[str, list[float]]] = {}
    for stage in ("conditioning", "safety", "extinction"):
        ev = protocol(stage)
        pct[stage] = {"CS+": [], "CS-": [], "pre": []}
        for seed in range(30):
            frz = simulate_freezing(
                ev, n_frames=t.size, fps=FPS, stage=stage, rng=np.random.default_rng(seed)
            )
            assert frz.dtype == bool and frz.shape == t.shape
            # bouts last at least 1 s unless cut by the end of the recording
            d = np.diff(np.concatenate([[0], frz.astype(int), [0]]))
            starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
            inner = stops < t.size
            assert ((stops - starts)[inner] >= FPS).all()
            for tone in ("CS+", "CS-"):
                for r in ev[ev["event"] == tone].itertuples():
                    pct[stage][tone].append(frz[(t >= r.onset_s) & (t < r.offset_s)].mean())
            pct[stage]["pre"].append(frz[t < 10.0].mean())
    mean = {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in pct.items()}
    assert (
        mean["conditioning"]["CS+"] > 0.35 and mean["conditioning"]["CS-"] < mean["conditioning"]["CS+"] - 0.1
    )
    assert mean["safety"]["CS-"] < mean["conditioning"]["CS-"]  # CS- becomes a safety signal
    assert all(m["pre"] < 0.15 for m in mean.values())
    # extinction: CS+ freezing falls from the first to the last trial
    first = np.mean(pct["extinction"]["CS+"][0::5])
    last = np.mean(pct["extinction"]["CS+"][4::5])
    assert first > last + 0.15
    with pytest.raises(ValueError):
        simulate_freezing(events, n_frames=0, fps=FPS, stage="conditioning", rng=np.random.default_rng(0))


def test_outcomes_are_executor_outcomes_and_go_to_the_record(synthetic):
    lake, _truth = synthetic
    summary = build_analysis_tables(lake, params=PARAMS)
    assert all(isinstance(o, SessionOutcome) and o.stage == "analyze" for o in summary.outcomes)
    assert [o.session for o in summary.outcomes] == ["d1_conditioning", "d2_safety", "d3_extinction"]
    d1 = summary.outcomes[0]
    assert d1.status == PROCESSED and d1.n_units == N_UNITS and d1.duration_s > 0
    assert dict(d1.details) == {
        "n_events": 15,
        "n_trials": 10,
        "n_good": 11,
        "n_cs_plus_selective": 3,
        "n_cs_minus_selective": 2,
        "has_behaviour": True,
    }
    assert summary.outcomes[2].detail("has_behaviour") is False
    assert str(summary) == f"analysis {summary.run_id}: 3 processed, 0 up to date, 0 failed"
    record = json.loads(summary.record_path.read_text())
    assert [s["session"] for s in record["sessions"]] == ["d1_conditioning", "d2_safety", "d3_extinction"]
    assert record["sessions"][0]["details"]["n_trials"] == 10 and record["sessions"][0]["stage"] == "analyze"
    assert record["registry"] == {"syn/m01": "registered 3 session(s)"}
    assert [t["stage"] for t in record["registry_tasks"]] == ["registry"]
    again = build_analysis_tables(lake, params=PARAMS)
    assert {o.status for o in again.outcomes} == {SKIPPED} and all(
        o.n_units == N_UNITS for o in again.outcomes
    )
