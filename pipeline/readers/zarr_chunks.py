"""Read a zarr v2 array straight from its chunk files, a range of its first axis at a time.

zarr-python 3 spends a few milliseconds of Python and event-loop work on every chunk it
reads. Minian stores each footprint and each trace row as a chunk of its own (the real
demo: 410 footprints of 480 x 752 float64 = 410 chunks of 2.9 MB, almost all zeros, and
410 chunks per trace variable), so reading them through zarr took about 3 s where
decompressing them takes 0.25 s. :class:`ChunkRows` reads the plain zarr v2 layout that
Minian writes — ``.zarray`` metadata, C order, no filters, a numcodecs compressor (or
none), ``.`` or ``/`` key separator — by opening each chunk file and decompressing it
with numcodecs (the same codec zarr would call), straight into the output block where a
chunk fills its part of it. Anything else (zarr v3, filters, Fortran order, a missing
chunk file) is left to zarr: :meth:`ChunkRows.open` or :meth:`ChunkRows.rows` returns
``None`` and the caller reads through zarr as before, so the values are always zarr's.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ChunkRows"]


class ChunkRows:
    """A zarr v2 array in a folder, read ``rows(start, stop)`` along its first axis.

    Use :meth:`open`; it returns ``None`` for layouts this class does not read.

    Parameters
    ----------
    folder
        The array's folder (holding ``.zarray`` and the chunk files).
    shape, chunks
        Array and chunk shape.
    dtype
        Stored dtype (as the metadata says, byte order included).
    separator
        Chunk key separator, ``"."`` or ``"/"``.
    compressor
        numcodecs codec configuration, or ``None`` (chunks stored raw).
    dims
        Dimension names xarray stored with the array (``_ARRAY_DIMENSIONS``), or ``None``.
    """

    def __init__(
        self,
        folder: Path,
        *,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: np.dtype,
        separator: str,
        compressor: dict[str, Any] | None,
        dims: tuple[str, ...] | None = None,
    ) -> None:
        import numcodecs

        self.folder, self.dims = Path(folder), dims
        self._prefix = f"{self.folder}{os.sep}"
        self._chunk_bytes = int(np.prod(chunks)) * dtype.itemsize
        # per chunk of the trailing axes: its key suffix, where it goes, which part is inside
        grid = [range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:], strict=True)]
        self._trailing = [
            (
                "".join(f"{separator}{i}" for i in key),
                tuple(
                    slice(i * c, min(i * c + c, n))
                    for i, c, n in zip(key, chunks[1:], shape[1:], strict=True)
                ),
                tuple(
                    slice(0, min(c, n - i * c)) for i, c, n in zip(key, chunks[1:], shape[1:], strict=True)
                ),
            )
            for key in itertools.product(*grid)
        ]
        self.shape, self.chunks, self.dtype, self.separator = shape, chunks, dtype, separator
        self._codec = numcodecs.get_codec(dict(compressor)) if compressor is not None else None

    @classmethod
    def open(cls, folder: Path) -> ChunkRows | None:
        """The array in ``folder`` if it is a plain zarr v2 array of numbers, else ``None``."""
        try:
            meta = json.loads((Path(folder) / ".zarray").read_text())
            shape = tuple(int(s) for s in meta["shape"])
            chunks = tuple(int(c) for c in meta["chunks"])
            dtype = np.dtype(meta["dtype"]) if isinstance(meta["dtype"], str) else None
            separator = meta.get("dimension_separator") or "."
            compressor = meta.get("compressor")
            plain = (
                meta.get("zarr_format") == 2
                and meta.get("order", "C") == "C"
                and not meta.get("filters")
                and dtype is not None
                and dtype.kind in "biuf"
                and len(shape) == len(chunks) >= 1
                and all(c > 0 for c in chunks)
                and separator in (".", "/")
                and (compressor is None or isinstance(compressor, dict))
            )
            if not plain or dtype is None:
                return None
            attrs = Path(folder) / ".zattrs"
            names = json.loads(attrs.read_text()).get("_ARRAY_DIMENSIONS") if attrs.is_file() else None
            dims = (
                tuple(str(n) for n in names) if isinstance(names, list) and len(names) == len(shape) else None
            )
            return cls(
                folder,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                separator=separator,
                compressor=compressor,
                dims=dims,
            )
        except Exception:  # noqa: BLE001 - no or odd metadata, unknown codec: let zarr read it
            return None

    @property
    def block_rows(self) -> int:
        """Rows of the first axis that one chunk holds."""
        return self.chunks[0]

    def rows(self, start: int, stop: int) -> np.ndarray | None:
        """Rows ``start:stop`` of the first axis in the stored dtype, or ``None`` when a chunk
        file is missing (zarr then supplies its fill value) or does not decode to a chunk."""
        start, stop = max(0, start), min(self.shape[0], stop)
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        if out.size == 0:
            return out
        size = self.chunks[0]
        for i in range(start // size, (stop - 1) // size + 1):
            r0, r1 = max(i * size, start), min(i * size + size, stop)
            in_out, in_chunk = slice(r0 - start, r1 - start), slice(r0 - i * size, r1 - i * size)
            for suffix, out_part, chunk_part in self._trailing:
                target = out[(in_out, *out_part)]
                if not self._read_chunk(f"{self._prefix}{i}{suffix}", target, (in_chunk, *chunk_part)):
                    return None
        return out

    def _read_chunk(self, path: str, target: np.ndarray, part: tuple[slice, ...]) -> bool:
        """Decode the chunk file ``path`` and copy its ``part`` into ``target``; ``False``
        if the file is missing or does not decode to a whole chunk."""
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return False
        try:
            if target.shape == self.chunks and target.flags.c_contiguous and self._codec is not None:
                self._codec.decode(raw, out=target)  # blosc decompresses into the block itself
                return True
            decoded = self._codec.decode(raw) if self._codec is not None else raw
            flat = np.frombuffer(decoded, dtype=np.uint8)
        except Exception:  # noqa: BLE001 - a corrupt chunk: zarr reads it and reports the error
            return False
        if flat.size != self._chunk_bytes:
            return False
        target[...] = flat.view(self.dtype).reshape(self.chunks)[part]
        return True
