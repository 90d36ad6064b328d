"""The data contract: fixed dimension, variable and attribute names of a session dataset."""

from __future__ import annotations

from typing import Final

FRAME: Final = "frame"
HEIGHT: Final = "height"
WIDTH: Final = "width"
UNIT_ID: Final = "unit_id"

#: Version of the session dataset layout written to zarr (attribute ``schema_version``).
DATASET_SCHEMA_VERSION: Final = "1.0"

#: Data variables and their dimensions. ``movie`` is optional (a session may be
#: ingested from traces and footprints only); the others are required.
MOVIE: Final = "movie"
FOOTPRINTS: Final = "A"
TRACE_VARS: Final = ("C", "C_raw", "S")

REQUIRED_VARS: Final[dict[str, tuple[str, ...]]] = {
    FOOTPRINTS: (UNIT_ID, HEIGHT, WIDTH),
    "C": (UNIT_ID, FRAME),
    "C_raw": (UNIT_ID, FRAME),
    "S": (UNIT_ID, FRAME),
}
OPTIONAL_VARS: Final[dict[str, tuple[str, ...]]] = {
    MOVIE: (FRAME, HEIGHT, WIDTH),
    "max_proj": (HEIGHT, WIDTH),
}

#: Coordinates every session dataset carries.
REQUIRED_COORDS: Final[dict[str, tuple[str, ...]]] = {
    FRAME: (FRAME,),
    "time_s": (FRAME,),
    UNIT_ID: (UNIT_ID,),
}

#: Attributes every session dataset carries.
REQUIRED_ATTRS: Final = (
    "schema_version",
    "cohort",
    "animal",
    "session",
    "stage",
    "day",
    "fps",
    "source_format",
    "input_hash",
)
