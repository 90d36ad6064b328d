"""The lab-meeting report: figures render, are not blank, and index.html links them all."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cellsift.catalog import Catalog
from cellsift.pipeline.analysis.report import render_report
from cellsift.pipeline.analysis.tables import build_analysis_tables
from cellsift.schemas import LakeError, SessionKey, animal_slug
from tests.pipeline.analysis.synthetic_lake import PARAMS, build_synthetic_lake


def _png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    return imread(path)


def test_report_renders_every_figure(tmp_path):
    truth = build_synthetic_lake(tmp_path)
    lake = tmp_path / "lake"
    assert build_analysis_tables(lake, params=PARAMS).n_failed == 0
    index = render_report(lake, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    html = index.read_text()
    links = set(re.findall(r"src='([^']+\.png)'", html))
    expected = {"cohort_summary.png", f"{animal_slug('syn', 'm01')}_selectivity.png"}
    for session in truth:
        slug = SessionKey("syn", "m01", session).slug
        expected |= {f"{slug}_footprints.png", f"{slug}_heatmaps.png"}
    assert links == expected
    for name in links:
        img = _png(index.parent / name)
        assert img.shape[0] > 200 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f"{name} looks blank"
    # the README query and its cells are in the page; the behaviour table feeds the summary
    assert "WHERE is_good AND cs_plus_selective" in html and "9 cells." in html
    assert "freezing % CS+" in html
    # the heatmap of d1 has the CS+ block on top (cells sorted by CS+ response)
    heat = _png(index.parent / f"{SessionKey('syn', 'm01', 'd1_conditioning').slug}_heatmaps.png")
    assert heat.shape[1] > heat.shape[0] * 0.5


def test_report_needs_the_analysis_tables(tmp_path):
    Catalog(tmp_path / "lake", create=True)
    with pytest.raises(LakeError, match="cellsift analyze"):
        render_report(tmp_path / "lake", tmp_path / "out")
