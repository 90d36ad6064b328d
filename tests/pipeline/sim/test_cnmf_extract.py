"""Tests of the simulated CNMF-style extraction, end to end (simulate -> labels -> ingest)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from cellsift.pipeline.ingest import ingest_cohort
from cellsift.pipeline.sim import ARTIFACT_REASONS, SimulationConfig, simulate_cohort
from cellsift.pipeline.sim.cnmf_extract import KIND_REASON

# two animals, one session each: m01 gets rule-drawn artifacts, m02 the CNMF-style extraction
MIXED = SimulationConfig(
    n_animals=2,
    stages=("conditioning",),
    n_frames=600,
    height=96,
    width=128,
    cell_density=22.0,
    seed=5,
    cohort="mixed",
    extraction="mixed",
)
RULES_SESSION = Path("m01") / "d1_conditioning"
CNMF_SESSION = Path("m02") / "d1_conditioning"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixed")
    simulate_cohort(out, MIXED, n_workers=1)
    return out


def _truth(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


def test_sessions_alternate_between_sources(mixed: Path) -> None:
    rules = _truth(mixed / RULES_SESSION)
    cnmf = _truth(mixed / CNMF_SESSION)
    assert "extraction" not in rules and {u.get("source") for u in rules["units"]} == {None}
    assert cnmf["extraction"] == "cnmf" and cnmf["config"]["extraction"] == "mixed"
    assert {u["source"] for u in cnmf["units"]} == {"cnmf"}


def test_cnmf_finds_most_in_focus_cells(mixed: Path) -> None:
    truth = _truth(mixed / CNMF_SESSION)
    units = {u["unit_id"]: u for u in truth["units"]}
    active = [c for c in truth["cells"] if c["in_focus"] and c["n_spikes"] > 0]
    matched = [c for c in active if c["extracted_as"] is not None and units[c["extracted_as"]]["iou"] > 0.5]
    assert len(active) >= 10
    assert len(matched) >= 0.7 * len(active)
    for c in active:
        if c["extracted_as"] is not None:
            u = units[c["extracted_as"]]
            assert u["label"] == "good" and u["true_cell"] == c["index"] and u["trace_corr"] >= 0.5


def test_cnmf_artifacts_have_kinds_and_known_reasons(mixed: Path) -> None:
    truth = _truth(mixed / CNMF_SESSION)
    bad = [u for u in truth["units"] if u["label"] == "bad"]
    kinds = Counter(u["kind"] for u in bad)
    assert len(kinds) >= 3, kinds
    assert all(KIND_REASON[u["kind"]] == u["reason"] and u["reason"] in ARTIFACT_REASONS for u in bad)
    with open(mixed / CNMF_SESSION / "labels.csv", newline="") as fh:
        labels = {int(r["unit_id"]): (r["label"], r["reason"]) for r in csv.DictReader(fh)}
    assert labels == {u["unit_id"]: (u["label"], u["reason"]) for u in truth["units"]}


def test_cnmf_session_is_deterministic(mixed: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate_cohort(again, MIXED, n_workers=1)
    for name in ("cnmfe_results.mat", "labels.csv", "truth.json"):
        assert (again / CNMF_SESSION / name).read_bytes() == (mixed / CNMF_SESSION / name).read_bytes(), name


def test_simulate_then_ingest_a_mixed_cohort(mixed: Path, tmp_path: Path) -> None:
    results = ingest_cohort(mixed, tmp_path / "lake")
    assert [r.status for r in results] == ["ingested", "ingested"], [r.error for r in results]
    by_animal = {r.animal: r for r in results}
    assert by_animal["m02"].n_units == len(_truth(mixed / CNMF_SESSION)["units"])
