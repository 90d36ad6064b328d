"""The simulated miniscope cohort behind ``cellsift simulate`` and the demo.

A seeded simulator of mice imaged with a Miniscope V4 over a fear-conditioning /
safety-learning / extinction series. For each session it writes what a lab has after
CNMF-E: the raw movie (Miniscope-DAQ-QT AVI chunks), a CNMF-E ``results`` struct with
real cells *and* typical artifacts, curation labels, behaviour events, per-frame
freezing and the simulator's ground truth (see :mod:`cellsift.pipeline.sim.cohort` for
the layout). The same :class:`SimulationConfig` always gives the same files.

The artifacts are drawn by rules (:mod:`~cellsift.pipeline.sim.extract`) or made by a
seeded CNMF-style factorisation of the simulated movie, labelled against the truth
(:mod:`~cellsift.pipeline.sim.cnmf_extract`, kinds mapped to reasons by
:data:`CNMF_KIND_REASON`), or both (``extraction="mixed"``); cell size, trace units and
``C_raw`` are settings too (:class:`SimulationConfig`).

Public API::

    from cellsift.pipeline.sim import SimulationConfig, simulate_cohort

    simulate_cohort("raw/", SimulationConfig(n_animals=2, seed=3))
"""

from __future__ import annotations

from cellsift.pipeline.sim.behaviour import FREEZING_FILE, simulate_freezing, write_freezing_csv
from cellsift.pipeline.sim.cnmf_extract import KIND_REASON as CNMF_KIND_REASON
from cellsift.pipeline.sim.cohort import MANIFEST_NAME, simulate_cohort
from cellsift.pipeline.sim.config import (
    DEFAULT_CELL_DIAMETER_PX,
    EXTRACTIONS,
    SimulationConfig,
    animal_name,
    session_name,
)
from cellsift.pipeline.sim.extract import ARTIFACT_REASONS
from cellsift.pipeline.sim.session import FRAMES_PER_FILE, TRUTH_SCHEMA

__all__ = [
    "ARTIFACT_REASONS",
    "CNMF_KIND_REASON",
    "DEFAULT_CELL_DIAMETER_PX",
    "EXTRACTIONS",
    "FRAMES_PER_FILE",
    "FREEZING_FILE",
    "MANIFEST_NAME",
    "TRUTH_SCHEMA",
    "SimulationConfig",
    "animal_name",
    "session_name",
    "simulate_cohort",
    "simulate_freezing",
    "write_freezing_csv",
]
