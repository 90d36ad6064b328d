"""Shared pieces of the readers: the two interfaces, the :class:`Extraction` dataclass and
file-listing helpers.

Every reader returns the same things whatever the file format:

* a :class:`VideoReader` — frame count, frame size, dtype, frame rate and timestamps
  known after opening (headers only); frames stream out of :meth:`VideoReader.iter_blocks`
  block by block, so a movie is never held in memory whole;
* an :class:`Extraction` — footprints as a sparse ``(height*width, K)`` matrix with a
  declared pixel order, traces ``(K, T)``, unit ids, per-unit columns and any labels the
  extraction file carries (kept apart from everything else by their ``source``).

Problems with a file are raised as :class:`~cellsift.schemas.errors.InputFormatError`
(content) or :class:`~cellsift.schemas.errors.SessionNotFoundError` (missing), naming the
file, the field and the fix; library exceptions never escape a reader.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.traces import Traces
from cellsift.schemas import InputFormatError, ParameterError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "DENOISED_ONLY_SOURCE",
    "PIXEL_ORDERS",
    "LABEL_VALUES",
    "VideoReader",
    "UnitLabels",
    "Extraction",
    "ExtractionReader",
    "FOOTPRINT_BLOCK",
    "FOOTPRINT_BLOCK_BYTES",
    "footprint_block_units",
    "as_traces",
    "blocks_from_array",
    "corrupt_file",
    "dense_to_csc",
    "finite_positive",
    "frame_dtype",
    "one_line",
    "require_exists",
    "require_folder",
    "require_numeric",
    "to_csc",
]

#: How the pixel index of a flat footprint maps to ``(y, x)``: ``"F"`` column-major
#: (MATLAB, CNMF-E, CaImAn: ``index = y + x * height``), ``"C"`` row-major
#: (``index = y * width + x``).
PIXEL_ORDERS: Final = ("F", "C")
LABEL_VALUES: Final = ("good", "bad")
#: Units read from a dense footprint array at a time (bounds memory of dense footprints).
FOOTPRINT_BLOCK: Final = 32
#: ... and at most about this many bytes of them (a 480 x 752 float64 footprint is 2.9 MB).
FOOTPRINT_BLOCK_BYTES: Final = 32 << 20


# =========================================================================== video


@runtime_checkable
class VideoReader(Protocol):
    """A movie that can be read block by block.

    Attributes
    ----------
    path
        The video folder or file given in the manifest.
    files
        Every file the reader reads (for hashing), in reading order.
    format
        Reader name, e.g. ``"miniscope_avi"``.
    n_frames
        Number of frames.
    height, width
        Frame size in pixels.
    dtype
        Pixel dtype of the frames (``uint8`` for 8-bit miniscope cameras).
    fps
        Frame rate in Hz from the video's own metadata, or ``None``.
    timestamps_s
        Time of every frame in seconds relative to the first, or ``None``.
    """

    path: Path
    files: tuple[Path, ...]
    format: str
    n_frames: int
    height: int
    width: int
    dtype: np.dtype
    fps: float | None
    timestamps_s: np.ndarray | None

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield consecutive blocks of at most ``n_frames`` frames, ``(n, height, width)``."""
        ...


# =========================================================================== extraction


@dataclass(frozen=True)
class UnitLabels:
    """Good/bad labels that an extraction file carries (e.g. CaImAn ``idx_components``).

    Attributes
    ----------
    unit_ids
        ``(n,)`` int64 unit ids.
    labels
        ``"good"`` or ``"bad"`` per unit.
    source
        Where the labels come from, e.g. ``"caiman_idx_components"``; stored with them.
    reasons
        Artifact reason per unit, or ``None`` entries (unknown).
    """

    unit_ids: np.ndarray
    labels: tuple[str, ...]
    source: str
    reasons: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.unit_ids):
            raise ParameterError(
                f"{len(self.labels)} labels for {len(self.unit_ids)} unit ids",
                field="labels",
                fix="give one label per unit id",
            )
        if not self.reasons:
            object.__setattr__(self, "reasons", (None,) * len(self.labels))


#: :attr:`Extraction.c_raw_source` of an extraction without a raw trace: ``C_raw`` is the
#: denoised ``C`` (CNMF-E without ``C_raw``, Minian or CaImAn without ``YrA``), so trace
#: noise cannot be measured on it.
DENOISED_ONLY_SOURCE: Final = "C"


