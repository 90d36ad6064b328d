"""Shared fixtures of the reader tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.readers import CnmfeMatReader, Extraction
from tests.pipeline.fixtures import blob_footprints, cnmfe_arrays, synthetic_traces, write_cnmfe_v5

#: Frame size (height, width) in px of :func:`four_unit_extraction`.
FOUR_UNIT_FRAME = (40, 52)


@pytest.fixture
def four_unit_extraction(tmp_path: Path) -> Callable[..., Extraction]:
    """A factory: write 4 blob units (300 frames, a 40 x 52 px frame) as CNMF-E results to
    ``tmp_path / "r.mat"`` (MATLAB v5) with unit ``ids`` (default 1..4), and read them back."""

    def make(ids: np.ndarray | None = None) -> Extraction:
        fp = blob_footprints(*FOUR_UNIT_FRAME, [(8, 9), (30, 14), (20, 40), (10, 30)])
        C, C_raw, S = synthetic_traces(4, 300, seed=2)
        path = write_cnmfe_v5(
            tmp_path / "r.mat", **cnmfe_arrays(fp, C, C_raw, S), ids=np.arange(1, 5) if ids is None else ids
        )
        return CnmfeMatReader(path).read()

    return make
