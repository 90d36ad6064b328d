"""Checks on raw files: frame alignment (temporal downsampling), frame size against the
video, and the consistency of one extraction's components."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cellsift.pipeline.readers import (
    Extraction,
    check_frame_size,
    frame_alignment,
    validate_extraction,
)
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.readers.conftest import FOUR_UNIT_FRAME

H, W = FOUR_UNIT_FRAME


# =========================================================================== alignment


def test_frame_alignment_cases(tmp_path: Path) -> None:
    kw = {"extraction": tmp_path / "e.mat", "video": tmp_path / "v"}
    assert frame_alignment(100, 100, declared=None, **kw).ratio == 1
    with pytest.raises(
        InputFormatError, match="temporal_downsample is 2 but the traces and the video both have 100"
    ):
        frame_alignment(100, 100, declared=2, **kw)
    with pytest.raises(
        InputFormatError, match=r"a ratio of exactly 2, a temporal downsampling \(the video holds every 2nd"
    ) as info:
        frame_alignment(2000, 1000, declared=None, **kw)
    assert "temporal_downsample: 2" in info.value.fix and info.value.field == "temporal_downsample"
    traces_longer = frame_alignment(2000, 1000, declared=2, **kw)
    assert (traces_longer.ratio, traces_longer.longer, traces_longer.n_frames) == (2, "traces", 1000)
    with pytest.raises(InputFormatError, match=r"tsub = 3"):
        frame_alignment(100, 301, declared=None, tsub=3, **kw)
    video_longer = frame_alignment(100, 301, declared=3, **kw)  # CNMF-E keeps floor(T / tsub) frames
    assert (video_longer.longer, video_longer.n_frames) == ("video", 100)
    with pytest.raises(InputFormatError, match="differ by a factor of 2"):
        frame_alignment(2000, 1000, declared=4, **kw)
    with pytest.raises(InputFormatError, match="traces have 1500 frames but the video") as info:
        frame_alignment(1500, 1000, declared=None, **kw)
    assert info.value.field == "C"


def test_frame_size_checks(tmp_path: Path, four_unit_extraction: Callable[..., Extraction]) -> None:
    ext = four_unit_extraction()
    check_frame_size(ext, H, W, path=tmp_path / "r.mat", video=tmp_path / "v")
    with pytest.raises(InputFormatError, match="look swapped"):
        check_frame_size(ext, W, H, path=tmp_path / "r.mat", video=tmp_path / "v")
    no_dims = dataclasses.replace(ext, d1=None, d2=None)
    with pytest.raises(InputFormatError, match=r"2x spatially downsampled footprints \(ssub=2\)"):
        check_frame_size(no_dims, 2 * H, 2 * W, path=tmp_path / "r.mat", video=tmp_path / "v")


# =========================================================================== components


def test_empty_and_silent_components(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, four_unit_extraction: Callable[..., Extraction]
) -> None:
    ext = four_unit_extraction(ids=np.array([5, 6, 7, 8]))
    A = ext.A.tolil()
    A[:, 2] = 0
    with pytest.raises(InputFormatError, match="1 of 4 footprints are empty .*units 7") as info:
        validate_extraction(dataclasses.replace(ext, A=sp.csc_matrix(A)), path=tmp_path / "r.mat")
    assert info.value.field == "A"
    with pytest.raises(InputFormatError, match="every footprint is empty"):
        validate_extraction(
            dataclasses.replace(ext, A=sp.csc_matrix(ext.A.shape, dtype=np.float32)), path=tmp_path / "r.mat"
        )
    silent = ext.C_raw.copy()
    silent[1] = 0
    with caplog.at_level(logging.WARNING):
        validate_extraction(dataclasses.replace(ext, C_raw=silent), path=tmp_path / "r.mat")
    assert "all-zero traces: 6" in caplog.text
    with pytest.raises(InputFormatError, match="every raw trace is all zero"):
        validate_extraction(dataclasses.replace(ext, C_raw=np.zeros_like(silent)), path=tmp_path / "r.mat")


# =========================================================================== orientation


# =========================================================================== labels
