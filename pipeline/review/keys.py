"""Identifiers the review page uses for cells and sessions, and their lookup.

A cell is named in the browser by ``"cohort:animal:session:unit_id"`` and a session by
``"cohort:animal:session"``. These strings are only ever looked up in the lake's own
tables (:class:`CellIndex`); they are never joined into a filesystem path, so nothing a
browser sends can reach a file the lake does not list.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cellsift.schemas import ParameterError

__all__ = ["CellIndex", "CellRef", "cell_id", "session_id"]


def session_id(cohort: str, animal: str, session: str) -> str:
    """The page's name of a session: ``"cohort:animal:session"``."""
    return f"{cohort}:{animal}:{session}"


def cell_id(cohort: str, animal: str, session: str, unit_id: int) -> str:
    """The page's name of a cell: ``"cohort:animal:session:unit_id"``."""
    return f"{cohort}:{animal}:{session}:{int(unit_id)}"


@dataclass(frozen=True)
class CellRef:
    """One cell of the lake, as found by :class:`CellIndex` (never built from user text).

    Attributes
    ----------
    cohort, animal, session
        The session key.
    unit_id
        The unit's id in the session.
    row
        Its row in the service's cells frame.
    """

    cohort: str
    animal: str
    session: str
    unit_id: int
    row: int

    @property
    def cid(self) -> str:
        return cell_id(self.cohort, self.animal, self.session, self.unit_id)

    @property
    def sid(self) -> str:
        return session_id(self.cohort, self.animal, self.session)


class CellIndex:
    """Look up cells and sessions by their page names in a cells frame.

    Parameters
    ----------
    cells
        The cells table (columns ``cohort, animal, session, unit_id``), row order kept.
    """

    def __init__(self, cells: pd.DataFrame) -> None:
        keys = zip(
            cells["cohort"].astype(str),
            cells["animal"].astype(str),
            cells["session"].astype(str),
            cells["unit_id"].astype(int),
            strict=True,
        )
        self._cells: dict[str, CellRef] = {}
        self._sessions: dict[str, tuple[str, str, str]] = {}
        for row, (c, a, s, u) in enumerate(keys):
            ref = CellRef(c, a, s, int(u), row)
            self._cells[ref.cid] = ref
            self._sessions.setdefault(ref.sid, (c, a, s))

    def __len__(self) -> int:
        return len(self._cells)

    def find(self, cid: str) -> CellRef | None:
        """The cell named ``cid``, or None if the lake has no such cell."""
        return self._cells.get(str(cid))

    def cell(self, cid: str) -> CellRef:
        """The cell named ``cid``.

        Raises
        ------
        ParameterError
            If the lake has no such cell.
        """
        ref = self._cells.get(str(cid))
        if ref is None:
            raise ParameterError(
                f"no cell '{str(cid)[:80]}' in this lake",
                field="cell",
                fix="reload the page; cells are named cohort:animal:session:unit_id",
            )
        return ref

    def session(self, sid: str) -> tuple[str, str, str]:
        """The ``(cohort, animal, session)`` named ``sid``.

        Raises
        ------
        ParameterError
            If the lake has no such session.
        """
        key = self._sessions.get(str(sid))
        if key is None:
            raise ParameterError(
                f"no session '{str(sid)[:80]}' in this lake",
                field="session",
                fix="reload the page; sessions are named cohort:animal:session",
            )
        return key
