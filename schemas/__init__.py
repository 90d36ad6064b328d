"""Data contracts of cellsift: dimension names, session dataset layout, table schemas, errors."""

from .dataset import validate_session_dataset
from .dims import DATASET_SCHEMA_VERSION, FRAME, HEIGHT, UNIT_ID, WIDTH
from .errors import (
    CellsiftError,
    InputFormatError,
    LakeError,
    ManifestError,
    ModelMismatchError,
    SchemaError,
    SessionNotFoundError,
)
from .tables import (
    CELLS_SCHEMA,
    FEATURE_COLUMNS,
    LABELS_SCHEMA,
    PARTITION_COLUMNS,
    SESSIONS_SCHEMA,
    TABLE_SCHEMA_VERSION,
    TABLES as _CORE_TABLES,
)
from .analysis_tables import ANALYSIS_TABLES

#: Every table of the lake by name: the core tables and the analysis tables.
TABLES = {**_CORE_TABLES, **ANALYSIS_TABLES}

__all__ = [
    "ANALYSIS_TABLES",
    "CELLS_SCHEMA",
    "DATASET_SCHEMA_VERSION",
    "FEATURE_COLUMNS",
    "FRAME",
    "HEIGHT",
    "LABELS_SCHEMA",
    "PARTITION_COLUMNS",
    "SESSIONS_SCHEMA",
    "TABLES",
    "TABLE_SCHEMA_VERSION",
    "UNIT_ID",
    "WIDTH",
    "CellsiftError",
    "InputFormatError",
    "LakeError",
    "ManifestError",
    "ModelMismatchError",
    "SchemaError",
    "SessionNotFoundError",
    "validate_session_dataset",
]
