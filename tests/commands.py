"""Command lines of the installed scripts, shared by the tests that run them."""

from __future__ import annotations

import sys
from pathlib import Path

#: The folder of the running interpreter's scripts (``cellsift``, ``dask``).
BIN = Path(sys.executable).parent


def dask_command_args(command: str, lake: Path, *extra: str, workers: int = 1) -> list[str]:
    """Arguments of ``cellsift <command>`` on ``lake`` with ``workers`` local Dask workers and
    the dashboard on a free port, then ``extra``."""
    return [command, "--lake", str(lake), "--workers", str(workers), "--dashboard-port", "0", *extra]


def run_args(lake: Path, *extra: str, workers: int = 1) -> list[str]:
    """Arguments of ``cellsift run`` on ``lake`` (see :func:`dask_command_args`) without a
    progress bar, then ``extra``."""
    return dask_command_args("run", lake, "--no-progress", *extra, workers=workers)
