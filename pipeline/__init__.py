"""cellsift's stages: simulate, ingest, run, classify, train/evaluate, review, analyze.

The public entry points are imported lazily (``cellsift.pipeline.run_pipeline`` imports
only what that stage needs; torch is loaded only by the classifiers)::

    from cellsift.pipeline import ingest_cohort, run_pipeline, classify_lake
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "SimulationConfig": "sim",
    "simulate_cohort": "sim",
    "ingest_cohort": "ingest.cohort",
    "PipelineParams": "stages",
    "run_pipeline": "stages",
    "classify_lake": "classify",
    "classify_session": "classify",
    "load_model": "classify",
    "list_models": "classify",
    "register_model": "classify",
    "LabelSpec": "classify",
    "load_cell_data": "classify",
    "train_on_lake": "classify",
    "fine_tune_on_lake": "classify",
    "train_default_model": "classify",
    "evaluate_on_lake": "classify",
    "capstone_on_lake": "classify",
    "cross_validate_on_lake": "classify",
    "classified_montage": "classify",
    "suggest_on_lake": "review",
    "ReviewService": "review",
    "ReviewConfig": "review",
    "build_analysis_tables": "analysis",
    "export_nwb": "export",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cellsift.pipeline' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
