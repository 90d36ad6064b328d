"""What an NWB export reads from the lake for one session.

:func:`open_session` opens a session's store (``LAKE/sessions/.../<hash>.zarr``) and
returns a :class:`SessionSource`: the catalog record, the store's attributes, unit ids
and frame times; arrays stay in the store and are read block by block by the writers.
:func:`session_table` reads one session's partition of a lake table (``cells``,
``events``, ``behaviour``, ``cell_registry``); :func:`dff_matrix` turns the session's
partition of the long ``traces`` table into a ``(frame, unit)`` ΔF/F matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog import LakeLayout, SessionRecord
from cellsift.schemas import TABLES, LakeError, SessionKey

logger = logging.getLogger(__name__)

__all__ = ["SessionSource", "open_session", "session_table", "cells_are_current", "dff_matrix"]

#: Rows of the ``traces`` table read at a time when building the ΔF/F matrix.
TRACE_BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class SessionSource:
    """One ingested session, opened for export.

    Attributes
    ----------
    key
        The session's full key.
    record
        Its catalog record.
    dataset
        The session store (zarr folder).
    group
        The store opened read-only (``zarr.Group``): ``A``, ``C_raw``, ``S``, ``movie``, ...
    attrs
        The store's attributes (``fps``, ``recording_start``, ``source_video``, ...).
    unit_ids
        Unit ids in store order.
    time_s
        Frame times (s since the first frame).
    """

    key: SessionKey
    record: SessionRecord
    dataset: Path
    group: Any
    attrs: dict[str, Any]
    unit_ids: np.ndarray
    time_s: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.time_s.size)

    @property
    def n_units(self) -> int:
        return int(self.unit_ids.size)

    @property
    def fps(self) -> float:
        """Frame rate of the stored frames (Hz)."""
        return float(self.attrs.get("fps") or self.record.fps)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames and footprints (px)."""
        shape = self.group["A"].shape
        return int(shape[1]), int(shape[2])


def open_session(layout: LakeLayout, record: SessionRecord) -> SessionSource:
    """Open ``record``'s session store for reading.

    Raises
    ------
    LakeError
        The store is missing or cannot be opened.
    """
    import zarr

    dataset = layout.root / record.dataset_path
    fix = "re-ingest the session with 'cellsift ingest'"
    if not record.dataset_path or not dataset.is_dir():
        raise LakeError("the session store is missing", path=dataset, fix=fix)
    try:
        group: Any = zarr.open_group(str(dataset), mode="r")
        unit_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
        time_s = np.asarray(group["time_s"][:], dtype=np.float64)
        attrs = dict(group.attrs)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise LakeError(
            f"session store cannot be opened ({type(exc).__name__}: {exc})", path=dataset, fix=fix
        ) from None
    key = SessionKey(record.cohort, record.animal, record.session)
    return SessionSource(key, record, dataset, group, attrs, unit_ids, time_s)


def _partition_files(layout: LakeLayout, name: str, key: SessionKey) -> list[Path]:
    folder = layout.table_partition(name, *key.as_tuple())
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def session_table(layout: LakeLayout, name: str, key: SessionKey) -> pd.DataFrame:
    """One session's rows of table ``name`` (an empty frame if the table has none).

    Parameters
    ----------
    layout
        The lake.
    name
        A table of :data:`cellsift.schemas.TABLES` (or any table on disk).
    key
        The session.
    """
    files = _partition_files(layout, name, key)
    if not files:
        schema = TABLES.get(name)
        return schema.empty_table().to_pandas() if schema is not None else pd.DataFrame()
    parts = [pq.read_table(f) for f in files]
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def cells_are_current(layout: LakeLayout, source: SessionSource) -> bool:
    """Whether the session's pipeline tables come from its current ingest.

    The ``sessions`` row of the last ``cellsift run`` records the ``input_hash`` it
    processed; a different hash means the ``cells`` table describes an older ingest.
    """
    sessions = session_table(layout, "sessions", source.key)
    if sessions.empty:
        return False
    return bool(str(sessions["input_hash"].iloc[-1]) == source.record.input_hash)


def dff_matrix(layout: LakeLayout, source: SessionSource) -> tuple[np.ndarray, np.ndarray] | None:
    """The session's ΔF/F from the ``traces`` table as a ``(frame, unit)`` float32 matrix.

    Parameters
    ----------
    layout
        The lake.
    source
        The open session (its unit ids and frame count place the rows).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) or None
        The matrix ``(n_frames, n_present)`` and the positions (in store order) of the
        units it holds; ``None`` if the table has no rows for the session.

    Raises
    ------
    LakeError
        The table has units or frames the session store does not have (it is from an
        older ingest).
    """
    files = _partition_files(layout, "traces", source.key)
    if not files:
        return None
    order = np.argsort(source.unit_ids, kind="stable")
    sorted_ids = source.unit_ids[order]
    out = np.full((source.n_frames, source.n_units), np.nan, dtype=np.float32)
    seen = np.zeros(source.n_units, dtype=bool)
    fix = "run 'cellsift analyze --lake LAKE' again"
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=TRACE_BATCH_ROWS, columns=["unit_id", "frame", "dff"]
        ):
            units = batch.column("unit_id").to_numpy(zero_copy_only=False).astype(np.int64)
            frames = batch.column("frame").to_numpy(zero_copy_only=False).astype(np.int64)
            values = batch.column("dff").to_numpy(zero_copy_only=False).astype(np.float32)
            where = np.searchsorted(sorted_ids, units).clip(max=max(source.n_units - 1, 0))
            if source.n_units == 0 or np.any(sorted_ids[where] != units):
                raise LakeError("the traces table has units the session store lacks", path=path, fix=fix)
            if frames.size and (frames.min() < 0 or frames.max() >= source.n_frames):
                raise LakeError("the traces table has frames the session store lacks", path=path, fix=fix)
            columns = order[where]
            out[frames, columns] = values
            seen[columns] = True
    if not seen.any():
        return None
    present = np.flatnonzero(seen)
    logger.debug("%s: dF/F of %d of %d units", source.key.label, present.size, source.n_units)
    return np.ascontiguousarray(out[:, present]), present
