"""The analysis tables end to end on a hand-made lake whose answers are known.

:func:`build_synthetic_lake` writes three sessions of one animal directly into a lake
(session stores, catalog rows, ``cells``, ``sessions`` and ``labels`` tables) — no
simulator, so it takes well under a second. Every session has dropped frames, a
miniscope clock running 0.1 % slow and a behaviour clock 7.5 s ahead, aligned by

* ``d1_conditioning``: sync pulses + a TTL column in the Miniscope ``timeStamps.csv``
  (and a movie, a freezing trace, shocks);
* ``d2_safety``: sync pulses with their frame numbers in the events file (freezing
  epochs in the events file);
* ``d3_extinction``: the declared offset ``event_offset_s = 7.5`` (no sync, no drift).

Tones (4 s) come at irregular intervals, as in real protocols. Units 0-2 respond to CS+ only, 3-4 to CS- only, 5 to both, 6 to shocks only; unit 11
responds to CS+ but is overlap-flagged; the rest are noise. Responses are placed at
the true (imaging-clock) tone times, so only a correct alignment finds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cellsift
from cellsift.catalog.atomic import write_parquet_atomic
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.store import Catalog, SessionRecord
from cellsift.pipeline.analysis.params import AnalysisParams, RegistrationParams
from cellsift.pipeline.analysis.registration import estimate_shift
from cellsift.pipeline.analysis.tables import build_analysis_tables
from cellsift.pipeline.analysis.clock import AlignParams
from cellsift.pipeline.analysis.report import README_QUERY
from cellsift.pipeline.sim.behaviour import simulate_freezing, write_freezing_csv
from cellsift.schemas.analysis_tables import ANALYSIS_TABLES
from cellsift.schemas.tables import CELLS_SCHEMA, LABELS_SCHEMA, SESSIONS_SCHEMA

FPS = 20.0
N_UNITS = 12
N_FRAMES = 2400
H = W = 40
OFFSET_S = 7.5
CS_PLUS_UNITS = (0, 1, 2)
CS_MINUS_UNITS = (3, 4)
SESSIONS = (("d1_conditioning", "conditioning", 1, "ttl"), ("d2_safety", "safety", 2, "frames"),
            ("d3_extinction", "extinction", 3, "offset"))
#: field-of-view shift (px) of each session: the same neurons sit elsewhere in the frame
FOV_SHIFT = {"d1_conditioning": (0.0, 0.0), "d2_safety": (2.0, -3.0), "d3_extinction": (-1.4, 2.3)}
#: freezing epochs of d2 (imaging clock): 2 of 4 s of CS+ 1, 3 of 4 s of CS+ 2 (two epochs that
#: overlap), 2 of 4 s of CS- 3, and 2 s in an interval
FREEZING_EPOCHS = ((10.5, 12.5), (39.5, 41.0), (40.5, 42.5), (61.0, 63.0), (75.0, 77.0))
PARAMS = AnalysisParams(align=AlignParams(event_offset_s=OFFSET_S))


def _camera_times(rng: np.random.Generator, rate_scale: float) -> np.ndarray:
    drops = {int(k): int(rng.integers(1, 6)) for k in rng.choice(np.arange(50, 2600), 12, replace=False)}
    camera, k = [], 0
    while len(camera) < N_FRAMES:
        camera.append(k)
        k += 1 + drops.get(k, 0)
    return np.round(np.asarray(camera) / (FPS * rate_scale), 3)


def _kernel(t: np.ndarray, on: float, amp: float) -> np.ndarray:
    dt = np.maximum(t - on - 0.15, 0.0)
    return amp * (np.exp(-dt / 0.7) - np.exp(-dt / 0.05))


TONE_ORDER = ("CS+", "CS-", "CS-", "CS+", "CS+", "CS-", "CS+", "CS-", "CS-", "CS+")
ITI_S = (5.3, 7.1, 4.6, 6.2, 7.4, 5.0, 6.8, 4.9, 5.7)


def protocol(stage: str) -> pd.DataFrame:
    """Ten 4-s tones from 10 s with irregular intervals (5 CS+, 5 CS-); shocks in the last
    second of each CS+ in conditioning."""
    rows = []
    on = 10.0
    for k, tone in enumerate(TONE_ORDER):
        if k:
            on += 4.0 + ITI_S[k - 1]
        rows.append((tone, on, on + 4.0))
        if tone == "CS+" and stage == "conditioning":
            rows.append(("shock", on + 3.0, on + 4.0))
    return pd.DataFrame(rows, columns=["event", "onset_s", "offset_s"])


def make_session(lake: Path, raw: Path, session: str, stage: str, day: int, mode: str, *, seed: int,
                 extra_events: list[tuple] | None = None, with_movie: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    layout = LakeLayout(lake)
    scale = 1.0 if mode == "offset" else 0.999
    t = _camera_times(rng, scale)
    proto = protocol(stage)
    # ---- activity (imaging clock)
    dff = rng.normal(0.0, 0.004, (N_UNITS, N_FRAMES))
    for u in range(N_UNITS):
        for on in rng.uniform(0, t[-1], 2):  # a few spontaneous transients
            dff[u] += _kernel(t, on, 0.05)
    for row in proto.itertuples():
        units = {"CS+": (*CS_PLUS_UNITS, 5, 11), "CS-": (*CS_MINUS_UNITS, 5), "shock": (6,)}[row.event]
        for u in units:
            dff[u] += _kernel(t, row.onset_s, 0.12 if row.event != "shock" else 0.3)
    f_ref = rng.uniform(200, 400, N_UNITS)
    c_raw = (dff * f_ref[:, None] + rng.normal(0, 0.3, (N_UNITS, N_FRAMES))).astype(np.float32)
    yy, xx = np.mgrid[:H, :W]
    fy, fx = FOV_SHIFT.get(session, (0.0, 0.0))
    centres = [(7 + 8.5 * (u // 4) + 1.3 * (u % 3) + fy, 7 + 8.5 * (u % 4) + 1.1 * (u % 2) + fx) for u in range(N_UNITS)]
    centres[11] = (centres[10][0] + 1.0, centres[10][1] + 1.0)  # overlaps unit 10
    A = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (1.6 + 0.1 * u) ** 2))
                  for u, (cy, cx) in enumerate(centres)])
    A[A < 0.05] = 0
    A = A.astype(np.float32)
    max_proj = (100 + 40 * A.sum(axis=0)).astype(np.float32)
    unit_ids = np.arange(N_UNITS, dtype=np.int64) * 2 + 1  # non-contiguous ids, like CNMF-E
    # ---- raw files: events (behaviour clock), timestamps with TTL, freezing
    folder = raw / session
    scope = folder / "miniscope"
    scope.mkdir(parents=True)
    intercept = -OFFSET_S * scale  # t_frame = intercept + scale * t_beh
    to_beh = lambda tf: (np.asarray(tf, dtype=np.float64) - intercept) / scale  # noqa: E731
    sync_frames = np.array([3, 1100, 2350])
    rows = [(r.event, f"{to_beh(r.onset_s):.4f}", f"{to_beh(r.offset_s):.4f}", "") for r in proto.itertuples()]
    ttl = np.zeros(N_FRAMES, dtype=int)
    if mode in ("ttl", "frames"):
        for f in sync_frames:
            rows.append(("sync", f"{to_beh(t[f]):.4f}", f"{to_beh(t[f]):.4f}", str(f) if mode == "frames" else ""))
            ttl[f : f + 2] = 1
    if mode == "frames":
        rows += [("freezing", f"{to_beh(a):.3f}", f"{to_beh(b):.3f}", "") for a, b in FREEZING_EPOCHS]
    for extra in extra_events or []:
        rows.append(extra)
    events = folder / "events.csv"
    events.write_text("event,onset_s,offset_s,frame\n" + "\n".join(",".join(r) for r in rows) + "\n")
    cols = {"Frame Number": np.arange(N_FRAMES), "Time Stamp (ms)": np.rint(t * 1000).astype(int), "Buffer Index": 0}
    if mode == "ttl":
        cols["TTL"] = ttl
    pd.DataFrame(cols).to_csv(scope / "timeStamps.csv", index=False)
    freezing_truth = None
    if mode == "ttl":
        beh_fps = 30.0
        n_beh = int((t[-1] + 10) * beh_fps)
        beh_proto = proto.assign(onset_s=to_beh(proto["onset_s"]), offset_s=to_beh(proto["offset_s"]))
        frz = simulate_freezing(beh_proto, n_frames=n_beh, fps=beh_fps, stage=stage, rng=rng)
        write_freezing_csv(folder / "freezing.csv", frz, beh_fps)
        freezing_truth = (frz, beh_fps)
    # ---- session store
    import xarray as xr

    data_vars = {
        "A": (("unit_id", "height", "width"), A),
        "C": (("unit_id", "frame"), np.maximum(c_raw, 0)),
        "C_raw": (("unit_id", "frame"), c_raw),
        "S": (("unit_id", "frame"), np.maximum(np.diff(c_raw, axis=1, prepend=0), 0).astype(np.float32)),
        "max_proj": (("height", "width"), max_proj),
    }
    if with_movie:
        movie = 100 + np.einsum("uhw,uf->fhw", A, f_ref[:, None] * 0.2 + c_raw * 0.05)
        data_vars["movie"] = (("frame", "height", "width"), np.clip(movie, 0, 255).astype(np.uint8))
    ds = xr.Dataset(data_vars, coords={"unit_id": unit_ids, "frame": np.arange(N_FRAMES), "time_s": ("frame", t)},
                    attrs={"cohort": "syn", "animal": "m01", "session": session, "stage": stage, "day": day, "fps": FPS})
    rel = f"sessions/syn/m01/{session}/h{seed}.zarr"
    ds.to_zarr(lake / rel, mode="w", consolidated=False)
    record = SessionRecord(cohort="syn", animal="m01", session=session, stage=stage, day=day, fps=FPS,
                           video=str(scope), events=str(events), dataset_path=rel, input_hash=f"hash-{session}",
                           n_frames=N_FRAMES, height=H, width=W, n_units=N_UNITS)
    Catalog(lake).upsert(record)
    # ---- pipeline outputs: cells, sessions, labels
    cells = [{"cohort": "syn", "animal": "m01", "session": session, "stage": stage, "day": day,
              "unit_id": int(uid), "centroid_y": float(centres[i][0]), "centroid_x": float(centres[i][1]),
              "overlap_flag": i == 11, "run_id": "run-1"} for i, uid in enumerate(unit_ids)]
    write_parquet_atomic(pa.Table.from_pylist(cells, schema=CELLS_SCHEMA),
                         layout.table_file("cells", "syn", "m01", session), tmp_root=layout.tmp)
    write_parquet_atomic(pa.Table.from_pylist([{"cohort": "syn", "animal": "m01", "session": session,
                                                "input_hash": f"hash-{session}", "run_id": "run-1"}],
                                              schema=SESSIONS_SCHEMA),
                         layout.table_file("sessions", "syn", "m01", session), tmp_root=layout.tmp)
    labels = [{"cohort": "syn", "animal": "m01", "session": session, "unit_id": int(uid),
               "label": "bad" if i == 11 else "good", "source": "test"} for i, uid in enumerate(unit_ids)]
    write_parquet_atomic(pa.Table.from_pylist(labels, schema=LABELS_SCHEMA),
                         layout.table_file("labels", "syn", "m01", session), tmp_root=layout.tmp)
    return {"time_s": t, "unit_ids": unit_ids, "proto": proto, "freezing": freezing_truth, "events": events,
            "to_beh": to_beh}


def build_synthetic_lake(root: Path, *, sessions: tuple = SESSIONS) -> dict[str, dict]:
    """Write the hand-made lake described in the module docstring; return per-session truth."""
    lake = root / "lake"
    Catalog(lake, create=True)
    return {s: make_session(lake, root / "raw", s, stage, day, mode, seed=day, with_movie=mode == "ttl")
            for s, stage, day, mode in sessions}


@pytest.fixture()
def synthetic(tmp_path) -> tuple[Path, dict[str, dict]]:
    truth = build_synthetic_lake(tmp_path)
    return tmp_path / "lake", truth


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
    one = lk.sql("SELECT frame, time_s FROM traces WHERE session = 'd2_safety' AND unit_id = 1 ORDER BY frame")
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
    expected_pct = np.mean([100 * frz[(beh_t >= truth["d1_conditioning"]["to_beh"](on))
                                      & (beh_t < truth["d1_conditioning"]["to_beh"](on + 4.0))].mean()
                            for on in truth["d1_conditioning"]["proto"].query("event == 'CS+'")["onset_s"]])
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
    write_parquet_atomic(pa.Table.from_pandas(cells, schema=CELLS_SCHEMA, preserve_index=False), path,
                         tmp_root=layout.tmp)
    third = build_analysis_tables(lake, params=PARAMS)
    assert third.count("processed") == 1 and third.count("skipped") == 2
    cs = _frame(lake, "cell_summary")
    d3 = cs[cs["session"] == "d3_extinction"].set_index("unit_id")
    assert d3["good_rule"].eq("classifier").all() and d3["label_source"].eq("classifier").all()
    assert not d3.loc[ids[1], "is_good"] and d3.loc[ids[11], "is_good"]
    found = cellsift.open_lake(lake).sql(README_QUERY)
    assert sorted(found.loc[found["session"] == "d3_extinction", "unit_id"]) == sorted(ids[[0, 2, 11]].tolist())
    # other parameters: everything is recomputed
    fourth = build_analysis_tables(lake, params=AnalysisParams(align=AlignParams(event_offset_s=OFFSET_S),
                                                               dff=PARAMS.dff.__class__(baseline_window_s=20.0)))
    assert fourth.count("processed") == 3


def test_bad_sessions_fail_alone(tmp_path):
    lake = tmp_path / "lake"
    Catalog(lake, create=True)
    make_session(lake, tmp_path / "raw", "d1_conditioning", "conditioning", 1, "frames", seed=1)
    late = make_session(lake, tmp_path / "raw", "d2_safety", "safety", 2, "frames", seed=2,
                        extra_events=[("CS+", "500.0", "504.0", "")])
    make_session(lake, tmp_path / "raw", "d3_extinction", "extinction", 3, "frames", seed=3,
                 extra_events=[("laser", "20.0", "21.0", "")])
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


def test_batching_and_dask_give_the_same_tables(tmp_path):
    sessions = SESSIONS[:2]
    a = build_synthetic_lake(tmp_path / "a", sessions=sessions) and tmp_path / "a" / "lake"
    b = build_synthetic_lake(tmp_path / "b", sessions=sessions) and tmp_path / "b" / "lake"
    build_analysis_tables(a, params=PARAMS)
    from distributed import Client

    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        summary = build_analysis_tables(b, client=client,
                                        params=AnalysisParams(align=PARAMS.align, units_per_batch=5))
    assert summary.count("processed") == 2
    for name in ("cell_summary", "trial_responses", "events"):
        x = _frame(a, name).drop(columns=["events_file"], errors="ignore")
        y = _frame(b, name).drop(columns=["events_file"], errors="ignore")
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9)
    tx, ty = _frame(a, "traces"), _frame(b, "traces")
    assert np.array_equal(tx["dff"].to_numpy(), ty["dff"].to_numpy())


def test_cell_registry_follows_cells_across_sessions(synthetic):
    lake, truth = synthetic
    summary = build_analysis_tables(lake, params=PARAMS)
    assert summary.registry == {"syn/m01": "registered 3 session(s)"}
    reg = _frame(lake, "cell_registry")
    assert len(reg) == 3 * N_UNITS and set(reg["reference_session"]) == {"d1_conditioning"}
    for session, (fy, fx) in FOV_SHIFT.items():
        sub = reg[reg["session"] == session]
        assert sub["shift_y_px"].iloc[0] == pytest.approx(fy, abs=0.5), session
        assert sub["shift_x_px"].iloc[0] == pytest.approx(fx, abs=0.5), session
    # unit i is the same neuron in every session (unit ids are the same here, positions are not)
    keys = reg.pivot(index="unit_id", columns="session", values="cell_key")
    assert (keys.nunique(axis=1) == 1).all() and keys["d1_conditioning"].nunique() == N_UNITS
    later = reg[reg["session"] != "d1_conditioning"]
    assert (later["match_distance_px"] < 1.0).all() and (later["footprint_similarity"] > 0.8).all()
    # the question: CS+-selective good cells on day 3, and were they on day 1?
    from cellsift.pipeline.analysis.report import CROSS_DAY_QUERY

    answer = cellsift.open_lake(lake).sql(CROSS_DAY_QUERY.format(day=3, earlier_day=1))
    ids = truth["d1_conditioning"]["unit_ids"]
    assert sorted(answer["unit_id"]) == sorted(ids[list(CS_PLUS_UNITS)].tolist())
    assert answer["earlier_unit_id"].tolist() == answer["unit_id"].tolist()
    assert answer["earlier_cs_plus_selective"].all()
    # nothing to do the second time; a changed parameter redoes it
    assert build_analysis_tables(lake, params=PARAMS).registry == {"syn/m01": "up to date"}
    again = build_analysis_tables(lake, params=AnalysisParams(align=PARAMS.align,
                                                              registration=RegistrationParams(max_distance_px=3.0)))
    assert again.registry == {"syn/m01": "registered 3 session(s)"} and again.count("skipped") == 3


def test_estimate_shift_sign_and_subpixel():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :80]
    spots = rng.uniform(8, 56, (25, 2))

    def image(dy: float, dx: float) -> np.ndarray:
        return sum(np.exp(-((yy - y - dy) ** 2 + (xx - x - dx) ** 2) / 8.0) for y, x in spots)

    dy, dx = estimate_shift(image(0, 0), image(3.0, -5.4))
    assert dy == pytest.approx(3.0, abs=0.3) and dx == pytest.approx(-5.4, abs=0.3)
    assert estimate_shift(image(0, 0), image(0, 0)) == pytest.approx((0.0, 0.0), abs=0.05)


def test_simulated_freezing_has_realistic_structure():
    events = protocol("conditioning")
    t = np.arange(int(110 * FPS)) / FPS
    pct: dict[str, dict[str, list[float]]] = {}
    for stage in ("conditioning", "safety", "extinction"):
        ev = protocol(stage)
        pct[stage] = {"CS+": [], "CS-": [], "pre": []}
        for seed in range(30):
            frz = simulate_freezing(ev, n_frames=t.size, fps=FPS, stage=stage, rng=np.random.default_rng(seed))
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
    assert mean["conditioning"]["CS+"] > 0.35 and mean["conditioning"]["CS-"] < mean["conditioning"]["CS+"] - 0.1
    assert mean["safety"]["CS-"] < mean["conditioning"]["CS-"]  # CS- becomes a safety signal
    assert all(m["pre"] < 0.15 for m in mean.values())
    # extinction: CS+ freezing falls from the first to the last trial
    first = np.mean(pct["extinction"]["CS+"][0::5])
    last = np.mean(pct["extinction"]["CS+"][4::5])
    assert first > last + 0.15
    with pytest.raises(ValueError):
        simulate_freezing(events, n_frames=0, fps=FPS, stage="conditioning", rng=np.random.default_rng(0))
