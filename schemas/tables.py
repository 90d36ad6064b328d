"""Parquet table schemas of the lake, as pyarrow schemas carrying a schema version.

Every table is hive-partitioned by ``cohort/animal/session`` below ``LAKE/tables/<name>/``;
the partition columns are also stored inside each file so one file read alone is
self-describing. The schema version is stored in the Parquet key-value metadata under
``cellsift.schema_version``.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

TABLE_SCHEMA_VERSION: Final = "1.0"
SCHEMA_VERSION_KEY: Final = b"cellsift.schema_version"
TABLE_NAME_KEY: Final = b"cellsift.table"

PARTITION_COLUMNS: Final = ("cohort", "animal", "session")

KEY_FIELDS: Final = [
    pa.field("cohort", pa.string(), nullable=False),
    pa.field("animal", pa.string(), nullable=False),
    pa.field("session", pa.string(), nullable=False),
]

#: Quality features computed per cell, in table order (all float64 unless noted in
#: :data:`CELLS_SCHEMA`). Units: pixels for sizes, frames for time unless ``_s``.
FEATURE_COLUMNS: Final = (
    "area_px",
    "compactness",
    "eccentricity",
    "solidity",
    "footprint_peak_frac",
    "peak_to_noise",
    "n_transients",
    "transient_rate_per_min",
    "skewness",
    "noise_sd",
    "spatial_corr",
    "spatial_corr_min",
    "peak_contrast",
    "neighbour_trace_corr",
    "n_neighbours",
    "max_overlap_frac",
)


def with_table_meta(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={SCHEMA_VERSION_KEY: TABLE_SCHEMA_VERSION.encode(), TABLE_NAME_KEY: name.encode()},
    )


CELLS_SCHEMA: Final = with_table_meta(
    "cells",
    [
        *KEY_FIELDS,
        pa.field("stage", pa.string()),
        pa.field("day", pa.int32()),
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("centroid_y", pa.float64()),  # px, row
        pa.field("centroid_x", pa.float64()),  # px, column
        pa.field("area_px", pa.float64()),
        pa.field("compactness", pa.float64()),  # 4*pi*area/perimeter^2 (Crofton perimeter), clipped to 1
        pa.field("eccentricity", pa.float64()),  # 0 for a circle, -> 1 for a line
        pa.field("solidity", pa.float64()),  # area / convex hull area
        pa.field(
            "footprint_peak_frac", pa.float64()
        ),  # weight share of the brightest 25% of binarised pixels
        pa.field("peak_to_noise", pa.float64()),  # (max of smoothed C_raw - running baseline) / noise_sd
        pa.field("n_transients", pa.int32()),
        pa.field("transient_rate_per_min", pa.float64()),
        pa.field("skewness", pa.float64()),  # of C_raw
        pa.field("noise_sd", pa.float64()),  # robust noise SD of C_raw
        pa.field(
            "spatial_corr", pa.float64()
        ),  # mean corr(footprint, movie change at peak); null without movie
        pa.field("spatial_corr_min", pa.float64()),  # min over clipped peaks
        pa.field("peak_contrast", pa.float64()),  # in-footprint vs surround rise at peaks
        pa.field("neighbour_trace_corr", pa.float64()),  # max corr of C_raw with touching cells
        pa.field("n_neighbours", pa.int32()),  # footprints sharing >= 1 pixel
        pa.field("max_overlap_frac", pa.float64()),  # of the smaller footprint
        pa.field("overlap_partner", pa.int64()),  # unit_id of the partner of max overlap, null if none
        pa.field("overlap_flag", pa.bool_()),  # max_overlap_frac > threshold (default 0.5)
        pa.field("n_clips", pa.int32()),
        pa.field("peak_frames", pa.list_(pa.int64())),  # peak frame of each stored clip
        # classification (null when no model was applied)
        pa.field("p_good", pa.float64()),  # calibrated probability that the cell is real
        pa.field("label", pa.string()),  # "good" | "bad"
        pa.field("reason", pa.string()),  # most likely artifact reason for "bad" cells
        pa.field("model_id", pa.string()),
        pa.field("ood_score", pa.float64()),  # distance from the model's training data
        pa.field("ood_flag", pa.bool_()),  # true when the model is out of its depth
        pa.field("pipeline_version", pa.string()),
        pa.field("run_id", pa.string()),
    ],
)

SESSIONS_SCHEMA: Final = with_table_meta(
    "sessions",
    [
        *KEY_FIELDS,
        pa.field("stage", pa.string()),
        pa.field("day", pa.int32()),
        pa.field("n_frames", pa.int64()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("n_units", pa.int32()),
        pa.field("n_overlap_flagged", pa.int32()),
        pa.field("input_hash", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("dataset_path", pa.string()),  # relative to the lake root
        pa.field("clips_path", pa.string()),  # relative to the lake root
        pa.field("pipeline_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("processed_at", pa.timestamp("s", tz="UTC")),
        pa.field("duration_s", pa.float64()),
    ],
)

LABELS_SCHEMA: Final = with_table_meta(
    "labels",
    [
        *KEY_FIELDS,
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("label", pa.string()),  # "good" | "bad"
        pa.field("reason", pa.string()),  # artifact reason for "bad", may be null
        pa.field("source", pa.string()),  # e.g. "simulator", "cnmfe_manual", "minian_unit_labels"
    ],
)

TABLES: Final[dict[str, pa.Schema]] = {
    "cells": CELLS_SCHEMA,
    "sessions": SESSIONS_SCHEMA,
    "labels": LABELS_SCHEMA,
}
