"""Fixtures of the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.analysis.synthetic_lake import build_synthetic_lake


@pytest.fixture()
def synthetic(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """The three-session synthetic lake (no analysis tables yet) and its per-session truth."""
    truth = build_synthetic_lake(tmp_path)
    return tmp_path / "lake", truth
