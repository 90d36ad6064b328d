"""Events: reading, validation, clock alignment and frame alignment with dropped frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.analysis.events import (
    AlignParams,
    ClockMap,
    align_events,
    dropped_frames,
    fit_clock,
    freezing_per_frame,
    normalise_event_name,
    read_events,
    read_freezing,
    read_ttl_frames,
)
from cellsift.schemas.errors import InputFormatError, SessionNotFoundError

FPS = 20.0


def recording_with_gaps(n_recorded: int, *, drops: dict[int, int], rate_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Frame times of a camera that drops frames.

    ``drops`` maps a *camera* frame index to the number of frames lost after it. Returns
    ``(time_s, camera_index)`` of the recorded frames; the camera runs at ``FPS * rate_scale``.
    """
    camera = []
    k = 0
    while len(camera) < n_recorded:
        camera.append(k)
        k += 1 + drops.get(k, 0)
    camera = np.asarray(camera)
    return camera / (FPS * rate_scale), camera


def write_events(path: Path, rows: list[tuple]) -> Path:
    lines = ["event,onset_s,offset_s" + (",frame" if any(len(r) > 3 for r in rows) else "")]
    for r in rows:
        lines.append(",".join("" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v)) for v in r))
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_onset_frame(time_s: np.ndarray, t: float) -> int:
    """Brute force: the first recorded frame taken at or after ``t``."""
    return int(next(i for i, ts in enumerate(time_s) if ts >= t - 1e-9))


# ----------------------------------------------------------------------------- reading


def test_read_events_accepts_aliases_and_sorts(tmp_path):
    path = write_events(tmp_path / "e.csv", [("cs_plus", 10.0, 14.0), ("CS−", 2.0, 6.0), ("US", 13.0, 14.0),
                                              ("Freeze", 15.0, 16.5)])
    ev = read_events(path)
    assert ev["event"].tolist() == ["CS-", "CS+", "shock", "freezing"]
    assert ev["onset_s"].tolist() == [2.0, 10.0, 13.0, 15.0]
    assert ev["line"].tolist() == [3, 2, 4, 5]  # line numbers of the file survive the sort
    assert normalise_event_name("  CS Plus ") == "CS+"
    assert normalise_event_name("tone") is None


def test_unknown_event_type_is_a_clear_error(tmp_path):
    path = write_events(tmp_path / "e.csv", [("CS+", 1.0, 2.0), ("light", 3.0, 4.0)])
    with pytest.raises(InputFormatError) as err:
        read_events(path)
    msg = str(err.value)
    assert "line 3" in msg and "'light'" in msg and "CS+, CS-, shock, freezing, sync" in msg
    assert err.value.field == "event" and err.value.path == str(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("event,onset_s,offset_s\nCS+,abc,2\n", "'abc' is not a finite number"),
        ("event,onset_s,offset_s\nCS+,5,4\n", "offset 4 s is before onset 5 s"),
        ("event,offset_s\nCS+,4\n", "missing column(s) onset_s"),
        ("event,onset_s,offset_s\nCS+,5,5\n", "has no duration"),
    ],
)
def test_bad_event_files(tmp_path, text, needle):
    path = tmp_path / "e.csv"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=None) as err:
        read_events(path)
    assert needle in str(err.value)


def test_missing_events_file(tmp_path):
    with pytest.raises(SessionNotFoundError):
        read_events(tmp_path / "nope.csv")


def test_point_events_without_offset(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event,onset_s,offset_s\nshock,3.5,\n")
    ev = read_events(path)
    assert ev["offset_s"].iloc[0] == 3.5
    t = np.arange(200) / FPS
    al = align_events(ev, time_s=t, clock=ClockMap())
    assert al["onset_frame"].iloc[0] == 70 and al["n_frames"].iloc[0] == 1


# ----------------------------------------------------------------------------- alignment


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
    pd.DataFrame({"Frame Number": np.arange(t.size), "Time Stamp (ms)": np.rint(t * 1000).astype(int),
                  "Buffer Index": 0, "TTL In": ttl}).to_csv(scope / "timeStamps.csv", index=False)
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
    rows = [("sync", 3.0, 3.0, 0), ("sync", 3.0 + float(t[500]), 3.0 + float(t[500]), 500),
            ("CS+", 3.0 + 16.0, 3.0 + 20.0)]
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
    assert fit_clock(ev, time_s=t, ttl_frames=np.array([40]), params=AlignParams(event_offset_s=5.0)).method == "ttl_start"


def test_events_outside_the_recording_name_the_line(tmp_path):
    t = np.arange(400) / FPS  # 20 s
    ev = read_events(write_events(tmp_path / "e.csv", [("CS+", 5.0, 7.0), ("CS-", 18.0, 22.5)]))
    with pytest.raises(InputFormatError) as err:
        align_events(ev, time_s=t, clock=ClockMap(), path=tmp_path / "e.csv")
    msg = str(err.value)
    assert "line 3" in msg and "outside the recording" in msg and "event_offset_s" in msg
    # the same events with a declared offset that pushes them before the first frame
    with pytest.raises(InputFormatError, match="line 2"):
        align_events(ev, time_s=t, clock=fit_clock(ev, time_s=t, event_offset_s=6.0))
    # within one frame of the end is tolerated (rounding of logged times)
    ok = read_events(write_events(tmp_path / "ok.csv", [("CS+", 19.0, 20.04)]))
    assert align_events(ok, time_s=t, clock=ClockMap())["offset_frame"].iloc[0] == 400


def test_inconsistent_sync_pulses_are_rejected(tmp_path):
    t = np.arange(1000) / FPS
    ev = read_events(write_events(tmp_path / "e.csv", [("sync", 1.0, 1.0), ("sync", 11.0, 11.0), ("sync", 21.0, 21.0)]))
    with pytest.raises(InputFormatError, match="3 sync events but 2 TTL"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 220]))
    with pytest.raises(InputFormatError, match="clocks run at rates 0.7000:1"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 220, 300]))
    with pytest.raises(InputFormatError, match="do not fit one clock"):
        fit_clock(ev, time_s=t, ttl_frames=np.array([20, 240, 420]), params=AlignParams(max_clock_drift=0.5))
    with pytest.raises(InputFormatError, match="no frame to pair"):
        fit_clock(ev, time_s=t)


def test_freezing_trace_and_epochs_per_frame(tmp_path):
    path = tmp_path / "freezing.csv"
    beh_t = np.arange(0, 30, 1 / 30.0)  # behaviour camera at 30 fps, clock 2 s ahead
    frz = (beh_t >= 12.0) & (beh_t < 14.0)
    pd.DataFrame({"frame": np.arange(beh_t.size), "time_s": np.round(beh_t, 4), "freezing": frz.astype(int)}).to_csv(path, index=False)
    trace = read_freezing(path)
    t = np.arange(400) / FPS
    clock = ClockMap(intercept_s=-2.0)
    per = freezing_per_frame(trace, time_s=t, clock=clock)
    assert per.sum() == 40 and per[200] and per[239] and not per[240] and not per[199]
    ev = pd.DataFrame({"event": ["freezing"], "onset_s": [12.0], "offset_s": [14.0]})
    assert np.array_equal(freezing_per_frame(ev, time_s=t, clock=clock), per)
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,freezing\n0,1\n0.1,maybe\n")
    with pytest.raises(InputFormatError, match="line 3"):
        read_freezing(bad)
