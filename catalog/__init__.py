"""The lake: its layout, its catalog of sessions, atomic writes and read access."""

from .atomic import publish_dir, staging_path, write_parquet_atomic
from .lake import Lake, open_lake
from .layout import LakeLayout, safe_name
from .store import STATUS_FAILED, STATUS_INGESTED, Catalog, SessionRecord

__all__ = [
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
]
