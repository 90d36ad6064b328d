"""Readers of raw session files: miniscope videos and cell extraction results.

Two small interfaces keep ingest independent of file formats:

* :class:`VideoReader` — frame count, frame size, dtype, frame rate and timestamps
  known after opening (headers only); frames come out block by block from
  :meth:`VideoReader.iter_blocks`, so a movie is never held in memory whole.
  Implemented by :class:`MiniscopeV4Reader` (a Miniscope V4 folder of ``0.avi``,
  ``1.avi``, ... with ``timeStamps.csv`` and ``metaData.json``, or one ``.avi``).
* :class:`ExtractionReader` — :meth:`ExtractionReader.read` returns an
  :class:`Extraction` (footprints, traces, unit ids). Implemented by
  :class:`CnmfeMatReader` (CNMF-E ``results`` struct in a MATLAB v5 or v7.3 ``.mat``).

Every problem with a file is raised as :class:`~cellsift.schemas.errors.InputFormatError`
(content) or :class:`~cellsift.schemas.errors.SessionNotFoundError` (missing), naming
the file, the field and the fix; library exceptions never escape.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from cellsift.schemas.errors import InputFormatError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "VideoReader",
    "MiniscopeV4Reader",
    "video_files",
    "open_video",
    "Extraction",
    "ExtractionReader",
    "CnmfeMatReader",
    "EXTRACTION_FORMATS",
    "detect_extraction_format",
    "open_extraction",
    "validate_extraction",
]

TIMESTAMPS_FILE: Final = "timeStamps.csv"
METADATA_FILE: Final = "metaData.json"

# =========================================================================== video


@runtime_checkable
class VideoReader(Protocol):
    """A movie that can be read block by block.

    Attributes
    ----------
    path
        The video folder or file.
    files
        Every file the reader reads (for hashing), in reading order.
    n_frames
        Number of frames.
    height, width
        Frame size in pixels.
    dtype
        Pixel dtype of the frames (``uint8`` for 8-bit miniscope cameras).
    fps
        Frame rate in Hz from the video's metadata, or ``None`` if it has none.
    timestamps_s
        Time of every frame in seconds relative to the first, or ``None``.
    """

    path: Path
    files: tuple[Path, ...]
    n_frames: int
    height: int
    width: int
    dtype: np.dtype
    fps: float | None
    timestamps_s: np.ndarray | None

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield consecutive blocks of at most ``n_frames`` frames, ``(n, height, width)``."""
        ...


