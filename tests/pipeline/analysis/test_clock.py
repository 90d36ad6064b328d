"""The frame clock: dropped frames, TTL edges, and the behaviour-to-frame clock map
(sync pulses, declared offsets, TTL start), checked through the events it aligns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.analysis.clock import AlignParams, dropped_frames, fit_clock, read_ttl_frames
from cellsift.pipeline.analysis.events import align_events, read_events
from cellsift.schemas import InputFormatError, ParameterError
from tests.pipeline.analysis.test_events import FPS, expected_onset_frame, recording_with_gaps, write_events


def test_dropped_frames_are_counted_from_timestamp_gaps():
    t, _ = recording_with_gaps(100, drops={10: 3, 50: 1})
    d = dropped_frames(t)
    assert d[10] == 3 and d[49] == 0 and d[47] == 1 and d.sum() == 4  # camera frame 50 is recorded frame 47


def test_alignment_with_dropped_frames_clock_offset_and_drift_from_ttl(tmp_path):
    """The acceptance test of event alignment: dropped frames, clock offset and drift."""
    # the miniscope drops frames and runs 0.2 % slow; the behaviour clock started 12.3 s earlier
    t, camera = recording_with_gaps(2000, drops={100: 4, 640: 2, 641: 1, 1200: 7, 1650: 3}, rate_scale=0.998)
    intercept, scale = -12.3 / 1.0005, 1.0 / 1.0005  # t_frame = intercept + scale * t_behaviour
    to_beh = lambda tf: (np.asarray(tf) - intercept) / scale  # noqa: E731
    ttl_frames = np.array([5, 700, 1500, 1990])
    # Miniscope folder with a TTL column in timeStamps.csv
    scope = tmp_path / "miniscope"
    scope.mkdir()
    ttl = np.zeros(t.size, dtype=int)
    for f in ttl_frames:
        ttl[f : f + 3] = 1
    pd.DataFrame(
        {
            "Frame Number": np.arange(t.size),
            "Time Stamp (ms)": np.rint(t * 1000).astype(int),
            "Buffer Index": 0,
            "TTL In": ttl,
        }
    ).to_csv(scope / "timeStamps.csv", index=False)
    assert read_ttl_frames(scope).tolist() == ttl_frames.tolist()
    # events on the behaviour clock (true frame-clock times chosen first)
    true_on = {"CS+": [10.0, 40.11, 72.5], "CS-": [25.37, 57.0]}
    rows = [("sync", float(to_beh(t[f])), None) for f in ttl_frames]
    for name, ons in true_on.items():
        rows += [(name, float(to_beh(o)), float(to_beh(o + 4.5))) for o in ons]
    rows.append(("shock", float(to_beh(t[1210])), float(to_beh(t[1210] + 1.0))))  # right after a 7-frame drop
    ev = read_events(write_events(tmp_path / "events.csv", rows))

    clock = fit_clock(ev, time_s=np.round(t, 3), ttl_frames=read_ttl_frames(scope), path="events.csv")
    assert clock.method == "sync" and clock.n_sync == 4
    assert clock.scale == pytest.approx(scale, abs=2e-5)
    assert clock.offset_s == pytest.approx(12.3, abs=2e-3)
    al = align_events(ev, time_s=np.round(t, 3), clock=clock)
    assert "sync" not in set(al["event"])
    for name, ons in true_on.items():
        got = al.loc[al["event"] == name]
        assert got["onset_frame"].tolist() == [expected_onset_frame(t, o) for o in ons]
        assert got["offset_frame"].tolist() == [expected_onset_frame(t, o + 4.5) for o in ons]
        assert got["trial"].tolist() == list(range(1, len(ons) + 1))
        assert np.allclose(got["onset_s"], ons, atol=2e-3)
        assert (got["onset_lag_s"] < 1.0 / FPS + 2e-3).all()
    # frames lost inside each event are counted
    for row in al.itertuples():
        cam_on, cam_off = row.onset_s * FPS * 0.998, row.offset_s * FPS * 0.998
        lost = int(np.sum((np.diff(camera) - 1)[(camera[:-1] >= cam_on - 1) & (camera[1:] <= cam_off + 1)]))
        assert abs(row.n_dropped - lost) <= 1, row
    shock = al[al["event"] == "shock"].iloc[0]
    assert shock["onset_frame"] == 1210
    # a naive alignment (behaviour time * fps) would be off by hundreds of frames
    naive = np.rint(al["onset_s_source"] * FPS).astype(int)
    assert (np.abs(naive - al["onset_frame"]) > 200).all()


def test_sync_frames_from_events_file(tmp_path):
    t, _ = recording_with_gaps(600, drops={300: 5})
    rows = [
        ("sync", 3.0, 3.0, 0),
        ("sync", 3.0 + float(t[500]), 3.0 + float(t[500]), 500),
        ("CS+", 3.0 + 16.0, 3.0 + 20.0),
    ]
    ev = read_events(write_events(tmp_path / "e.csv", rows))
    clock = fit_clock(ev, time_s=t)
    assert clock.method == "sync" and clock.offset_s == pytest.approx(3.0)
    al = align_events(ev, time_s=t, clock=clock)
    assert al["onset_frame"].iloc[0] == expected_onset_frame(t, 16.0) == 315


def test_declared_offset_and_ttl_start(tmp_path):
    t = np.arange(400) / FPS
    ev = read_events(write_events(tmp_path / "e.csv", [("CS+", 15.0, 17.0)]))
    clock = fit_clock(ev, time_s=t, event_offset_s=5.0)
    assert clock.method == "offset"
    assert align_events(ev, time_s=t, clock=clock)["onset_frame"].iloc[0] == 200
    clock = fit_clock(ev, time_s=t, params=AlignParams(event_offset_s=5.0))
    assert clock.offset_s == 5.0
    clock = fit_clock(ev, time_s=t, ttl_frames=np.array([40]))
    assert clock.method == "ttl_start"
    assert align_events(ev, time_s=t, clock=clock)["onset_frame"].iloc[0] == 340
    # a session's declared offset wins over a TTL start edge, the default offset does not
    assert fit_clock(ev, time_s=t, ttl_frames=np.array([40]), event_offset_s=5.0).method == "offset"
    assert (
        fit_clock(ev, time_s=t, ttl_frames=np.array([40]), params=AlignParams(event_offset_s=5.0)).method
        == "ttl_start"
    )


def test_inconsistent_sync_pulses_are_rejected(tmp_path):
    t = np.arange(1000) / FPS
    ev = read_events(
        write_events(tmp_path / "e.csv", [("sync", 1.0, 1.0), ("sync", 11.0, 11.0), ("sync", 21.0, 21.0)])
    )
    with pytest.raises(InputFormatError, match="3 sync events but 2 TTL"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 220]))
    with pytest.raises(InputFormatError, match="clocks run at rates 0.7000:1"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 220, 300]))
    with pytest.raises(InputFormatError, match="do not fit one clock"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 240, 420]), params=AlignParams(max_clock_drift=0.5))
    with pytest.raises(InputFormatError, match="no frame to pair"):
        fit_clock(ev, time_s=t)


def test_align_params_are_checked():
    with pytest.raises(ParameterError, match="tolerance_frames"):
        AlignParams(tolerance_frames=-1.0)
    with pytest.raises(ParameterError, match="event_offset_s"):
        AlignParams(event_offset_s=float("nan"))
    with pytest.raises(ParameterError):
        AlignParams(max_clock_drift=True)  # type: ignore[arg-type]
