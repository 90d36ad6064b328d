"""Events: reading, validation and frame alignment (clock fitting: test_clock.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.analysis.clock import ClockMap, fit_clock
from cellsift.pipeline.analysis.events import (
    align_events,
    freezing_per_frame,
    normalise_event_name,
    read_events,
    read_freezing,
)
from cellsift.schemas.errors import InputFormatError, SessionNotFoundError

FPS = 20.0


def recording_with_gaps(
    n_recorded: int, *, drops: dict[int, int], rate_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
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
        lines.append(
            ",".join("" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v)) for v in r)
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_onset_frame(time_s: np.ndarray, t: float) -> int:
    """Brute force: the first recorded frame taken at or after ``t``."""
    return int(next(i for i, ts in enumerate(time_s) if ts >= t - 1e-9))


# ----------------------------------------------------------------------------- reading


def test_read_events_accepts_aliases_and_sorts(tmp_path):
    path = write_events(
        tmp_path / "e.csv",
        [("cs_plus", 10.0, 14.0), ("CS−", 2.0, 6.0), ("US", 13.0, 14.0), ("Freeze", 15.0, 16.5)],
    )
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


def test_freezing_trace_and_epochs_per_frame(tmp_path):
    path = tmp_path / "freezing.csv"
    beh_t = np.arange(0, 30, 1 / 30.0)  # behaviour camera at 30 fps, clock 2 s ahead
    frz = (beh_t >= 12.0) & (beh_t < 14.0)
    pd.DataFrame(
        {"frame": np.arange(beh_t.size), "time_s": np.round(beh_t, 4), "freezing": frz.astype(int)}
    ).to_csv(path, index=False)
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
