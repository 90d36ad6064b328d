"""Streaming arrays into NWB in bounded blocks; timing of the frame series."""

from __future__ import annotations

import numpy as np

from cellsift.pipeline.export import nwb_ophys
from cellsift.pipeline.export.nwb_ophys import FrameClock, streamed


def test_streamed_reads_bounded_blocks(monkeypatch):
    movie = np.arange(50 * 4 * 3, dtype=np.uint16).reshape(50, 4, 3)
    monkeypatch.setattr(nwb_ophys, "BLOCK_BYTES", 7 * 4 * 3 * 2)  # 7 frames per block
    calls = []

    def read(start, stop):
        calls.append((start, stop))
        return movie[start:stop]

    io = streamed(read, 50, (4, 3), np.dtype(np.uint16))
    assert calls == []  # nothing is read before the file is written
    chunks = list(io.data)
    assert max(stop - start for start, stop in calls) == 7 and calls[-1][1] == 50
    out = np.zeros_like(movie)
    for chunk in chunks:
        out[chunk.selection] = chunk.data
    np.testing.assert_array_equal(out, movie)
    assert io.io_settings["compression"] == "gzip"


def test_frame_clock_uses_rate_for_regular_frames_and_one_timestamps_otherwise():
    regular = FrameClock(np.arange(100) / 20.0, 20.0)
    assert regular.kwargs() == {"starting_time": 0.0, "rate": 20.0}
    times = np.arange(100) / 20.0 + np.r_[0, np.random.default_rng(0).uniform(-1e-3, 1e-3, 99)]
    irregular = FrameClock(times, 20.0)
    first = irregular.kwargs()["timestamps"]
    assert first is irregular.time_s
    holder = object()
    irregular.used_by(holder)
    assert irregular.kwargs() == {"timestamps": holder}  # later series link to the first one
