"""cellsift's stages: simulate, ingest, run, classify, train/evaluate, analyze.

The public entry points are imported lazily (``cellsift.pipeline.run_pipeline`` imports
only what that stage needs; torch is loaded only by the classifiers)::

    from cellsift.pipeline import ingest_cohort, run_pipeline, classify_lake
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "SimulationConfig": "sim.cohort",
    "simulate_cohort": "sim.cohort",
    "ingest_cohort": "ingest.cohort",
    "PipelineParams": "stages",
    "run_pipeline": "stages",
    "classify_lake": "classify.apply",
    "classify_session": "classify.apply",
    "load_model": "classify.store",
    "list_models": "classify.store",
    "register_model": "classify.store",
    "LabelSpec": "classify.training",
    "load_cell_data": "classify.training",
    "train_on_lake": "classify.training",
    "fine_tune_on_lake": "classify.training",
    "train_default_model": "classify.training",
    "evaluate_on_lake": "classify.evaluation",
    "capstone_on_lake": "classify.evaluation",
    "cross_validate_on_lake": "classify.evaluation",
    "classified_montage": "classify.evaluation",
    "build_analysis_tables": "analysis.tables",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cellsift.pipeline' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
