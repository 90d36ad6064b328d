"""The cross-day cell registry: fields of view aligned, the same neuron followed across days."""

from __future__ import annotations

import numpy as np
import pytest

import cellsift
from cellsift.pipeline.analysis.params import AnalysisParams, RegistrationParams
from cellsift.pipeline.analysis.registration import estimate_shift
from cellsift.pipeline.analysis.tables import build_analysis_tables
from cellsift.schemas import ParameterError
from tests.pipeline.analysis.synthetic_lake import CS_PLUS_UNITS, FOV_SHIFT, N_UNITS, PARAMS


def _frame(lake, name):
    return cellsift.open_lake(lake).table(name)


def test_cell_registry_follows_cells_across_sessions(synthetic):
    lake, truth = synthetic
    summary = build_analysis_tables(lake, params=PARAMS)
    assert summary.registry == {"syn/m01": "registered 3 session(s)"}
    reg = _frame(lake, "cell_registry")
    assert len(reg) == 3 * N_UNITS and set(reg["reference_session"]) == {"d1_conditioning"}
    for session, (fy, fx) in FOV_SHIFT.items():
        sub = reg[reg["session"] == session]
        assert sub["shift_y_px"].iloc[0] == pytest.approx(fy, abs=0.5), session
        assert sub["shift_x_px"].iloc[0] == pytest.approx(fx, abs=0.5), session
    # unit i is the same neuron in every session (unit ids are the same here, positions are not)
    keys = reg.pivot(index="unit_id", columns="session", values="cell_key")
    assert (keys.nunique(axis=1) == 1).all() and keys["d1_conditioning"].nunique() == N_UNITS
    later = reg[reg["session"] != "d1_conditioning"]
    assert (later["match_distance_px"] < 1.0).all() and (later["footprint_similarity"] > 0.8).all()
    # the question: CS+-selective good cells on day 3, and were they on day 1?
    from cellsift.pipeline.analysis.report import CROSS_DAY_QUERY

    answer = cellsift.open_lake(lake).sql(CROSS_DAY_QUERY.format(day=3, earlier_day=1))
    ids = truth["d1_conditioning"]["unit_ids"]
    assert sorted(answer["unit_id"]) == sorted(ids[list(CS_PLUS_UNITS)].tolist())
    assert answer["earlier_unit_id"].tolist() == answer["unit_id"].tolist()
    assert answer["earlier_cs_plus_selective"].all()
    # nothing to do the second time; a changed parameter redoes it
    assert build_analysis_tables(lake, params=PARAMS).registry == {"syn/m01": "up to date"}
    again = build_analysis_tables(
        lake, params=AnalysisParams(align=PARAMS.align, registration=RegistrationParams(max_distance_px=3.0))
    )
    assert again.registry == {"syn/m01": "registered 3 session(s)"} and again.count("skipped") == 3


def test_estimate_shift_sign_and_subpixel():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :80]
    spots = rng.uniform(8, 56, (25, 2))

    def image(dy: float, dx: float) -> np.ndarray:
        return sum(np.exp(-((yy - y - dy) ** 2 + (xx - x - dx) ** 2) / 8.0) for y, x in spots)

    dy, dx = estimate_shift(image(0, 0), image(3.0, -5.4))
    assert dy == pytest.approx(3.0, abs=0.3) and dx == pytest.approx(-5.4, abs=0.3)
    assert estimate_shift(image(0, 0), image(0, 0)) == pytest.approx((0.0, 0.0), abs=0.05)


def test_registration_params_are_checked():
    with pytest.raises(ParameterError, match="max_distance_px"):
        RegistrationParams(max_distance_px=0.0)
    with pytest.raises(ParameterError, match="min_footprint_similarity"):
        RegistrationParams(min_footprint_similarity=1.5)
    with pytest.raises(ParameterError, match="max_shift_px"):
        RegistrationParams(max_shift_px=-1)
