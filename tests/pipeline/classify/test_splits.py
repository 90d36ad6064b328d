"""Splits grouped by animal: no animal is ever in a fold's training and test cells."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.classify.splits import grouped_folds
from cellsift.schemas.errors import InputFormatError


def test_grouped_folds_never_share_an_animal():
    rng = np.random.default_rng(0)
    groups = np.array([f"c{i % 2}/m{i % 7}" for i in range(300)])
    y = rng.integers(0, 2, 300)
    seen = np.zeros(300, dtype=int)
    folds = list(grouped_folds(groups, y, n_folds=5, seed=1))
    assert len(folds) == 5
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert np.all(seen == 1)
    with pytest.raises(InputFormatError, match="at least 2 animals"):
        list(grouped_folds(np.array(["a"] * 10), np.arange(10) % 2))
