import pyarrow as pa

from cellsift.schemas import CELLS_SCHEMA, FEATURE_COLUMNS, PARTITION_COLUMNS, TABLE_SCHEMA_VERSION, TABLES


def test_every_table_carries_its_version_and_name():
    for name, schema in TABLES.items():
        assert schema.metadata[b"cellsift.schema_version"] == TABLE_SCHEMA_VERSION.encode()
        assert schema.metadata[b"cellsift.table"] == name.encode()
        for col in PARTITION_COLUMNS:
            assert schema.field(col).type == pa.string()


def test_cells_table_has_every_feature_and_overlap_columns():
    names = set(CELLS_SCHEMA.names)
    assert set(FEATURE_COLUMNS) <= names
    assert {"unit_id", "overlap_flag", "overlap_partner", "pipeline_version", "run_id", "stage"} <= names
    assert CELLS_SCHEMA.field("overlap_flag").type == pa.bool_()
    assert len(set(CELLS_SCHEMA.names)) == len(CELLS_SCHEMA.names)
