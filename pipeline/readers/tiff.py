"""TIFF stacks (format ``tiff``): a multi-page TIFF / BigTIFF, or a folder of numbered parts.

Uncompressed contiguous stacks are memory-mapped; others are read a block of pages at a
time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np

from cellsift.pipeline.readers.base import (
    finite_positive,
    frame_dtype,
    one_line,
    require_exists,
)
from cellsift.pipeline.readers.series import numbered_series
from cellsift.schemas import InputFormatError, ParameterError

__all__ = ["TIFF_SUFFIXES", "TiffStackReader", "has_tiff_files", "list_tiff_files"]

TIFF_SUFFIXES: Final = (".tif", ".tiff")


def has_tiff_files(folder: Path) -> bool:
    """Whether ``folder`` itself holds a ``.tif`` / ``.tiff`` file."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return any(p.is_file() and p.suffix.lower() in TIFF_SUFFIXES for p in entries)


def list_tiff_files(path: Path) -> list[Path]:
    """The stack file, or the numbered parts of a folder in order."""
    require_exists(path, field_name="video", what="video")
    return [path] if path.is_file() else numbered_series(path, TIFF_SUFFIXES, what="TIFF part")


def _tiff_error(path: Path, exc: BaseException, what: str = "read") -> InputFormatError:
    return InputFormatError(
        f"cannot {what} the TIFF stack ({one_line(exc)})",
        path=path,
        field="video",
        fix="the file is truncated or corrupt; export the stack again",
    )


class TiffStackReader:
    """A multi-page TIFF / BigTIFF stack, or a folder of numbered TIFF parts.

    Uncompressed contiguous stacks are memory-mapped (:func:`tifffile.memmap`); others are
    read a block of pages at a time. Frames are ``(height, width)`` pages; singleton
    axes (ImageJ ``Z``/``C`` of size 1) are dropped.

    Parameters
    ----------
    path
        A ``.tif``/``.tiff`` file or a folder of numbered ones.
    """

    format: str = "tiff"

    def __init__(self, path: Path | str) -> None:
        import tifffile

        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        files = (
            [self.path]
            if self.path.is_file()
            else numbered_series(self.path, TIFF_SUFFIXES, what="TIFF part")
        )
        self.files: tuple[Path, ...] = tuple(files)
        self.part_frames: list[int] = []
        size: tuple[int, int] | None = None
        self.dtype: np.dtype = np.dtype(np.uint16)
        self.fps: float | None = None
        for file in files:
            try:
                with tifffile.TiffFile(file) as tif:
                    series = tif.series[0]
                    shape = tuple(int(s) for s in series.shape)
                    dtype = np.dtype(series.dtype)
                    meta = tif.imagej_metadata or {}
            except Exception as exc:  # noqa: BLE001 - tifffile raises many types
                raise _tiff_error(file, exc, "open") from None
            if len(shape) < 2 or 0 in shape:
                raise InputFormatError(
                    f"cannot open the TIFF stack: it holds no image data (shape {shape}); truncated or corrupt",
                    path=file,
                    field="video",
                    fix="export the stack again",
                )
            squeezed = tuple(s for s in shape[:-2] if s != 1) + shape[-2:]
            if len(squeezed) == 2:
                squeezed = (1, *squeezed)
            if len(squeezed) != 3 or dtype.kind not in "biuf":
                raise InputFormatError(
                    f"the stack has shape {shape} and dtype {dtype}; expected frames x height x width of gray values",
                    path=file,
                    field="video",
                    fix="export a single-channel, single-plane stack (one page per frame)",
                )
            if size is None:
                size, self.dtype = squeezed[1:], dtype
            elif squeezed[1:] != size or dtype != self.dtype:
                raise InputFormatError(
                    f"part has frames of {squeezed[1]}x{squeezed[2]} {dtype}, the first part {size[0]}x{size[1]} {self.dtype}",
                    path=file,
                    field="video",
                    fix="all parts of a session must come from one recording",
                )
            self.part_frames.append(squeezed[0])
            if self.fps is None and isinstance(meta, dict):
                interval = finite_positive(meta.get("finterval"))
                self.fps = finite_positive(meta.get("fps")) or (1.0 / interval if interval else None)
        if size is None:  # pragma: no cover - numbered_series returns at least one file
            raise InputFormatError("no TIFF files", path=self.path, field="video", fix="check the video path")
        self.height, self.width = size
        self.n_frames = int(sum(self.part_frames))
        self.timestamps_s: np.ndarray | None = None
        self.dtype = frame_dtype(self.dtype)

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames (memory-mapped parts are sliced)."""
        import tifffile

        if n_frames < 1:
            raise ParameterError(
                f"n_frames must be >= 1, got {n_frames}",
                field="n_frames",
                fix="read at least one frame per block",
            )
        shape = (self.height, self.width)
        for file, count in zip(self.files, self.part_frames, strict=True):
            try:
                mapped = tifffile.memmap(str(file), mode="r")
            except Exception:  # noqa: BLE001 - not memory-mappable (compressed, tiled, ...)
                mapped = None
            try:
                if mapped is not None:
                    frames = np.asarray(mapped).reshape(count, *shape)
                    for start in range(0, count, n_frames):
                        yield np.array(frames[start : start + n_frames], dtype=self.dtype)
                    del frames, mapped
                    continue
                with tifffile.TiffFile(file) as tif:
                    n_pages = len(tif.pages)
                    for start in range(0, count, n_frames):
                        stop = min(start + n_frames, count)
                        if n_pages >= count:
                            data = tif.asarray(key=range(start, stop))
                        else:  # few pages holding many frames (ImageJ > 4 GB): read all of it
                            data = tif.asarray()[start:stop]
                        yield np.asarray(data, dtype=self.dtype).reshape(stop - start, *shape)
            except InputFormatError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _tiff_error(file, exc) from None
