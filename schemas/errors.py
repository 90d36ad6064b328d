"""Error classes of cellsift.

Every error raised on bad input derives from :class:`CellsiftError` *and* from the
matching builtin, so ``except FileNotFoundError`` keeps working for callers that do
not know cellsift. Messages name the file, the field and the fix, so the CLI can
print them as one readable line.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

__all__ = [
    "CellsiftError",
    "InputFormatError",
    "SessionNotFoundError",
    "ManifestError",
    "SchemaError",
    "LakeError",
    "ModelMismatchError",
    "ParameterError",
]


class CellsiftError(Exception):
    """Base class of every error cellsift raises on purpose.

    Parameters
    ----------
    problem
        What is wrong, in one sentence.
    path
        The file or folder the problem is in, if any.
    field
        The variable, column or key that is wrong, if any.
    fix
        What the user should do about it, if known.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | PathLike[str] | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.field = field
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the message as one line: ``file: field: problem. Fix: ...``."""
        parts = []
        if self.path:
            parts.append(self.path)
        if self.field:
            parts.append(f"field '{self.field}'")
        head = ": ".join(parts)
        text = f"{head}: {self.problem}" if head else self.problem
        text = text.rstrip(".") + "."
        if self.fix:
            text += f" Fix: {self.fix.rstrip('.')}."
        return " ".join(text.split())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # keep errors picklable across Dask workers
        return (
            _rebuild_error,
            (type(self), self.problem, self.path, self.field, self.fix),
        )


def _rebuild_error(
    cls: type[CellsiftError], problem: str, path: str | None, field: str | None, fix: str | None
) -> CellsiftError:
    return cls(problem, path=path, field=field, fix=fix)


class InputFormatError(CellsiftError, ValueError):
    """An input file exists but its content is not what the format promises."""


class SessionNotFoundError(CellsiftError, FileNotFoundError):
    """A file, folder or session that should exist does not."""


class ManifestError(CellsiftError, ValueError):
    """A cohort manifest is missing a column, has a bad value or names a bad path."""


class SchemaError(CellsiftError, ValueError):
    """A session dataset or table does not follow cellsift's schema."""


class LakeError(CellsiftError, RuntimeError):
    """The lake is missing, locked, or in a state cellsift cannot work with."""


class ModelMismatchError(CellsiftError, ValueError):
    """A model's card does not match the data it is asked to score."""


class ParameterError(CellsiftError, ValueError):
    """A parameter or option has a value cellsift cannot work with (a bug in the call, not the data)."""
