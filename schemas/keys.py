"""The key of a session, and every name derived from it.

A session is identified by its full key ``(cohort, animal, session)``: labs number their
mice, so ``m01/d1`` can exist in two cohorts of one lake. Staging folders, clip stores,
Dask task keys and provenance entries are all built here from the full key, so that two
sessions never share a derived name, whatever characters their names contain.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SessionKey", "animal_slug"]

_SLUG_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._+]+")


def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]


def _slug(parts: tuple[str, ...]) -> str:
    readable = "_".join(_SLUG_UNSAFE.sub("_", part).strip("_")[:24] or "x" for part in parts)
    return f"{readable}.{_digest(parts)}"


def animal_slug(cohort: str, animal: str) -> str:
    """A file-safe name unique per ``(cohort, animal)`` (per-animal figures, registry tasks)."""
    return _slug((cohort, animal))


@dataclass(frozen=True, order=True)
class SessionKey:
    """The full key of a session.

    Parameters
    ----------
    cohort, animal, session
        The three names, exactly as the catalog records them.
    """

    cohort: str
    animal: str
    session: str

    @property
    def label(self) -> str:
        """``cohort/animal/session``, for people (log lines, error messages)."""
        return f"{self.cohort}/{self.animal}/{self.session}"

    @property
    def digest(self) -> str:
        """A short hash of the three names, unambiguous whatever they contain."""
        return _digest(self.as_tuple())

    @property
    def slug(self) -> str:
        """A file- and key-safe name that is unique per key.

        Readable parts (unsafe characters replaced by ``_``) followed by :attr:`digest`,
        which keeps names apart that differ only in characters the readable part drops
        (``-``, ``/``, spaces, non-ASCII).
        """
        return _slug(self.as_tuple())

    def staging_name(self, kind: str, run_id: str, *, suffix: str = "") -> str:
        """Name of a staging folder or file of this session in the lake's ``tmp/``.

        Parameters
        ----------
        kind
            What is staged, e.g. ``"clips"``.
        run_id
            The run that owns it (a crashed run's staging is recognised by its id).
        suffix
            Appended, e.g. ``".zarr"``.
        """
        return f"{kind}-{run_id}-{self.slug}{suffix}"

    def task_key(self, stage: str, *extra: object) -> str:
        """A Dask task key: ``stage-<slug>[-extra...]``, unique per session and stage."""
        tail = "".join(f"-{value}" for value in extra)
        return f"{stage}-{self.slug}{tail}"

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.cohort, self.animal, self.session)
