"""A lock file that keeps two pipeline runs from writing into one lake at the same time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cellsift.catalog.upgrade import upgrade_table_layout
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = ["lock_holder", "run_lock", "wait_until_free"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(root: Path) -> dict[str, Any] | None:
    """Who holds ``LAKE/run.lock`` (``pid``, ``host``, ``run_id``), or ``None`` when no live run does.

    A lock left by a process that no longer runs on this host does not count: the next
    writer takes it over.
    """
    path = Path(root) / "run.lock"
    try:
        other = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        other = {}
    if other.get("host") == socket.gethostname() and not _pid_alive(int(other.get("pid", -1))):
        return None
    return dict(other)


def wait_until_free(root: Path, *, wait: bool, poll_s: float = 2.0, log: Any = None) -> None:
    """Refuse (or, with ``wait``, wait) while another run writes to the lake.

    Call it before starting anything expensive, such as a Dask cluster; the run still
    takes the lock itself (:func:`run_lock`), so a run that slips in between is refused
    there.

    Raises
    ------
    LakeError
        If another live run holds the lock and ``wait`` is false.
    """
    announced = False
    while (holder := lock_holder(root)) is not None:
        who = f"{holder.get('run_id', '?')}, pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if not wait:
            raise LakeError(
                f"another run ({who}) is writing to this lake",
                path=Path(root) / "run.lock",
                fix="wait for it to finish or pass --wait; if it was killed on another machine, delete run.lock",
            )
        if not announced and log is not None:
            log(f"waiting for run {who} to finish writing to {root} ...")
            announced = True
        time.sleep(poll_s)


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
