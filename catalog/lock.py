"""A lock file that keeps two pipeline runs from writing into one lake at the same time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cellsift.catalog.upgrade import upgrade_table_layout
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = ["run_lock"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(root: Path, *, run_id: str) -> Iterator[bool]:
    """Hold ``LAKE/run.lock`` while a run writes; yield whether a stale lock was taken over.

    A lock left by a process that no longer runs on this host (a killed run) is taken
    over, and the caller should clean up the staging area it left behind. A lake written
    by an older cellsift is brought to today's table layout once the lock is held
    (:func:`cellsift.catalog.upgrade_table_layout`).

    Raises
    ------
    LakeError
        If another live run holds the lock.
    """
    path = root / "run.lock"
    host = socket.gethostname()
    mine = json.dumps({"pid": os.getpid(), "host": host, "run_id": run_id})
    stale = False
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                other = {}
            if other.get("host") == host and not _pid_alive(int(other.get("pid", -1))):
                logger.warning("taking over the lock of run %s, which stopped", other.get("run_id"))
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                stale = True
                continue
            raise LakeError(
                f"another run ({other.get('run_id', '?')}, pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}) is writing to this lake",
                path=path,
                fix="wait for it to finish; if it was killed on another machine, delete run.lock",
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(mine)
        break
    else:  # pragma: no cover - only with a race between two take-overs
        raise LakeError("could not take the run lock", path=path, fix="try again")
    try:
        upgrade_table_layout(root)
        yield stale
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
