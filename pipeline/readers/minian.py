"""Minian output (format ``minian_zarr``): a folder of ``<var>.zarr`` stores.

One store per variable (``A``, ``C``, ``S``, ``YrA``, ...; zarr v2 or v3), as Minian's
``save_minian`` writes them, with the ``unit_labels`` coordinate of its CNMFViewer.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import (
    Extraction,
    UnitLabels,
    dense_to_csc,
    footprint_block_units,
    one_line,
    require_folder,
)
from cellsift.pipeline.readers.checks import finish_extraction
from cellsift.pipeline.readers.zarr_chunks import ChunkRows
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = ["MINIAN_KNOWN", "MinianZarrReader", "is_minian_output", "list_minian_files"]

#: Variables Minian writes (any other ``<var>.zarr`` is reported).
MINIAN_KNOWN: Final = frozenset(
    {
        "A",
        "C",
        "S",
        "YrA",
        "b",
        "f",
        "b0",
        "c0",
        "max_proj",
        "shifts",
        "motion",
        "Y",
        "Y_fm_chk",
        "Y_hw_chk",
        "org",
        "varr",
        "sig",
        "seeds",
        "A_init",
        "C_init",
        "b_init",
        "f_init",
        "S_init",
        "C_chk",
        "A_chk",
        "Y_fm",
        "Y_hw",
        "Yr",
        "max_proj_mc",
        "mean_proj",
    }
)


class MinianZarrReader:
    """Minian output: a folder of ``<var>.zarr`` stores (one per variable, zarr v2 or v3).

    Used: ``A`` (unit_id, height, width), ``C`` and ``S`` (unit_id, frame), ``YrA``
    (raw trace = ``C + YrA``; without it the raw trace is ``C``), ``max_proj`` (kept as
    ``max_proj_extraction``), the ``unit_labels`` coordinate (``-1`` = discarded in
    Minian's CNMFViewer; stored as labels of source ``minian_unit_labels`` unless it just
    repeats ``unit_id``, which means nobody curated). Dimensions are matched by name, so
    the stored axis order does not matter.

    Parameters
    ----------
    path
        The output folder holding ``A.zarr``, ``C.zarr``, ...
    """

    format: str = "minian_zarr"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _open(self, name: str) -> Any:
        import xarray as xr

        store = self.path / f"{name}.zarr"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # no dask: blocks are read straight from zarr (dask's per-task overhead
                # dominated the reading of dense footprints)
                ds = xr.open_zarr(store, consolidated=False, chunks=None)
        except Exception as exc:  # noqa: BLE001 - zarr raises many types on broken stores
            raise InputFormatError(
                f"cannot open {name}.zarr ({one_line(exc)})",
                path=store,
                field=name,
                fix="copy the Minian output folder again; every <var>.zarr needs its .zarray/.zattrs metadata",
            ) from None
        if name not in ds.data_vars:
            raise InputFormatError(
                f"{name}.zarr holds no variable '{name}' (variables: {', '.join(ds.data_vars) or 'none'})",
                path=store,
                field=name,
                fix="give the folder Minian's save_minian wrote",
            )
        return ds[name]

    def read(self) -> Extraction:
        """Read and check the Minian output (row-major ``"C"`` pixels).

        See :meth:`~cellsift.pipeline.readers.base.ExtractionReader.read`.
        """
        require_folder(
            self.path,
            expected="Minian's output folder (holding A.zarr, C.zarr, ...)",
            fix="point extraction at the folder",
        )
        present = {
            p.name[: -len(".zarr")] for p in self.path.iterdir() if p.is_dir() and p.name.endswith(".zarr")
        }
        for name in ("A", "C"):
            if name not in present:
                raise InputFormatError(
                    f"no {name}.zarr in the Minian output folder (found: {', '.join(sorted(present)) or 'none'})",
                    path=self.path,
                    field=name,
                    fix="point extraction at the folder Minian's save_minian wrote (A.zarr, C.zarr, S.zarr, ...)",
                )
        unknown = sorted(present - MINIAN_KNOWN)
        if unknown:
            logger.warning(
                "%s: unknown variables %s are not read", self.path, ", ".join(f"{u}.zarr" for u in unknown)
            )
        a, c = self._footprints_and_traces_arrays()
        unit_ids = np.asarray(a["unit_id"].values)
        c_in_order = np.array_equal(unit_ids, np.asarray(c["unit_id"].values))
        if not c_in_order:
            if set(unit_ids.tolist()) != set(np.asarray(c["unit_id"].values).tolist()):
                raise InputFormatError(
                    "A and C have different unit ids",
                    path=self.path / "C.zarr",
                    field="unit_id",
                    fix="give A and C of the same Minian run",
                )
            c = c.sel(unit_id=unit_ids)
        h, w = int(a.sizes["height"]), int(a.sizes["width"])
        try:
            A = self._footprints(a, h, w)
            c_values = self._values("C", c, ("unit_id", "frame")) if c_in_order else np.asarray(c.values)
            C = np.ascontiguousarray(c_values, dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a missing or truncated chunk file
            raise InputFormatError(
                f"cannot read the Minian arrays ({one_line(exc)})",
                path=self.path / "A.zarr",
                fix="a chunk file is truncated or corrupt; copy the Minian output folder again",
            ) from None
        S = self._traces("S", present, unit_ids)
        if S is None:
            logger.warning("%s: no S.zarr; writing zeros", self.path)
            S = np.zeros_like(C)
        yra = self._traces("YrA", present, unit_ids)
        if yra is not None and yra.shape == C.shape:
            C_raw, c_raw_source = C + yra, "C + YrA"
        else:
            logger.warning(
                "%s: no YrA.zarr; the raw trace is C (denoised), so noise features are not measured",
                self.path,
            )
            C_raw, c_raw_source = C, "C"
        labels, unit_vars = self._labels(a, unit_ids)
        extras: dict[str, np.ndarray] = {}
        if "max_proj" in present:
            mp = self._open("max_proj")
            if set(mp.dims) == {"height", "width"}:
                extras["max_proj_extraction"] = np.asarray(
                    self._values("max_proj", mp, ("height", "width")), dtype=np.float32
                )
        ext = Extraction(
            A=A,
            C=C,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids.astype(np.int64),
            d1=h,
            d2=w,
            fps=None,
            pixel_order="C",
            extras=extras,
            unit_vars=unit_vars,
            labels=labels,
            source_format=self.format,
            c_raw_source=c_raw_source,
        )
        return finish_extraction(ext, self.path)

    def _footprints_and_traces_arrays(self) -> tuple[Any, Any]:
        """``A`` as ``(unit_id, height, width)`` and ``C`` as ``(unit_id, frame)``, lazily."""
        a = self._open("A")
        c = self._open("C")
        for name, arr, dims in (("A", a, {"unit_id", "height", "width"}), ("C", c, {"unit_id", "frame"})):
            if set(arr.dims) != dims:
                raise InputFormatError(
                    f"{name} has dimensions {tuple(arr.dims)}, expected {tuple(sorted(dims))}",
                    path=self.path / f"{name}.zarr",
                    field=name,
                    fix="give Minian's own output (dimension names unit_id, height, width, frame)",
                )
        return a.transpose("unit_id", "height", "width"), c.transpose("unit_id", "frame")

    def _chunk_rows(self, name: str, arr: Any, dims: tuple[str, ...]) -> ChunkRows | None:
        """``<name>.zarr``'s chunk files, when stored as ``dims`` in a layout :class:`ChunkRows` reads."""
        rows = ChunkRows.open(self.path / f"{name}.zarr" / name)
        if rows is None or rows.dims != dims or rows.shape != tuple(arr.shape):
            return None
        return rows

    def _values(self, name: str, arr: Any, dims: tuple[str, ...]) -> np.ndarray:
        """All of ``arr`` (as stored, in its own unit order) as ``dims``: from the chunk files
        when possible, else through zarr."""
        raw = self._chunk_rows(name, arr, dims)
        values = raw.rows(0, raw.shape[0]) if raw is not None else None
        return values if values is not None else np.asarray(arr.transpose(*dims).values)

    def _footprints(self, a: Any, h: int, w: int) -> sp.csc_matrix:
        """``A`` ``(unit_id, height, width)`` as CSC ``(h*w, K)`` float32, a block of units at a time.

        Blocks hold whole zarr chunks (each chunk file is read and decompressed once) and at
        most about :data:`~cellsift.pipeline.readers.base.FOOTPRINT_BLOCK_BYTES` of stored
        values, or one chunk where a chunk is larger; each is converted to sparse at once.
        """
        raw = self._chunk_rows("A", a, ("unit_id", "height", "width"))
        chunk = (
            raw.block_rows
            if raw is not None
            else int(a.encoding.get("preferred_chunks", {}).get("unit_id", 1))
        )
        step = footprint_block_units(h, w, itemsize=int(a.dtype.itemsize))
        step = max(1, chunk if chunk >= step else (step // max(chunk, 1)) * chunk)
        blocks = []
        for start in range(0, int(a.sizes["unit_id"]), step):
            block = raw.rows(start, start + step) if raw is not None else None
            if block is None:  # another layout or a missing chunk file: zarr reads it
                block = np.asarray(a.isel(unit_id=slice(start, start + step)).values)
            blocks.append(dense_to_csc(block))
        return sp.hstack(blocks, format="csc") if blocks else sp.csc_matrix((h * w, 0), dtype=np.float32)

    def _traces(self, name: str, present: set[str], unit_ids: np.ndarray) -> np.ndarray | None:
        """Trace variable ``name`` ``(K, T)`` float32 in the order of ``unit_ids``, or ``None``."""
        if name not in present:
            return None
        arr = self._open(name)
        if set(arr.dims) != {"unit_id", "frame"}:
            raise InputFormatError(
                f"{name} has dimensions {tuple(arr.dims)}, expected (unit_id, frame)",
                path=self.path / f"{name}.zarr",
                field=name,
                fix="give Minian's own output",
            )
        try:
            if np.array_equal(np.asarray(arr["unit_id"].values), unit_ids):
                values = self._values(name, arr, ("unit_id", "frame"))
            else:
                values = arr.transpose("unit_id", "frame").sel(unit_id=unit_ids).values
        except KeyError:
            raise InputFormatError(
                f"{name} lacks some units of A",
                path=self.path / f"{name}.zarr",
                field=name,
                fix="give one run's output",
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read {name}.zarr ({one_line(exc)})",
                path=self.path / f"{name}.zarr",
                field=name,
                fix="a chunk file is truncated or corrupt; copy the Minian output folder again",
            ) from None
        return np.ascontiguousarray(np.asarray(values, dtype=np.float32))

    def _labels(self, a: Any, unit_ids: np.ndarray) -> tuple[tuple[UnitLabels, ...], dict[str, np.ndarray]]:
        """Labels of the ``unit_labels`` coordinate (``-1`` = discarded) and the raw column."""
        labels: list[UnitLabels] = []
        unit_vars: dict[str, np.ndarray] = {}
        if "unit_labels" in a.coords:
            raw_labels = np.asarray(a["unit_labels"].values)
            if raw_labels.dtype.kind in "iuf" and raw_labels.shape == (len(unit_ids),):
                unit_vars["minian_unit_labels"] = raw_labels.astype(np.int64)
                if np.array_equal(raw_labels, unit_ids) and not np.any(raw_labels == -1):
                    logger.info("%s: unit_labels equal unit_id (not curated); no labels imported", self.path)
                else:
                    labels.append(
                        UnitLabels(
                            unit_ids.astype(np.int64),
                            tuple("bad" if v == -1 else "good" for v in raw_labels),
                            source="minian_unit_labels",
                        )
                    )
        return tuple(labels), unit_vars


def is_minian_output(folder: Path) -> bool:
    """Whether ``folder`` looks like Minian's output (holds ``A.zarr`` or ``C.zarr``)."""
    return (folder / "A.zarr").is_dir() or (folder / "C.zarr").is_dir()


def list_minian_files(folder: Path) -> list[Path]:
    """Every file of the ``<var>.zarr`` stores of a Minian output folder (for hashing).

    A path that is not a folder is returned alone (its reader reports the problem).
    """
    if not folder.is_dir():
        return [folder]
    stores = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.endswith(".zarr"))
    return [f for store in stores for f in sorted(store.rglob("*")) if f.is_file()]
