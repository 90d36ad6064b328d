"""A hand-made lake whose analysis answers are known (shared by the analysis tests).

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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from cellsift.catalog import Catalog, LakeLayout, SessionRecord, write_parquet_atomic
from cellsift.pipeline.analysis.clock import AlignParams
from cellsift.pipeline.analysis.params import AnalysisParams
from cellsift.pipeline.sim.behaviour import simulate_freezing, write_freezing_csv
from cellsift.schemas import CELLS_SCHEMA, LABELS_SCHEMA, SESSIONS_SCHEMA

FPS = 20.0
N_UNITS = 12
N_FRAMES = 2400
H = W = 40
OFFSET_S = 7.5
CS_PLUS_UNITS = (0, 1, 2)
CS_MINUS_UNITS = (3, 4)
SESSIONS = (
    ("d1_conditioning", "conditioning", 1, "ttl"),
    ("d2_safety", "safety", 2, "frames"),
    ("d3_extinction", "extinction", 3, "offset"),
)
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


def make_session(
    lake: Path,
    raw: Path,
    session: str,
    stage: str,
    day: int,
    mode: str,
    *,
    seed: int,
    extra_events: list[tuple] | None = None,
    with_movie: bool = False,
) -> dict:
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
    centres = [
        (7 + 8.5 * (u // 4) + 1.3 * (u % 3) + fy, 7 + 8.5 * (u % 4) + 1.1 * (u % 2) + fx)
        for u in range(N_UNITS)
    ]
    centres[11] = (centres[10][0] + 1.0, centres[10][1] + 1.0)  # overlaps unit 10
    A = np.stack(
        [
            np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (1.6 + 0.1 * u) ** 2))
            for u, (cy, cx) in enumerate(centres)
        ]
    )
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
    rows = [
        (r.event, f"{to_beh(r.onset_s):.4f}", f"{to_beh(r.offset_s):.4f}", "") for r in proto.itertuples()
    ]
    ttl = np.zeros(N_FRAMES, dtype=int)
    if mode in ("ttl", "frames"):
        for f in sync_frames:
            rows.append(
                ("sync", f"{to_beh(t[f]):.4f}", f"{to_beh(t[f]):.4f}", str(f) if mode == "frames" else "")
            )
            ttl[f : f + 2] = 1
    if mode == "frames":
        rows += [("freezing", f"{to_beh(a):.3f}", f"{to_beh(b):.3f}", "") for a, b in FREEZING_EPOCHS]
    for extra in extra_events or []:
        rows.append(extra)
    events = folder / "events.csv"
    events.write_text("event,onset_s,offset_s,frame\n" + "\n".join(",".join(r) for r in rows) + "\n")
    cols = {
        "Frame Number": np.arange(N_FRAMES),
        "Time Stamp (ms)": np.rint(t * 1000).astype(int),
        "Buffer Index": 0,
    }
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
    ds = xr.Dataset(
        data_vars,
        coords={"unit_id": unit_ids, "frame": np.arange(N_FRAMES), "time_s": ("frame", t)},
        attrs={"cohort": "syn", "animal": "m01", "session": session, "stage": stage, "day": day, "fps": FPS},
    )
    rel = f"sessions/syn/m01/{session}/h{seed}.zarr"
    ds.to_zarr(lake / rel, mode="w", consolidated=False)
    record = SessionRecord(
        cohort="syn",
        animal="m01",
        session=session,
        stage=stage,
        day=day,
        fps=FPS,
        video=str(scope),
        events=str(events),
        dataset_path=rel,
        input_hash=f"hash-{session}",
        n_frames=N_FRAMES,
        height=H,
        width=W,
        n_units=N_UNITS,
    )
    Catalog(lake).upsert(record)
    # ---- pipeline outputs: cells, sessions, labels
    key = {"cohort": "syn", "animal": "m01", "session": session}
    cells = [
        {
            **key,
            "stage": stage,
            "day": day,
            "unit_id": int(uid),
            "centroid_y": float(centres[i][0]),
            "centroid_x": float(centres[i][1]),
            "overlap_flag": i == 11,
            "run_id": "run-1",
        }
        for i, uid in enumerate(unit_ids)
    ]
    labels = [
        {**key, "unit_id": int(uid), "label": "bad" if i == 11 else "good", "source": "test"}
        for i, uid in enumerate(unit_ids)
    ]
    tables = {
        "cells": (cells, CELLS_SCHEMA),
        "sessions": ([{**key, "input_hash": f"hash-{session}", "run_id": "run-1"}], SESSIONS_SCHEMA),
        "labels": (labels, LABELS_SCHEMA),
    }
    for name, (rows, schema) in tables.items():
        write_parquet_atomic(
            pa.Table.from_pylist(rows, schema=schema),
            layout.table_file(name, "syn", "m01", session),
            tmp_root=layout.tmp,
        )
    return {
        "time_s": t,
        "unit_ids": unit_ids,
        "proto": proto,
        "freezing": freezing_truth,
        "events": events,
        "to_beh": to_beh,
    }


def build_synthetic_lake(root: Path, *, sessions: tuple = SESSIONS) -> dict[str, dict]:
    """Write the hand-made lake described in the module docstring; return per-session truth."""
    lake = root / "lake"
    Catalog(lake, create=True)
    return {
        s: make_session(lake, root / "raw", s, stage, day, mode, seed=day, with_movie=mode == "ttl")
        for s, stage, day, mode in sessions
    }