@dataclass(frozen=True, eq=False)
class Extraction:
    """Cell candidates of one session, as an extraction algorithm produced them.

    Attributes
    ----------
    A
        Footprints, ``scipy.sparse.csc_matrix`` ``(d1*d2, K)`` float32; the pixel index
        maps to ``(y, x)`` as :attr:`pixel_order` says.
    C, C_raw, S
        Denoised trace, raw trace and deconvolved activity, ``(K, T)`` float32 in the
        extraction's units (fluorescence; ``S`` in spike-rate units): NumPy arrays, or
        :class:`~cellsift.pipeline.readers.traces.LazyTraces` read from the file in
        blocks of units (MATLAB v7.3, HDF5, zarr); go through
        :func:`~cellsift.pipeline.readers.traces.iter_unit_blocks` to keep memory flat.
    unit_ids
        ``(K,)`` int64 unit ids, unique.
    d1, d2
        Frame height and width in pixels, or ``None`` if the file does not say.
    fps
        Frame rate in Hz stored with the extraction, or ``None``.
    pixel_order
        ``"F"`` (column-major, MATLAB) or ``"C"`` (row-major), see :data:`PIXEL_ORDERS`.
    extras
        Images ``(d1, d2)`` float32 that come with the extraction, e.g. ``"Cn"``.
    unit_vars
        Per-unit columns ``(K,)`` kept in the session dataset, e.g. CNMF-E ``tags``.
    labels
        Labels carried by the extraction file, each with its source.
    source_format
        Format name, e.g. ``"cnmfe_mat"``.
    c_raw_source
        What ``C_raw`` is, e.g. ``"C_raw"``, ``"C + YrA"``, ``"F - 0.7*Fneu"``, or
        :data:`DENOISED_ONLY_SOURCE` when the file has no raw trace.
    companion_video
        A video that belongs to the extraction (Suite2p ``data.bin``, an NWB photon
        series), used when the manifest's ``video`` is empty; or ``None``.
    companion_video_format, companion_video_dataset
        Reader and dataset of :attr:`companion_video`.
    tsub
        Temporal downsampling the extraction says it used (CNMF-E ``options.tsub``).
    ids_from_file
        Whether :attr:`unit_ids` were stored in the file (``False``: numbered by index).
    """

    A: sp.csc_matrix
    C: Traces
    C_raw: Traces
    S: Traces
    unit_ids: np.ndarray
    d1: int | None
    d2: int | None
    fps: float | None
    pixel_order: str = "F"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    unit_vars: dict[str, np.ndarray] = field(default_factory=dict)
    labels: tuple[UnitLabels, ...] = ()
    source_format: str = ""
    c_raw_source: str = "C_raw"
    companion_video: Path | None = None
    companion_video_format: str | None = None
    companion_video_dataset: str | None = None
    tsub: int | None = None
    ids_from_file: bool = True

    @property
    def n_units(self) -> int:
        """Number of units ``K``."""
        return int(self.C.shape[0])

    @property
    def n_frames(self) -> int:
        """Number of trace frames ``T``."""
        return int(self.C.shape[1])

    @property
    def dims(self) -> tuple[int, int] | None:
        """``(d1, d2)`` if both are known."""
        if self.d1 is None or self.d2 is None:
            return None
        return (int(self.d1), int(self.d2))


@runtime_checkable
class ExtractionReader(Protocol):
    """Reads one extraction file (or folder) into an :class:`Extraction`."""

    path: Path
    format: str

    def read(self) -> Extraction:
        """Read and check the file.

        Returns
        -------
        Extraction
            Footprints in the reader's pixel order (``"F"`` column-major for the MATLAB
            family, ``"C"`` row-major otherwise), traces ``(K, T)`` float32.

        Raises
        ------
        SessionNotFoundError
            The file or folder does not exist.
        InputFormatError
            The file cannot be read or its contents are wrong.
        """
        ...


# =========================================================================== helpers


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``exc`` as one short line: ``"Type: message"``."""
    text = " ".join(str(exc).split())[:limit]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def corrupt_file(
    path: Path,
    exc: BaseException,
    what: str,
    *,
    field_name: str | None = None,
    again: str = "copy or export it again",
) -> InputFormatError:
    """The error for a file a library cannot read: ``cannot read the <what> (<exc>)``.

    The fix reads ``the file is truncated or corrupt; <again>``.
    """
    return InputFormatError(
        f"cannot read the {what} ({one_line(exc)})",
        path=path,
        field=field_name,
        fix=f"the file is truncated or corrupt; {again}",
    )


def require_exists(path: Path, *, field_name: str, what: str) -> None:
    """Raise :class:`SessionNotFoundError` if ``path`` does not exist."""
    if not Path(path).exists():
        raise SessionNotFoundError(
            f"{what} does not exist", path=path, field=field_name, fix=f"check the {field_name} path"
        )


def require_folder(path: Path, *, expected: str, fix: str) -> None:
    """Raise unless the extraction ``path`` is an existing folder.

    Raises
    ------
    SessionNotFoundError
        ``path`` does not exist.
    InputFormatError
        ``path`` is a file: ``expected <expected>, got a file``, with ``fix``.
    """
    require_exists(path, field_name="extraction", what="extraction folder")
    if not path.is_dir():
        raise InputFormatError(f"expected {expected}, got a file", path=path, field="extraction", fix=fix)


def require_numeric(dtype: np.dtype, *, problem: str, path: Path, field_name: str, fix: str) -> None:
    """Raise :class:`InputFormatError` (``problem``, ``field_name``, ``fix``) unless ``dtype`` holds numbers."""
    if dtype.kind not in "biuf":
        raise InputFormatError(problem, path=path, field=field_name, fix=fix)


def frame_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a video serves its frames in: ``dtype``, with float64 read as float32."""
    return np.dtype(np.float32) if dtype == np.float64 else dtype


