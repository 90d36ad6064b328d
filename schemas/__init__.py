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
    TABLES,
)

__all__ = [
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
