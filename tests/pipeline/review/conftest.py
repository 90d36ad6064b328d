"""Fixtures of the review tests: a processed tiny lake (private copy per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.review.lake import copy_lake, processed_tiny_lake


@pytest.fixture(scope="session")
def review_master(_tiny_lake_master, tmp_path_factory) -> Path:
    return processed_tiny_lake(_tiny_lake_master, tmp_path_factory.mktemp("review_master"))


@pytest.fixture
def review_lake(review_master, tmp_path) -> Path:
    """A private copy of the processed tiny lake."""
    return copy_lake(review_master, tmp_path / "lake")
