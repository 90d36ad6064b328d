"""The per-session stages of ``cellsift run`` and the Dask graph that chains them.

* :mod:`.footprints` — footprints as sparse matrices, centroids, shape features;
* :mod:`.overlap` — pairwise footprint overlap and the overlap flag;
* :mod:`.transients` — transient detection on ``C_raw``;
* :mod:`.clips` — peak clips, footprint and neighbour crops;
* :mod:`.features` — clip-based (spatial) features;
* :mod:`.graph` — one session's Dask graph, ending in its published ``cells`` and
  ``sessions`` rows;
* :mod:`.run` — plan and run a lake (:func:`run_pipeline`).
"""

from cellsift.pipeline.stages.clips import (
    ClipParams,
    crop_footprints,
    crop_neighbour_masks,
    extract_clips,
)
from cellsift.pipeline.stages.crops import (
    REFERENCE_CELL_DIAMETER_PX,
    session_cell_diameter_px,
    session_crop_px,
)
from cellsift.pipeline.stages.features import (
    RAW_TRACE_FEATURES,
    SPATIAL_FEATURE_NAMES,
    SpatialParams,
    session_features,
    spatial_features,
)
from cellsift.pipeline.stages.footprints import (
    SHAPE_FEATURE_NAMES,
    binarize,
    bounding_boxes,
    centroids,
    footprints_to_sparse,
    read_footprints_sparse,
    shape_features,
)
from cellsift.pipeline.stages.overlap import (
    OverlapParams,
    OverlapResult,
    compute_overlap,
    neighbour_trace_corr,
)
from cellsift.pipeline.stages.params import PipelineParams
from cellsift.pipeline.stages.run import RunSummary, plan_run, run_pipeline
from cellsift.pipeline.stages.transients import (
    TransientParams,
    TransientResult,
    detect_all,
    detect_transients,
    robust_noise_sd,
)

__all__ = [
    "REFERENCE_CELL_DIAMETER_PX",
    "SHAPE_FEATURE_NAMES",
    "RAW_TRACE_FEATURES",
    "SPATIAL_FEATURE_NAMES",
    "ClipParams",
    "OverlapParams",
    "OverlapResult",
    "PipelineParams",
    "RunSummary",
    "SpatialParams",
    "TransientParams",
    "TransientResult",
    "binarize",
    "bounding_boxes",
    "centroids",
    "compute_overlap",
    "crop_footprints",
    "crop_neighbour_masks",
    "detect_all",
    "detect_transients",
    "extract_clips",
    "footprints_to_sparse",
    "neighbour_trace_corr",
    "plan_run",
    "read_footprints_sparse",
    "robust_noise_sd",
    "run_pipeline",
    "shape_features",
    "session_cell_diameter_px",
    "session_crop_px",
    "session_features",
    "spatial_features",
]
