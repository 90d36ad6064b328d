"""Metrics of p_good and the balanced decision threshold."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.classify.metrics import balanced_threshold, binary_metrics


def test_binary_metrics_and_threshold():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.4, 0.2, 0.1, 0.6, 0.7, 0.3])
    m = binary_metrics(y, p)
    assert m["confusion"]["matrix"] == [[3, 1], [1, 3]]
    assert m["balanced_accuracy"] == pytest.approx(0.75) and m["roc_auc"] == pytest.approx(15 / 16)
    assert m["good"]["precision"] == pytest.approx(0.75) and m["bad"]["recall"] == pytest.approx(0.75)
    assert sum(m["calibration"]["bin_count"]) == 8 and 0 <= m["ece"] <= 1
    assert binary_metrics(np.ones(3), np.ones(3) * 0.9)["roc_auc"] is None
    yy = np.r_[np.ones(80), np.zeros(20)].astype(int)
    pp = np.r_[np.linspace(0.5, 1, 80), np.linspace(0.1, 0.6, 20)]
    thr = balanced_threshold(yy, pp)
    assert 0.5 <= thr <= 0.65
