"""Data contracts of cellsift: dimension names, session dataset layout, table schemas, errors."""

from cellsift.schemas.analysis_tables import ANALYSIS_KEY, ANALYSIS_TABLES
from cellsift.schemas.dataset import validate_session_dataset
from cellsift.schemas.dims import DATASET_SCHEMA_VERSION, FRAME, HEIGHT, UNIT_ID, WIDTH
from cellsift.schemas.errors import (
    CellsiftError,
    InputFormatError,
    LakeError,
    ManifestError,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    SessionNotFoundError,
)
from cellsift.schemas.files import CARD_FILE, TABLE_PART_FILE, TRUTH_FILE
from cellsift.schemas.keys import SessionKey, animal_slug
from cellsift.schemas.tables import (
    CELLS_SCHEMA,
    FEATURE_COLUMNS,
    LABELS_SCHEMA,
    PARTITION_COLUMNS,
    SESSIONS_SCHEMA,
    TABLE_SCHEMA_VERSION,
)
from cellsift.schemas.tables import (
    TABLES as _CORE_TABLES,
)
from cellsift.schemas.versions import PIPELINE_VERSION

#: Every table of the lake by name: the core tables and the analysis tables.
TABLES = {**_CORE_TABLES, **ANALYSIS_TABLES}

__all__ = [
    "ANALYSIS_KEY",
    "ANALYSIS_TABLES",
    "CARD_FILE",
    "PIPELINE_VERSION",
    "SessionKey",
    "animal_slug",
    "TABLE_PART_FILE",
    "TRUTH_FILE",
    "ParameterError",
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
