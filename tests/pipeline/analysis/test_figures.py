"""Report figures: the peri-event average."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.analysis.figures import peri_event_matrix


def test_peri_event_average_holds_the_last_frame_over_dropped_frames():
    t = np.arange(400) / 20.0
    keep = np.ones(t.size, dtype=bool)
    keep[105:110] = False  # 5 dropped frames right after the first onset (5.0 s)
    t = t[keep]
    x = np.where(t >= 5.0, 1.0, 0.0)[None] + np.where(t >= 15.0, 1.0, 0.0)[None]
    grid, mean = peri_event_matrix(x, t, [5.0, 15.0], pre_s=1.0, post_s=2.0, dt_s=0.05, baseline_s=1.0)
    assert grid[0] == pytest.approx(-1.0) and grid[-1] == pytest.approx(2.0)
    # each trial steps by 1 at its onset, whatever the baseline level; dropped frames do not shift it
    assert np.allclose(mean[0, grid < -1e-9], 0.0) and np.allclose(mean[0, grid > 1e-9], 1.0)
