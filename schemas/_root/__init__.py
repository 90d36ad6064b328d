"""cellsift: curate miniscope cell candidates at cohort scale.

The import package's subpackages are :mod:`cellsift.pipeline` (simulation, ingest and
the Dask pipeline), :mod:`cellsift.catalog` (the lake and its catalog),
:mod:`cellsift.schemas` (data contracts) and :mod:`cellsift.cli` (the ``cellsift``
command). ``cellsift.open_lake(path)`` is the one-line way into the tables.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("cellsift")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from cellsift.catalog import Lake

__all__ = ["__version__", "open_lake"]


def open_lake(path: Any, *, include_stale: bool = False) -> Lake:
    """Open a lake for reading; its tables come back as pandas DataFrames.

    Table parts built from older inputs are hidden, with a warning (``include_stale=True``
    shows them): see :class:`cellsift.catalog.Lake`.

    Examples
    --------
    >>> import cellsift
    >>> cells = cellsift.open_lake("lake").cells   # doctest: +SKIP
    """
    from cellsift.catalog import open_lake as _open

    return _open(path, include_stale=include_stale)
