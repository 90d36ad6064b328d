"""Provenance: package versions, parameter hashes and run records."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import socket
import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cellsift.pipeline._util import utc_now

logger = logging.getLogger(__name__)

__all__ = ["host_info", "new_run_id", "package_versions", "stable_hash"]

_PACKAGES = (
    "cellsift",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "xarray",
    "zarr",
    "dask",
    "distributed",
    "duckdb",
    "torch",
    "torchvision",
    "av",
    "h5py",
)


def package_versions() -> dict[str, str]:
    """Return the installed versions of the packages cellsift's results depend on."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def stable_hash(obj: Any, *, length: int = 16) -> str:
    """Return a short SHA-256 of ``obj``'s canonical JSON form (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def new_run_id() -> str:
    """Return a sortable, unique run id such as ``20261122T063512Z-1a2b3c``."""
    return f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def host_info() -> dict[str, Any]:
    """Return where a run ran: host name, platform and CPU count."""
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()}
