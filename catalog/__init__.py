"""The lake: its layout, its catalog of sessions, atomic writes and read access."""

from cellsift.catalog.atomic import (
    publish_dir,
    remove_tree_quietly,
    staging_path,
    write_json_atomic,
    write_parquet_atomic,
)
from cellsift.catalog.checksums import note_store_files, record_file, record_store, verify_file, verify_store
from cellsift.catalog.integrity import (
    CheckReport,
    Damage,
    cascade_new_input,
    check_lake,
    derived_intact,
    invalidate_session,
)
from cellsift.catalog.lake import Lake, open_lake
from cellsift.catalog.layout import LakeLayout, safe_name
from cellsift.catalog.lineage import CURRENT, DAMAGED, STALE, Part, repair_command, scan_parts
from cellsift.catalog.lock import lock_holder, run_lock, wait_until_free
from cellsift.catalog.status import LakeStatus, StatusItem, lake_status
from cellsift.catalog.store import STATUS_DAMAGED, STATUS_FAILED, STATUS_INGESTED, Catalog, SessionRecord
from cellsift.catalog.upgrade import TABLE_LAYOUT_VERSION, legacy_partitions, upgrade_table_layout

__all__ = [
    "CURRENT",
    "DAMAGED",
    "STALE",
    "STATUS_DAMAGED",
    "CheckReport",
    "Damage",
    "LakeStatus",
    "Part",
    "StatusItem",
    "cascade_new_input",
    "check_lake",
    "derived_intact",
    "invalidate_session",
    "lake_status",
    "record_file",
    "record_store",
    "note_store_files",
    "repair_command",
    "scan_parts",
    "verify_file",
    "verify_store",
    "TABLE_LAYOUT_VERSION",
    "legacy_partitions",
    "upgrade_table_layout",
    "lock_holder",
    "run_lock",
    "wait_until_free",
    "STATUS_FAILED",
    "STATUS_INGESTED",
    "Catalog",
    "Lake",
    "open_lake",
    "LakeLayout",
    "SessionRecord",
    "publish_dir",
    "safe_name",
    "staging_path",
    "write_parquet_atomic",
    "write_json_atomic",
    "remove_tree_quietly",
]