def _natural_chunks(folder: Path) -> list[Path]:
    """Return the numbered AVI chunks of a Miniscope folder in order, checking for gaps."""
    avis = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".avi"]
    numbered = {int(p.stem): p for p in avis if p.stem.isdigit()}
    others = sorted(p.name for p in avis if not p.stem.isdigit())
    if not numbered:
        if len(avis) == 1:
            return avis
        raise InputFormatError(
            "no numbered AVI chunks (0.avi, 1.avi, ...) in the video folder"
            + (f"; found {', '.join(others)}" if others else ""),
            path=folder,
            field="video",
            fix="point the manifest's video column at the Miniscope folder holding 0.avi, 1.avi, ...",
        )
    if others:
        logger.warning("%s: ignoring AVI files that are not numbered chunks: %s", folder, others)
    indices = sorted(numbered)
    missing = sorted(set(range(indices[-1] + 1)) - set(indices))
    if missing:
        names = ", ".join(f"{i}.avi" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputFormatError(
            f"video chunk {names} is missing (found {len(indices)} chunks up to {indices[-1]}.avi)",
            path=folder / f"{missing[0]}.avi",
            field="video",
            fix="copy the missing chunk from the acquisition computer, or remove the later chunks",
        )
    return [numbered[i] for i in indices]


def video_files(path: Path) -> tuple[list[Path], list[Path]]:
    """List a video's files without decoding anything.

    Parameters
    ----------
    path
        A Miniscope V4 folder (``0.avi``, ``1.avi``, ...), the session folder above one
        (one sub-folder holding the AVIs, as the Miniscope software nests it), or one
        ``.avi`` file.

    Returns
    -------
    chunks
        The AVI files in frame order.
    extras
        ``timeStamps.csv`` and ``metaData.json`` if present.

    Raises
    ------
    SessionNotFoundError
        If ``path`` does not exist.
    InputFormatError
        If the folder holds no AVI chunks or a chunk is missing.
    """
    path = Path(path)
    if not path.exists():
        raise SessionNotFoundError(
            "video does not exist", path=path, field="video", fix="check the video path"
        )
    if path.is_file():
        if path.suffix.lower() != ".avi":
            raise InputFormatError(
                f"unsupported video file type '{path.suffix}'",
                path=path,
                field="video",
                fix="give a Miniscope V4 folder of .avi chunks or one .avi file",
            )
        return [path], []
    folder = path
    if not any(p.suffix.lower() == ".avi" for p in folder.iterdir()):
        subs = [p for p in folder.iterdir() if p.is_dir() and any(q.suffix.lower() == ".avi" for q in p.iterdir())]
        if len(subs) == 1:
            folder = subs[0]
            logger.debug("video folder %s: using sub-folder %s", path, folder.name)
    chunks = _natural_chunks(folder)
    extras = [folder / name for name in (TIMESTAMPS_FILE, METADATA_FILE) if (folder / name).is_file()]
    return chunks, extras


def _av_error(path: Path, exc: BaseException, what: str) -> InputFormatError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return InputFormatError(
        f"cannot {what} the video chunk ({reason})",
        path=path,
        field="video",
        fix="the file is corrupt or not a video; re-export or re-copy it from the acquisition computer",
    )


def _parse_fps(value: Any) -> float | None:
    """Read ``frameRate`` as Miniscope software writes it: ``20``, ``"20"``, ``"20FPS"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fps = float(value)
    elif isinstance(value, str):
        match = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*(fps)?\s*$", value, flags=re.IGNORECASE)
        if match is None:
            return None
        fps = float(match.group(1))
    else:
        return None
    return fps if math.isfinite(fps) and fps > 0 else None


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFormatError(
            f"cannot read the Miniscope metadata ({type(exc).__name__}: {exc})",
            path=path,
            fix="repair the JSON or delete metaData.json (then give fps in the manifest)",
        ) from None
    if not isinstance(meta, dict):
        raise InputFormatError(
            "metadata is not a JSON object", path=path, fix="repair or delete metaData.json"
        )
    return meta


def _read_timestamps(path: Path) -> np.ndarray:
    """Read ``Time Stamp (ms)`` of ``timeStamps.csv``; return seconds relative to the first."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            column = next((i for i, h in enumerate(header) if h.startswith("time stamp") or h.startswith("timestamp")), None)
            if column is None:
                raise InputFormatError(
                    f"no 'Time Stamp (ms)' column (header: {', '.join(header) or 'empty'})",
                    path=path,
                    field="Time Stamp (ms)",
                    fix="write the Miniscope header 'Frame Number,Time Stamp (ms),Buffer Index' or delete the file",
                )
            values = [float(row[column]) for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError) as exc:
        raise InputFormatError(
            f"cannot read the timestamps ({type(exc).__name__}: {exc})",
            path=path,
            field="Time Stamp (ms)",
            fix="repair the file or delete it (frame times then come from fps)",
        ) from None
    ms = np.asarray(values, dtype=np.float64)
    return (ms - ms[0]) / 1000.0 if ms.size else ms


_GRAY8: Final = {"gray", "gray8", "pal8"}
_GRAY16: Final = {"gray16le", "gray16be", "gray10le", "gray12le", "gray14le", "gray10be", "gray12be"}


class MiniscopeV4Reader:
    """A Miniscope V4 recording: numbered AVI chunks plus timestamps and metadata.

    Opening reads only the container headers; frames are decoded by
    :meth:`iter_blocks`, one chunk file at a time.

    Parameters
    ----------
    path
        The Miniscope folder, the session folder above it, or a single ``.avi`` file.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing folder, missing chunk, unreadable chunk, chunks of different sizes,
        unreadable ``timeStamps.csv`` / ``metaData.json``.
    """

    def __init__(self, path: Path | str) -> None:
        import av

        self.path = Path(path)
        chunks, extras = video_files(self.path)
        self.chunks: tuple[Path, ...] = tuple(chunks)
        self.files: tuple[Path, ...] = tuple(chunks) + tuple(extras)
        counts: list[int] = []
        size: tuple[int, int] | None = None
        pix_fmt = ""
        self.container_fps: float | None = None
        for chunk in self.chunks:
            try:
                with av.open(str(chunk)) as container:
                    if not container.streams.video:
                        raise InputFormatError(
                            "the file has no video stream",
                            path=chunk,
                            field="video",
                            fix="re-export the chunk from the acquisition computer",
                        )
                    stream = container.streams.video[0]
                    n = int(stream.frames or 0)
                    if n <= 0:  # header without a frame count: count packets (no decoding)
                        n = sum(1 for packet in container.demux(stream) if packet.size)
                    this_size = (int(stream.height), int(stream.width))
                    this_fmt = stream.format.name if stream.format is not None else ""
                    if self.container_fps is None and stream.average_rate:
                        self.container_fps = float(stream.average_rate)
            except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
                if isinstance(exc, InputFormatError):
                    raise
                raise _av_error(chunk, exc, "open") from None
            if size is None:
                size, pix_fmt = this_size, this_fmt
            elif this_size != size:
                raise InputFormatError(
                    f"frame size {this_size[0]}x{this_size[1]} differs from the first chunk's "
                    f"{size[0]}x{size[1]}",
                    path=chunk,
                    field="video",
                    fix="all chunks of a session must come from one recording",
                )
            counts.append(n)
        if size is None or sum(counts) == 0:
            raise InputFormatError(
                "the video has no frames", path=self.path, field="video", fix="check the recording"
            )
        self.chunk_frames: tuple[int, ...] = tuple(counts)
        self.n_frames: int = int(sum(counts))
        self.height, self.width = size
        self.pix_fmt = pix_fmt
        if pix_fmt in _GRAY8:
            self.dtype = np.dtype(np.uint8)
            self._convert: str | None = None
        elif pix_fmt in _GRAY16:
            self.dtype = np.dtype(np.uint16)
            self._convert = None if pix_fmt == "gray16le" else "gray16le"
        else:
            logger.info("%s: pixel format %s is converted to 8-bit gray", self.path, pix_fmt)
            self.dtype = np.dtype(np.uint8)
            self._convert = "gray"

        folder = self.chunks[0].parent
        self.metadata: dict[str, Any] = {}
        meta_path = folder / METADATA_FILE
        self.fps: float | None = None
        if meta_path.is_file():
            self.metadata = _read_metadata(meta_path)
            self.fps = _parse_fps(self.metadata.get("frameRate"))
            if "frameRate" in self.metadata and self.fps is None:
                logger.warning(
                    "%s: cannot read frameRate %r; fps comes from elsewhere",
                    meta_path,
                    self.metadata.get("frameRate"),
                )
            roi = self.metadata.get("ROI")
            if isinstance(roi, dict):
                roi_size = (roi.get("height"), roi.get("width"))
                if None not in roi_size and tuple(int(v) for v in roi_size) != size:  # type: ignore[arg-type]
                    logger.warning(
                        "%s: ROI %sx%s differs from the AVI frame size %dx%d; using the AVI size",
                        meta_path,
                        roi_size[0],
                        roi_size[1],
                        *size,
                    )
        self.timestamps_s: np.ndarray | None = None
        ts_path = folder / TIMESTAMPS_FILE
        if ts_path.is_file():
            ts = _read_timestamps(ts_path)
            if len(ts) != self.n_frames:
                logger.warning(
                    "%s: %d timestamps for %d frames; frame times come from fps instead",
                    ts_path,
                    len(ts),
                    self.n_frames,
                )
            elif not (np.all(np.isfinite(ts)) and np.all(np.diff(ts) >= 0)):
                logger.warning("%s: timestamps are not increasing; frame times come from fps instead", ts_path)
            else:
                self.timestamps_s = ts
        logger.debug(
            "video %s: %d chunks, %d frames of %dx%d %s",
            self.path,
            len(self.chunks),
            self.n_frames,
            self.height,
            self.width,
            self.dtype,
        )

    def __repr__(self) -> str:
        return (
            f"MiniscopeV4Reader({str(self.path)!r}, n_frames={self.n_frames}, "
            f"height={self.height}, width={self.width})"
        )

    def _frames(self) -> Iterator[np.ndarray]:
        import av

        for chunk, expected in zip(self.chunks, self.chunk_frames, strict=True):
            decoded = 0
            try:
                with av.open(str(chunk)) as container:
                    stream = container.streams.video[0]
                    stream.thread_type = "AUTO"
                    for frame in container.decode(stream):
                        if decoded >= expected:
                            raise InputFormatError(
                                f"chunk decodes to more frames than its header's {expected}",
                                path=chunk,
                                field="video",
                                fix="re-export the chunk; its AVI index is inconsistent",
                            )
                        image = (
                            frame.to_ndarray()
                            if self._convert is None
                            else frame.to_ndarray(format=self._convert)
                        )
                        if image.shape != (self.height, self.width):
                            raise InputFormatError(
                                f"frame {decoded} has shape {image.shape}, expected "
                                f"{(self.height, self.width)}",
                                path=chunk,
                                field="video",
                                fix="re-export the chunk",
                            )
                        decoded += 1
                        yield image
            except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
                if isinstance(exc, InputFormatError):
                    raise
                raise _av_error(chunk, exc, "decode") from None
            if decoded != expected:
                raise InputFormatError(
                    f"chunk is truncated or corrupt: {decoded} frames decode, its header says {expected}",
                    path=chunk,
                    field="video",
                    fix="re-copy the chunk from the acquisition computer",
                )

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Decode the movie in blocks of at most ``n_frames`` frames.

        Parameters
        ----------
        n_frames
            Block length in frames (a block may span chunk files; the last is shorter).

        Yields
        ------
        numpy.ndarray
            ``(n, height, width)`` frames of :attr:`dtype`, a fresh array per block.

        Raises
        ------
        InputFormatError
            If a chunk cannot be decoded or holds fewer frames than its header says.
        """
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        block = np.empty((min(n_frames, self.n_frames), self.height, self.width), dtype=self.dtype)
        filled = 0
        for image in self._frames():
            block[filled] = image
            filled += 1
            if filled == len(block):
                yield block
                filled = 0
                block = np.empty_like(block)
        if filled:
            yield block[:filled]


def open_video(path: Path | str) -> VideoReader:
    """Open a video for block-wise reading (a Miniscope V4 folder or one ``.avi``)."""
    return MiniscopeV4Reader(path)


# =========================================================================== extraction


@dataclass(frozen=True, eq=False)
class Extraction:
    """Cell candidates of one session, as an extraction algorithm produced them.

    Attributes
    ----------
    A
        Footprints: ``scipy.sparse.csc_matrix`` of shape ``(d1*d2, K)`` with pixels in
        MATLAB column-major order (a column reshaped with ``order='F'`` to ``(d1, d2)``),
        or a dense array already shaped ``(K, d1, d2)``. float32.
    C, C_raw, S
        Denoised trace, raw trace and deconvolved activity, ``(K, T)`` float32
        (fluorescence in the extraction's units; ``S`` in spike-rate units).
    unit_ids
        ``(K,)`` int64 unit ids (CNMF-E ``ids``; ``1..K`` if absent).
    d1, d2
        Frame height and width in pixels, or ``None`` if the file does not say.
    fps
        Frame rate in Hz stored with the extraction, or ``None``.
    extras
        Optional images, e.g. ``"Cn"`` (correlation image, ``(d1, d2)`` float32).
    source_format
        Format name, e.g. ``"cnmfe_mat"``.
    """

    A: sp.csc_matrix | np.ndarray
    C: np.ndarray
    C_raw: np.ndarray
    S: np.ndarray
    unit_ids: np.ndarray
    d1: int | None
    d2: int | None
    fps: float | None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    source_format: str = ""

    @property
    def n_units(self) -> int:
        return int(self.C.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.C.shape[1])


@runtime_checkable
class ExtractionReader(Protocol):
    """Reads one extraction file into an :class:`Extraction`."""

    path: Path
    format: str

    def read(self) -> Extraction:
        """Read and check the file."""
        ...


def validate_extraction(ext: Extraction, *, path: Path) -> None:
    """Check an extraction's internal consistency (shapes, ids, finite values).

    Raises
    ------
    InputFormatError
        Naming ``path`` and the wrong field.
    """
    k, t = ext.C.shape
    if isinstance(ext.A, np.ndarray):
        k_a = ext.A.shape[0]
    else:
        k_a = ext.A.shape[1]
    if k_a != k:
        raise InputFormatError(
            f"A has {k_a} units but C has {k} (C must be units x frames)",
            path=path,
            field="A",
            fix="export A and C from the same extraction run",
        )
    for name in ("C_raw", "S"):
        shape = getattr(ext, name).shape
        if shape != (k, t):
            raise InputFormatError(
                f"{name} has shape {shape}, expected {(k, t)} like C",
                path=path,
                field=name,
                fix="export all traces from the same extraction run",
            )
    if ext.unit_ids.shape != (k,):
        raise InputFormatError(
            f"{ext.unit_ids.size} unit ids for {k} units",
            path=path,
            field="ids",
            fix="export ids with the same units as A and C, or drop ids to number units 1..K",
        )
    if len(np.unique(ext.unit_ids)) != k:
        raise InputFormatError(
            "unit ids are not unique", path=path, field="ids", fix="renumber the units"
        )
    if ext.d1 is not None and ext.d2 is not None and not isinstance(ext.A, np.ndarray):
        if ext.A.shape[0] != ext.d1 * ext.d2:
            raise InputFormatError(
                f"A has {ext.A.shape[0]} pixels per footprint but options.d1*d2 = "
                f"{ext.d1}*{ext.d2} = {ext.d1 * ext.d2}",
                path=path,
                field="A",
                fix="check options.d1/d2 (height/width) match the footprints",
            )
    for name in ("C", "C_raw", "S"):
        values = getattr(ext, name)
        if not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values).all(axis=1)))
            raise InputFormatError(
                f"contains NaN or Inf ({bad} of {k} units affected)",
                path=path,
                field=name,
                fix="re-run the extraction or remove the affected units",
            )
    a_values = ext.A if isinstance(ext.A, np.ndarray) else ext.A.data
    if not np.isfinite(a_values).all():
        raise InputFormatError(
            "footprints contain NaN or Inf",
            path=path,
            field="A",
            fix="re-run the extraction or remove the affected units",
        )


# --------------------------------------------------------------------------- MATLAB access


class _Missing:
    pass


_MISSING: Final = _Missing()


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


class _H5Struct:
    """Lazy view of a MATLAB struct stored in an HDF5 (v7.3) group."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def fields(self) -> list[str]:
        return [k for k in self.group.keys() if not k.startswith("#")]

    def get(self, name: str) -> Any:
        if name not in self.group:
            return _MISSING
        return _h5_value(self.group[name])


def _h5_value(obj: Any) -> Any:
    """Convert one HDF5 object written by MATLAB v7.3 to numpy / scipy / _H5Struct."""
    import h5py

    def attr(name: str) -> Any:
        value = obj.attrs.get(name)
        if isinstance(value, bytes):
            return value.decode("ascii", "replace")
        if isinstance(value, np.ndarray) and value.size == 1:
            return value.reshape(()).item()
        return value

    mclass = attr("MATLAB_class")
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            n_rows = int(attr("MATLAB_sparse"))
            jc = np.asarray(obj["jc"][()], dtype=np.int64).ravel()
            n_cols = len(jc) - 1
            if "data" in obj and "ir" in obj:
                data = np.asarray(obj["data"][()]).ravel()
                ir = np.asarray(obj["ir"][()], dtype=np.int64).ravel()
            else:  # an all-zero sparse matrix has no data/ir
                data = np.zeros(0)
                ir = np.zeros(0, dtype=np.int64)
            return sp.csc_matrix((data, ir, jc), shape=(n_rows, n_cols))
        return _H5Struct(obj)
    if attr("MATLAB_empty"):
        return np.zeros((0,))
    if mclass == "cell" or obj.dtype.kind == "O":
        return _MISSING  # cell arrays are not needed
    value = obj[()]
    if isinstance(value, np.ndarray):
        value = value.T  # MATLAB writes column-major: HDF5 holds the transpose
        if np.iscomplexobj(value) or value.dtype.names:
            return _MISSING
    if mclass == "char":
        return "".join(chr(c) for c in np.asarray(value).ravel(order="F"))
    return _squeeze(value)


def _squeeze(value: Any) -> Any:
    """Mimic ``scipy.io.loadmat(squeeze_me=True)``: drop unit dims, 1x1 -> scalar."""
    if isinstance(value, np.ndarray):
        value = value.squeeze()
        if value.ndim == 0:
            return value.item()
    return value


def _get(struct: Any, name: str) -> Any:
    """Field ``name`` of a MATLAB struct (scipy ``mat_struct``, dict or :class:`_H5Struct`)."""
    if struct is None or struct is _MISSING:
        return _MISSING
    if isinstance(struct, _H5Struct):
        return struct.get(name)
    if isinstance(struct, dict):
        return struct.get(name, _MISSING)
    return getattr(struct, name, _MISSING)


def _fields(struct: Any) -> list[str]:
    if isinstance(struct, _H5Struct):
        return struct.fields()
    if isinstance(struct, dict):
        return list(struct)
    return list(getattr(struct, "_fieldnames", []) or [])


def _is_empty(value: Any) -> bool:
    if value is _MISSING or value is None:
        return True
    if sp.issparse(value):
        return value.shape[0] == 0 and value.shape[1] == 0
    if isinstance(value, np.ndarray):
        return value.size == 0
    return False


def _scalar(value: Any) -> float | None:
    if _is_empty(value):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if arr.size != 1 or not math.isfinite(arr[0]):
        return None
    return float(arr[0])


# --------------------------------------------------------------------------- CNMF-E


EXTRACTION_FORMATS: Final = ("cnmfe_mat",)
_FORMAT_ALIASES: Final = {"cnmfe_mat": "cnmfe_mat", "cnmfe": "cnmfe_mat", "cnmf-e": "cnmfe_mat", "cnmf_e": "cnmfe_mat"}


class CnmfeMatReader:
    """CNMF-E results saved from MATLAB (``results = neuron.obj2struct(); save(...)``).

    Reads MATLAB v5 files with :func:`scipy.io.loadmat` and v7.3 (HDF5) files with
    h5py. The struct is taken from the variable ``results`` (or, if absent, from the
    file's top level when it holds ``A`` and ``C`` directly).

    Fields used: ``A`` ((d1*d2) x K, sparse or dense, column-major pixels), ``C``,
    ``C_raw``, ``S`` (K x T), ``options.d1``/``options.d2``, ``Fs`` (Hz), ``ids`` and
    ``Cn``. A missing ``C_raw`` is replaced by ``C``; a missing ``S`` by zeros.

    Parameters
    ----------
    path
        The ``.mat`` file.
    """

    format: str = "cnmfe_mat"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"CnmfeMatReader({str(self.path)!r})"

    def _corrupt(self, exc: BaseException) -> InputFormatError:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return InputFormatError(
            f"cannot read the MATLAB file ({type(exc).__name__}: {reason})",
            path=self.path,
            fix="the file is truncated or corrupt; save the CNMF-E results again",
        )

    def read(self) -> Extraction:
        """Read, normalise and check the CNMF-E results.

        Returns
        -------
        Extraction
            ``A`` as a float32 CSC matrix ``(d1*d2, K)``; traces float32 ``(K, T)``.

        Raises
        ------
        SessionNotFoundError
            If the file does not exist.
        InputFormatError
            Unreadable file, missing ``results``/``A``/``C``, inconsistent shapes,
            NaN/Inf values.
        """
        if not self.path.is_file():
            raise SessionNotFoundError(
                "extraction file does not exist",
                path=self.path,
                field="extraction",
                fix="check the extraction path",
            )
        if _is_hdf5(self.path):
            return self._read_h5()
        return self._read_v5()

    def _read_v5(self) -> Extraction:
        import scipy.io

        try:
            names = [name for name, _, _ in scipy.io.whosmat(str(self.path))]
            wanted = ["results"] if "results" in names else None
            mat = scipy.io.loadmat(
                str(self.path), struct_as_record=False, squeeze_me=True, variable_names=wanted
            )
        except Exception as exc:  # noqa: BLE001 - scipy raises many types on corrupt files
            raise self._corrupt(exc) from None
        struct: Any = mat.get("results", _MISSING)
        if struct is _MISSING:
            top = {k: v for k, v in mat.items() if not k.startswith("__")}
            if "A" in top and "C" in top:
                struct = top
            else:
                raise InputFormatError(
                    f"no variable 'results' (variables: {', '.join(sorted(top)) or 'none'})",
                    path=self.path,
                    field="results",
                    fix="save CNMF-E results with 'results = neuron.obj2struct(); save(file, \"results\")'",
                )
        try:
            return self._from_struct(struct)
        except InputFormatError:
            raise
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise self._corrupt(exc) from None

    def _read_h5(self) -> Extraction:
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                if "results" in handle:
                    struct: Any = _H5Struct(handle["results"])
                elif "A" in handle and "C" in handle:
                    struct = _H5Struct(handle["/"])
                else:
                    raise InputFormatError(
                        f"no variable 'results' (variables: {', '.join(sorted(k for k in handle if not k.startswith('#'))) or 'none'})",
                        path=self.path,
                        field="results",
                        fix="save CNMF-E results with 'results = neuron.obj2struct(); save(file, \"results\", \"-v7.3\")'",
                    )
                return self._from_struct(struct)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError/RuntimeError
            raise self._corrupt(exc) from None

    def _from_struct(self, struct: Any) -> Extraction:
        path = self.path
        a_raw = _get(struct, "A")
        c_raw_in = _get(struct, "C")
        for name, value in (("A", a_raw), ("C", c_raw_in)):
            if _is_empty(value):
                raise InputFormatError(
                    f"results has no '{name}' (fields: {', '.join(_fields(struct)) or 'none'})",
                    path=path,
                    field=name,
                    fix="save the CNMF-E results after running the extraction",
                )
        options = _get(struct, "options")
        d1 = _scalar(_get(options, "d1"))
        d2 = _scalar(_get(options, "d2"))
        d1_int = int(d1) if d1 is not None else None
        d2_int = int(d2) if d2 is not None else None

        # footprints -> csc (n_pixels, K) float32
        if sp.issparse(a_raw):
            A = sp.csc_matrix(a_raw, dtype=np.float32)
        else:
            a_arr = np.asarray(a_raw)
            if a_arr.dtype.kind not in "biuf":
                raise InputFormatError(
                    f"A has dtype {a_arr.dtype}, expected numbers", path=path, field="A", fix="save A as a numeric matrix"
                )
            if a_arr.ndim == 1:  # one unit, squeezed
                a_arr = a_arr[:, None]
            elif a_arr.ndim == 3:  # d1 x d2 x K
                a_arr = a_arr.reshape(-1, a_arr.shape[2], order="F")
            elif a_arr.ndim != 2:
                raise InputFormatError(
                    f"A has {a_arr.ndim} dimensions, expected pixels x units",
                    path=path,
                    field="A",
                    fix="save A as a (d1*d2) x K matrix",
                )
            A = sp.csc_matrix(a_arr.astype(np.float32, copy=False))
        n_units = A.shape[1]
        if n_units == 0:
            raise InputFormatError(
                "the extraction has no units (A has 0 columns)",
                path=path,
                field="A",
                fix="re-run the extraction; a session needs at least one cell candidate",
            )

        def traces(name: str, value: Any) -> np.ndarray:
            if sp.issparse(value):
                value = value.toarray()
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise InputFormatError(
                    f"{name} has dtype {arr.dtype}, expected numbers",
                    path=path,
                    field=name,
                    fix=f"save {name} as a numeric K x T matrix",
                )
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

        C = traces("C", c_raw_in)
        c_raw_value = _get(struct, "C_raw")
        if _is_empty(c_raw_value):
            logger.info("%s: no C_raw; using C as the raw trace", path)
            C_raw = C
        else:
            C_raw = traces("C_raw", c_raw_value)
        s_value = _get(struct, "S")
        if _is_empty(s_value):
            logger.warning("%s: no S (deconvolved activity); writing zeros", path)
            S = np.zeros_like(C)
        else:
            S = traces("S", s_value)

        ids_value = _get(struct, "ids")
        if _is_empty(ids_value):
            unit_ids = np.arange(1, n_units + 1, dtype=np.int64)
        else:
            ids = np.atleast_1d(np.asarray(ids_value)).ravel()
            if ids.dtype.kind not in "biuf" or not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
                raise InputFormatError(
                    "unit ids are not whole numbers",
                    path=path,
                    field="ids",
                    fix="store integer unit ids, or drop 'ids' to number units 1..K",
                )
            unit_ids = ids.astype(np.int64)

        fps = _scalar(_get(struct, "Fs"))
        if fps is None:
            fps = _scalar(_get(options, "Fs")) or _scalar(_get(options, "fs"))
        if fps is not None and fps <= 0:
            fps = None

        extras: dict[str, np.ndarray] = {}
        cn = _get(struct, "Cn")
        if not _is_empty(cn) and not isinstance(cn, (_H5Struct, str)):
            cn_arr = np.asarray(cn, dtype=np.float32) if np.asarray(cn).dtype.kind in "biuf" else None
            if cn_arr is not None and d1_int and d2_int and cn_arr.shape == (d1_int, d2_int):
                extras["Cn"] = cn_arr
            elif cn_arr is not None:
                logger.debug("%s: ignoring Cn of shape %s", path, cn_arr.shape)

        ext = Extraction(
            A=A,
            C=C,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=d1_int,
            d2=d2_int,
            fps=fps,
            extras=extras,
            source_format=self.format,
        )
        validate_extraction(ext, path=path)
        logger.debug("extraction %s: %d units x %d frames, d=%sx%s", path, ext.n_units, ext.n_frames, d1_int, d2_int)
        return ext


def detect_extraction_format(path: Path) -> str:
    """Return the extraction format of ``path`` from its name (``.mat`` -> ``cnmfe_mat``)."""
    if Path(path).suffix.lower() == ".mat":
        return "cnmfe_mat"
    raise InputFormatError(
        f"cannot tell the extraction format from the file name '{Path(path).name}'",
        path=path,
        field="format",
        fix=f"give a 'format' column in the manifest (one of: {', '.join(EXTRACTION_FORMATS)})",
    )


def open_extraction(path: Path | str, format: str | None = None) -> ExtractionReader:  # noqa: A002
    """Return the reader for an extraction file.

    Parameters
    ----------
    path
        The extraction file.
    format
        ``"cnmfe_mat"`` (aliases ``"cnmfe"``, ``"cnmf-e"``), or ``None`` to detect it.

    Raises
    ------
    InputFormatError
        Unknown format.
    """
    path = Path(path)
    name = detect_extraction_format(path) if format is None else _FORMAT_ALIASES.get(format.strip().lower())
    if name is None:
        raise InputFormatError(
            f"unknown extraction format '{format}'",
            path=path,
            field="format",
            fix=f"use one of: {', '.join(EXTRACTION_FORMATS)}",
        )
    return CnmfeMatReader(path)
