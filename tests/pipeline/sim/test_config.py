"""Tests of the simulator's settings (cellsift.pipeline.sim.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellsift.pipeline.sim import SimulationConfig, simulate_cohort
from cellsift.schemas import ParameterError


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_animals": 0},
        {"stages": ()},
        {"stages": ("a", "a")},
        {"stages": ("bad/name",)},
        {"n_frames": 5},
        {"fps": 0.0},
        {"height": 8},
        {"cell_density": 0.0},
        {"artifact_fraction": 0.95},
        {"noise_scale": -1.0},
        {"motion_px": -0.5},
        {"seed": -1},
        {"cohort": ""},
        {"video_codec": "h264"},
        {"stages": "conditioning"},
        {"fps": "fast"},
        {"n_frames": 100.5},
        {"n_animals": True},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ParameterError):
        SimulationConfig(**kwargs)


def test_default_config_sizes() -> None:
    cfg = SimulationConfig()
    assert (cfg.n_animals, cfg.stages, cfg.n_frames, cfg.height, cfg.width) == (
        3,
        ("conditioning", "safety", "extinction"),
        2000,
        160,
        160,
    )
    assert cfg.duration_s == pytest.approx(100.0)
    expected_cells = cfg.cell_density * cfg.height * cfg.width / 1e4
    assert 35 <= expected_cells <= 45
    with pytest.raises(ParameterError):
        simulate_cohort(Path("unused"), cfg, n_workers=0)


def test_parameter_error_names_the_field() -> None:
    with pytest.raises(ParameterError) as info:
        SimulationConfig(fps=0.0)
    assert info.value.field == "fps" and isinstance(info.value, ValueError)
