"""Parameters and version of the analysis tables (``cellsift analyze``).

:class:`AnalysisParams` gathers the parameters of every step (ΔF/F, responses, event
alignment, cell registry); :data:`ANALYSIS_VERSION` is bumped whenever a change alters a
value of the tables. Both go into the key each table file carries
(:meth:`AnalysisParams.params_hash`), so a change recomputes what it affects.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Final

from cellsift.pipeline.analysis.clock import AlignParams
from cellsift.pipeline.analysis.dff import DffParams
from cellsift.pipeline.analysis.responses import ResponseParams
from cellsift.pipeline.provenance import stable_hash
from cellsift.schemas import ParameterError

__all__ = ["ANALYSIS_VERSION", "AnalysisParams", "RegistrationParams"]

#: Bump when a change alters any value of the analysis tables.
ANALYSIS_VERSION: Final = "1.0.0"


@dataclass(frozen=True)
class RegistrationParams:
    """Parameters of the cross-session cell registry.

    See :func:`cellsift.pipeline.analysis.registration.register_animal`.

    Attributes
    ----------
    max_distance_px
        Largest distance (px) between the centroids of two units, after aligning the
        fields of view, for them to be the same cell.
    min_footprint_similarity
        Smallest cosine similarity of the aligned footprints of a match.
    max_shift_px
        Largest field-of-view shift (px) searched between sessions.
    highpass_sigma_px
        Gaussian (px) subtracted from the images before the phase correlation, so cells,
        not the vignetting, drive the alignment.

    Raises
    ------
    ParameterError
        A distance or sigma that is not positive, a similarity outside [0, 1] or a
        negative shift.
    """

    max_distance_px: float = 5.0
    min_footprint_similarity: float = 0.4
    max_shift_px: int = 30
    highpass_sigma_px: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_distance_px", "highpass_sigma_px"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ParameterError(f"must be > 0, got {value}", field=name)
        if not (0.0 <= self.min_footprint_similarity <= 1.0):
            raise ParameterError(
                f"must be in [0, 1], got {self.min_footprint_similarity}", field="min_footprint_similarity"
            )
        if isinstance(self.max_shift_px, bool) or self.max_shift_px < 0:
            raise ParameterError(f"must be >= 0, got {self.max_shift_px}", field="max_shift_px")


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of :func:`.tables.build_analysis_tables` (all recorded in the run record).

    Attributes
    ----------
    dff
        ΔF/F baseline (:class:`~cellsift.pipeline.analysis.dff.DffParams`).
    responses
        Trial windows, tests and selectivity (:class:`~cellsift.pipeline.analysis.responses.ResponseParams`).
    align
        Event alignment (:class:`~cellsift.pipeline.analysis.clock.AlignParams`).
    registration
        Cross-session cell registry (:class:`RegistrationParams`).
    units_per_batch
        Units read, processed and written at a time (memory only; not hashed).

    Raises
    ------
    ParameterError
        If ``units_per_batch`` is not a whole number >= 1.
    """

    dff: DffParams = field(default_factory=DffParams)
    responses: ResponseParams = field(default_factory=ResponseParams)
    align: AlignParams = field(default_factory=AlignParams)
    registration: RegistrationParams = field(default_factory=RegistrationParams)
    units_per_batch: int = 64

    def __post_init__(self) -> None:
        if (
            isinstance(self.units_per_batch, bool)
            or not isinstance(self.units_per_batch, int)
            or self.units_per_batch < 1
        ):
            raise ParameterError(
                f"must be a whole number >= 1, got {self.units_per_batch!r}", field="units_per_batch"
            )

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON-able data."""
        return dataclasses.asdict(self)

    def params_hash(self) -> str:
        """Hash of everything that changes the tables: parameters and :data:`ANALYSIS_VERSION`."""
        values = self.as_dict()
        values.pop("units_per_batch")
        values.pop("registration")  # the registry has its own key
        return stable_hash({"params": values, "analysis_version": ANALYSIS_VERSION})
