"""Parameters of the analysis: checks and what the key depends on."""

from __future__ import annotations

import dataclasses

import pytest

from cellsift.pipeline.analysis.params import AnalysisParams, RegistrationParams
from cellsift.schemas import ParameterError


def test_units_per_batch_is_checked():
    for bad in (0, 2.5, True):
        with pytest.raises(ParameterError, match="units_per_batch"):
            AnalysisParams(units_per_batch=bad)  # type: ignore[arg-type]


def test_params_hash_ignores_batching_and_the_registry():
    base = AnalysisParams()
    assert dataclasses.replace(base, units_per_batch=5).params_hash() == base.params_hash()
    assert dataclasses.replace(base, registration=RegistrationParams(max_distance_px=3.0)).params_hash() == (
        base.params_hash()
    )
    assert base.as_dict()["registration"]["max_distance_px"] == 5.0
