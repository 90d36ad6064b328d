"""Parameters of a pipeline run (``cellsift run``): one frozen dataclass, hashed into provenance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cellsift.pipeline.provenance import stable_hash
from cellsift.pipeline.stages.clips import ClipParams
from cellsift.pipeline.stages.overlap import OverlapParams
from cellsift.pipeline.stages.transients import TransientParams
from cellsift.schemas import PIPELINE_VERSION, ParameterError

__all__ = ["PipelineParams"]


@dataclass(frozen=True)
class PipelineParams:
    """Parameters of one pipeline run (all of them go into the provenance record).

    Parameters
    ----------
    transients
        Transient detection on ``C_raw``.
    clips
        Clip length (``n_before`` + 1 + ``n_after`` frames) and crop size (px).
    overlap
        Footprint binarisation and the overlap fraction above which a cell is flagged.
    units_per_task
        Units per clip-extraction task (one Dask task each).
    """

    transients: TransientParams = field(default_factory=TransientParams)
    clips: ClipParams = field(default_factory=ClipParams)
    overlap: OverlapParams = field(default_factory=OverlapParams)
    units_per_task: int = 64

    def __post_init__(self) -> None:
        if self.units_per_task < 1:
            raise ParameterError(
                f"units_per_task must be at least 1, got {self.units_per_task}", field="units_per_task"
            )

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-able data."""
        return dataclasses.asdict(self)

    def params_hash(self) -> str:
        """Hash of everything that changes the tables: parameters and pipeline version."""
        values = self.as_dict()
        values.pop("units_per_task")  # batching does not change results
        return stable_hash({"params": values, "pipeline_version": PIPELINE_VERSION})
