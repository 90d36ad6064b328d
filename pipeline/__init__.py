"""cellsift's stages: simulate, ingest, run, classify, train/evaluate, analyze.

The public entry points are imported lazily (``cellsift.pipeline.run_pipeline`` imports
only what that stage needs; torch is loaded only by the classifiers)::

    from cellsift.pipeline import ingest_cohort, run_pipeline, classify_lake
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "SimulationConfig": "simulate",
    "simulate_cohort": "simulate",
    "ingest_cohort": "ingest",
    "PipelineParams": "run",
    "run_pipeline": "run",
    "classify_lake": "classify",
    "classify_session": "classify",
    "load_model": "registry",
    "list_models": "registry",
    "register_model": "registry",
    "LabelSpec": "training",
    "load_cell_data": "training",
    "train_on_lake": "training",
    "fine_tune_on_lake": "training",
    "train_default_model": "training",
    "evaluate_on_lake": "evaluation",
    "capstone_on_lake": "evaluation",
    "cross_validate_on_lake": "evaluation",
    "classified_montage": "evaluation",
    "build_analysis_tables": "analysis_tables",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cellsift.pipeline' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