def finite_positive(value: Any) -> float | None:
    """``float(value)`` if it is a finite number > 0, else ``None``."""
    try:
        number = float(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _numeric_array(value: Any, *, name: str, path: Path, shape: str) -> np.ndarray:
    """``value`` as an array; raises (``save <name> as a numeric <shape>``) unless it holds numbers."""
    arr = np.asarray(value)
    require_numeric(
        arr.dtype,
        problem=f"{name} has dtype {arr.dtype}, expected numbers",
        path=path,
        field_name=name,
        fix=f"save {name} as a numeric {shape}",
    )
    return arr


def to_csc(matrix: Any, *, path: Path, name: str = "A") -> sp.csc_matrix:
    """Convert ``matrix`` to a float32 CSC matrix, raising a clear error if it is not numeric."""
    if sp.issparse(matrix):
        return sp.csc_matrix(matrix, dtype=np.float32)
    arr = _numeric_array(matrix, name=name, path=path, shape="matrix")
    return sp.csc_matrix(arr.astype(np.float32, copy=False))


def dense_to_csc(stack: np.ndarray) -> sp.csc_matrix:
    """``(K, h, w)`` footprints -> CSC ``(h*w, K)`` float32 with row-major (``"C"``) pixels.

    The same matrix as ``np.flatnonzero`` over the block cast to float32 (values that are
    zero in float32 are dropped; NaN is kept), found without casting the whole block: an
    integer view of the stored values finds the image rows holding any non-zero bit (one
    fast ``max`` pass; dense footprints are mostly zeros), and only those rows are cast to
    float32 and searched. Each unit's pixels are contiguous, so the non-zeros come out
    unit by unit, in pixel order (no transposed copy).
    """
    stack = np.asarray(stack)
    k = stack.shape[0]
    n_pixels = int(np.prod(stack.shape[1:], dtype=np.int64))
    if k == 0 or n_pixels == 0:
        return sp.csc_matrix((n_pixels, k), dtype=np.float32)
    width = int(stack.shape[-1]) if stack.ndim >= 2 else 1
    per_unit = n_pixels // width  # image rows of one footprint
    rows2d = np.ascontiguousarray(stack).reshape(k * per_unit, width)
    if rows2d.dtype.kind in "biuf" and rows2d.dtype.itemsize in (1, 2, 4, 8):
        bits = rows2d.view(f"u{rows2d.dtype.itemsize}")  # all bits zero: 0 (and 0 in float32)
        rows = np.flatnonzero(bits.max(axis=1))
    else:
        rows = np.arange(rows2d.shape[0])
    values = rows2d[rows].astype(np.float32)
    r, cols = np.nonzero(values)
    units, row_in_unit = np.divmod(rows[r], per_unit)
    indptr = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(units, minlength=k), out=indptr[1:])
    return sp.csc_matrix((values[r, cols], row_in_unit * width + cols, indptr), shape=(n_pixels, k))


def footprint_block_units(height: int, width: int, *, itemsize: int = 8) -> int:
    """Units of dense footprints to convert at a time: :data:`FOOTPRINT_BLOCK`, fewer for
    large frames so a block holds at most :data:`FOOTPRINT_BLOCK_BYTES` of values."""
    per_unit = max(1, height * width * itemsize)
    return max(1, min(FOOTPRINT_BLOCK, FOOTPRINT_BLOCK_BYTES // per_unit))


def as_traces(value: Any, *, name: str, n_units: int, path: Path) -> np.ndarray:
    """Return ``value`` as a C-contiguous float32 ``(K, T)`` array, handling squeezed shapes."""
    if sp.issparse(value):
        value = value.toarray()
    arr = _numeric_array(value, name=name, path=path, shape="K x T matrix")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:  # squeezed: one unit (1 x T) or one frame (K x 1)
        arr = arr[None, :] if n_units == 1 else arr[:, None]
    if arr.ndim != 2:
        raise InputFormatError(
            f"{name} has {arr.ndim} dimensions, expected units x frames",
            path=path,
            field=name,
            fix=f"save {name} as a K x T matrix",
        )
    return np.ascontiguousarray(arr)


def blocks_from_array(
    array: Any, n_frames: int, *, convert: Callable[[np.ndarray], np.ndarray] | None = None
) -> Iterator[np.ndarray]:
    """Yield fresh ``(n, h, w)`` blocks of an array-like indexed along axis 0.

    Parameters
    ----------
    array
        Anything sliceable along its first axis (NumPy array, memory map, h5py dataset).
    n_frames
        Frames per block (the last block may be shorter), ``>= 1``.
    convert
        Applied to each block (e.g. a dtype conversion), or ``None``.
    """
    if n_frames < 1:
        raise ParameterError(
            f"n_frames must be >= 1, got {n_frames}",
            field="n_frames",
            fix="read at least one frame per block",
        )
    total = int(array.shape[0])
    for start in range(0, total, n_frames):
        block = np.array(array[start : min(start + n_frames, total)])
        yield block if convert is None else convert(block)
