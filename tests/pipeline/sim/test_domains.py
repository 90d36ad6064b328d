"""Tests of the simulator's domain settings: cell size, trace units, C_raw, extraction source."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import xarray as xr

from cellsift.pipeline._util import diff_noise_sd
from cellsift.pipeline.ingest import ingest_cohort
from cellsift.pipeline.sim import SimulationConfig, simulate_cohort
from cellsift.schemas import ParameterError
from tests.conftest import tiny_config

SESSION = Path("m01") / "d1_conditioning"


def _results(folder: Path):  # noqa: ANN202 - scipy mat_struct
    return scipy.io.loadmat(folder / SESSION / "cnmfe_results.mat", struct_as_record=False, squeeze_me=True)[
        "results"
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell_diameter_px": 3.0},
        {"cell_diameter_px": 41.0},
        {"cell_diameter_px": "big"},
        {"trace_scale": 0.0},
        {"trace_scale": 2000.0},
        {"write_c_raw": "yes"},
        {"extraction": "suite2p"},
    ],
)
def test_domain_settings_are_checked(kwargs: dict) -> None:
    with pytest.raises(ParameterError) as info:
        SimulationConfig(**kwargs)
    assert info.value.field == next(iter(kwargs))


def test_mixed_extraction_alternates_sessions() -> None:
    cfg = SimulationConfig(n_animals=2, stages=("a", "b", "c"), extraction="mixed")
    got = [[cfg.session_extraction(a, s) for s in range(3)] for a in range(2)]
    assert got == [["rules", "cnmf", "rules"], ["cnmf", "rules", "cnmf"]]
    assert SimulationConfig(extraction="cnmf").session_extraction(1, 2) == "cnmf"
    assert SimulationConfig().cell_scale == 1.0
    assert SimulationConfig(cell_diameter_px=23.0).cell_scale == pytest.approx(2.0)


def _good_areas(folder: Path) -> np.ndarray:
    res = _results(folder)
    a = res.A.tocsc()
    with open(folder / SESSION / "labels.csv", newline="") as fh:
        good = [row["label"] == "good" for row in csv.DictReader(fh)]
    areas = []
    for k in np.flatnonzero(good):
        col = a[:, k].toarray().ravel()
        areas.append(int((col > 0.2 * col.max()).sum()))
    return np.array(areas)


def test_cell_diameter_scales_footprint_area_as_its_square(tmp_path: Path) -> None:
    areas, gsig = {}, {}
    for d in (7.0, 14.0):
        out = tmp_path / f"d{d:g}"
        simulate_cohort(
            out,
            tiny_config(
                n_animals=1, stages=("conditioning",), n_frames=200, height=96, width=96, cell_diameter_px=d
            ),
            n_workers=1,
        )
        areas[d] = float(np.median(_good_areas(out)))
        gsig[d] = float(_results(out).options.gSig)
        truth = json.loads((out / SESSION / "truth.json").read_text())
        diam = [c["diameter_px"] for c in truth["cells"] if c["in_focus"]]
        assert 0.7 * d <= min(diam) and max(diam) <= 1.3 * d
    assert 3.0 <= areas[14.0] / areas[7.0] <= 5.5  # (14 / 7) ** 2 = 4
    assert gsig[14.0] / gsig[7.0] == pytest.approx(2.0, abs=0.5)


def test_trace_scale_and_c_raw(tmp_path: Path) -> None:
    base = dict(n_animals=1, stages=("conditioning",), n_frames=300)
    simulate_cohort(tmp_path / "one", tiny_config(cohort="one", **base), n_workers=1)
    simulate_cohort(tmp_path / "tenth", tiny_config(cohort="tenth", trace_scale=0.1, **base), n_workers=1)
    simulate_cohort(tmp_path / "noraw", tiny_config(cohort="noraw", write_c_raw=False, **base), n_workers=1)
    one, tenth, noraw = (_results(tmp_path / n) for n in ("one", "tenth", "noraw"))
    assert np.allclose(tenth.C, 0.1 * one.C) and np.allclose(tenth.C_raw, 0.1 * one.C_raw)
    assert np.allclose(tenth.S, 0.1 * one.S)
    assert not hasattr(noraw, "C_raw") and np.array_equal(noraw.C, one.C)

    lake = tmp_path / "lake"
    noise = {}
    for name in ("one", "tenth", "noraw"):
        [res] = ingest_cohort(tmp_path / name, lake)
        assert res.status == "ingested", res.error
        ds = xr.open_zarr(lake / res.dataset_path)
        noise[name] = np.array([diff_noise_sd(np.asarray(tr)) for tr in ds["C_raw"].values])
        if name == "noraw":
            assert ds.attrs["c_raw_source"] == "C"
    assert np.allclose(noise["tenth"], 0.1 * noise["one"], rtol=1e-3)


def test_cnmf_extraction_refuses_fields_too_large_for_it() -> None:
    with pytest.raises(ParameterError) as info:
        SimulationConfig(height=608, width=608, extraction="cnmf")
    assert info.value.field == "extraction"
    SimulationConfig(height=608, width=608)  # the rule path has no such limit
    SimulationConfig(height=256, width=256, extraction="mixed")
    SimulationConfig(height=384, width=384, cell_diameter_px=25.0, extraction="cnmf")
