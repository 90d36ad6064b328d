"""Video readers: one class per format, all streaming frames block by block.

========================  ===================================================================
format                    what ``video`` points at
========================  ===================================================================
``miniscope_avi``         a Miniscope V4 folder (``0.avi``, ``1.avi``, ... + ``timeStamps.csv``,
                          ``metaData.json``), a Miniscope V3 folder (``msCam1.avi``, ... +
                          ``timestamp.dat``), any folder of numbered AVIs (``part1.avi``, ...),
                          a session folder one or two levels above one, or one ``.avi``
``tiff``                  a multi-page TIFF or BigTIFF (memory-mapped when uncompressed), or a
                          folder of numbered TIFF parts
``hdf5``                  an HDF5 file or MATLAB ``.mat`` holding a 3-D dataset (``Y``, ``mov``
                          or the manifest's ``video_dataset``)
``suite2p_bin``           Suite2p's registered ``data.bin`` (int16, memory-mapped) beside ``ops.npy``
``nwb``                   the ``OnePhotonSeries`` / ``TwoPhotonSeries`` of an NWB file
========================  ===================================================================

Opening a reader reads headers only; :meth:`iter_blocks` decodes at most one block of
frames at a time, so memory is bounded by the block size whatever the session length.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.schemas.errors import InputFormatError, SessionNotFoundError

from cellsift.pipeline.readers.base import finite_positive, natural_key, numbered_series, one_line, require_exists
from cellsift.pipeline.readers.matlab import is_hdf5, is_matlab_hdf5

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_FORMATS",
    "MiniscopeAviReader",
    "TiffStackReader",
    "Hdf5VideoReader",
    "Suite2pBinReader",
    "NwbVideoReader",
    "detect_video_format",
    "list_video_files",
    "open_video",
    "parse_fps",
    "read_suite2p_ops",
]

VIDEO_FORMATS: Final = ("miniscope_avi", "tiff", "hdf5", "suite2p_bin", "nwb")
_VIDEO_ALIASES: Final = {
    "miniscope_avi": "miniscope_avi",
    "avi": "miniscope_avi",
    "miniscope": "miniscope_avi",
    "miniscope_v4": "miniscope_avi",
    "miniscope_v3": "miniscope_avi",
    "v4": "miniscope_avi",
    "v3": "miniscope_avi",
    "tiff": "tiff",
    "tif": "tiff",
    "bigtiff": "tiff",
    "hdf5": "hdf5",
    "h5": "hdf5",
    "mat": "hdf5",
    "suite2p_bin": "suite2p_bin",
    "suite2p": "suite2p_bin",
    "bin": "suite2p_bin",
    "nwb": "nwb",
}

TIMESTAMPS_V4: Final = "timeStamps.csv"
METADATA_V4: Final = "metaData.json"
TIMESTAMPS_V3: Final = "timestamp.dat"
_AVI: Final = (".avi",)
_TIFF: Final = (".tif", ".tiff")
#: Dataset names tried, in order, in an HDF5 / .mat video.
HDF5_VIDEO_DATASETS: Final = ("Y", "mov", "Yr", "data", "images", "movie")


def _unsupported(path: Path, kind: str) -> InputFormatError:
    return InputFormatError(
        f"unsupported video {kind} '{path.suffix or path.name}'",
        path=path,
        field="video",
        fix=f"give a video in one of the formats {', '.join(VIDEO_FORMATS)} (see docs/formats.md), "
        "or set video_format in the manifest",
    )


def _blocks_from_array(array: Any, n_frames: int, *, convert: Any = None) -> Iterator[np.ndarray]:
    """Yield fresh ``(n, h, w)`` blocks of an array-like indexed along axis 0."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    total = int(array.shape[0])
    for start in range(0, total, n_frames):
        block = np.array(array[start : min(start + n_frames, total)])
        yield block if convert is None else convert(block)


# =========================================================================== AVI


def parse_fps(value: Any) -> float | None:
    """Read ``frameRate`` as the Miniscope software writes it: ``20``, ``"20"``, ``"20FPS"``."""
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFormatError(
            f"cannot read the Miniscope metadata ({one_line(exc)})",
            path=path,
            fix="repair the JSON or delete metaData.json (then give fps in the manifest)",
        ) from None
    if not isinstance(meta, dict):
        raise InputFormatError(
            "metadata is not a JSON object", path=path, fix="repair or delete metaData.json"
        )
    return meta


def _start_time(meta: dict[str, Any]) -> str | None:
    """Recording start from a Miniscope ``metaData.json``: the nested ``recordingStartTime``
    mapping (newer DAQ software) or the same keys at the top level (older)."""
    info = meta.get("recordingStartTime", meta)
    if not isinstance(info, dict):
        return None
    keys = ("year", "month", "day", "hour", "minute", "second")
    if not all(k in info for k in keys):
        return None
    try:
        when = datetime(*(int(info[k]) for k in keys), microsecond=int(info.get("msec", 0)) * 1000)
    except (TypeError, ValueError):
        return None
    return when.isoformat(timespec="milliseconds")


def _read_timestamps_v4(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``Time Stamp (ms)`` (and ``Frame Number`` if present) of ``timeStamps.csv``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            column = next(
                (i for i, h in enumerate(header) if h.startswith(("time stamp", "timestamp"))), None
            )
            frame_col = next((i for i, h in enumerate(header) if h.startswith("frame")), None)
            if column is None:
                raise InputFormatError(
                    f"no 'Time Stamp (ms)' column (header: {', '.join(header) or 'empty'})",
                    path=path,
                    field="Time Stamp (ms)",
                    fix="write the Miniscope header 'Frame Number,Time Stamp (ms),Buffer Index' or delete the file",
                )
            rows = [row for row in reader if row and any(c.strip() for c in row)]
            values = [float(row[column]) for row in rows]
            frames = [float(row[frame_col]) for row in rows] if frame_col is not None else None
    except InputFormatError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError) as exc:
        raise InputFormatError(
            f"cannot read the timestamps ({one_line(exc)})",
            path=path,
            field="Time Stamp (ms)",
            fix="repair the file or delete it (frame times then come from fps)",
        ) from None
    return np.asarray(values, dtype=np.float64), (None if frames is None else np.asarray(frames))


def _read_timestamps_v3(path: Path, n_frames: int) -> np.ndarray | None:
    """``sysClock`` (ms) of the camera in ``timestamp.dat`` whose frame count is ``n_frames``.

    Miniscope V3 DAQ software writes one tab-separated line per frame of every camera
    (``camNum  frameNum  sysClock  buffer``); the first ``sysClock`` of a camera is not
    a real time and is replaced by extrapolation.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = [line.split() for line in handle if line.strip()]
        header = [h.lower() for h in lines[0]]
        cam_col, clock_col = header.index("camnum"), header.index("sysclock")
        cams = np.asarray([float(row[cam_col]) for row in lines[1:]])
        clock = np.asarray([float(row[clock_col]) for row in lines[1:]])
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise InputFormatError(
            f"cannot read the Miniscope V3 timestamps ({one_line(exc)})",
            path=path,
            field="timestamp.dat",
            fix="repair the file (header 'camNum frameNum sysClock buffer') or delete it",
        ) from None
    matching = [cam for cam in np.unique(cams) if int(np.sum(cams == cam)) == n_frames]
    if len(matching) != 1:
        counts = {int(c): int(np.sum(cams == c)) for c in np.unique(cams)}
        logger.warning(
            "%s: no single camera has %d frames (frames per camera: %s); frame times come from fps",
            path,
            n_frames,
            counts,
        )
        return None
    ms = clock[cams == matching[0]].astype(np.float64)
    if ms.size > 2:
        ms[0] = ms[1] - np.median(np.diff(ms[1:]))
    return ms


def _avi_folder(path: Path) -> Path:
    """The folder holding the AVI chunks: ``path`` itself or one folder one/two levels down."""

    def has_avi(folder: Path) -> bool:
        return any(p.suffix.lower() == ".avi" for p in folder.iterdir() if p.is_file())

    if has_avi(path):
        return path
    candidates = []
    for sub in sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        if has_avi(sub):
            candidates.append(sub)
        else:
            candidates += [
                s
                for s in sorted(sub.iterdir(), key=lambda p: natural_key(p.name))
                if s.is_dir() and has_avi(s)
            ]
    if len(candidates) > 1:  # e.g. Miniscope/ and BehavCam_0/ of a V4 session
        scopes = [c for c in candidates if "miniscope" in c.name.lower() or _device_is_scope(c)]
        candidates = scopes if scopes else candidates
    if len(candidates) == 1:
        logger.debug("video folder %s: using %s", path, candidates[0])
        return candidates[0]
    if not candidates:
        raise InputFormatError(
            "no AVI files in the video folder (or in the folders one or two levels below it)",
            path=path,
            field="video",
            fix="point the manifest's video column at the Miniscope folder holding 0.avi, 1.avi, ... "
            "(or msCam1.avi, ...)",
        )
    raise InputFormatError(
        f"several folders hold AVI files ({', '.join(str(c.relative_to(path)) for c in candidates)})",
        path=path,
        field="video",
        fix="point the manifest's video column at the Miniscope folder itself",
    )


def _device_is_scope(folder: Path) -> bool:
    meta = folder / METADATA_V4
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "miniscope" in str(data.get("deviceType", "")).lower()


def _avi_layout(path: Path) -> tuple[list[Path], list[Path], Path | None]:
    """``(chunks, extra files, folder)`` of an AVI video; ``folder`` is ``None`` for one file."""
    require_exists(path, field_name="video", what="video")
    if path.is_file():
        if path.suffix.lower() != ".avi":
            raise _unsupported(path, "file type")
        return [path], [], None
    folder = _avi_folder(path)
    chunks = numbered_series(folder, _AVI, prefer=("mscam",))
    extras = [folder / n for n in (TIMESTAMPS_V4, METADATA_V4, TIMESTAMPS_V3) if (folder / n).is_file()]
    session_meta = folder.parent / METADATA_V4  # session-level metadata (recording start)
    if session_meta.is_file():
        extras.append(session_meta)
    return chunks, extras, folder


_GRAY8: Final = {"gray", "gray8", "pal8"}
_GRAY16: Final = {"gray16le", "gray16be", "gray10le", "gray12le", "gray14le", "gray10be", "gray12be"}


def _av_error(path: Path, exc: BaseException, what: str) -> InputFormatError:
    return InputFormatError(
        f"cannot {what} the video chunk ({one_line(exc)})",
        path=path,
        field="video",
        fix="the file is corrupt or not a video; re-export or re-copy it from the acquisition computer",
    )


class MiniscopeAviReader:
    """A Miniscope recording of numbered AVI chunks (V4, V3 or any numbered series), or one AVI.

    Opening reads only the container headers (and counts packets where a header lacks a
    frame count); frames are decoded by :meth:`iter_blocks`, one chunk file at a time.

    Frame times come from ``timeStamps.csv`` (V4) or ``timestamp.dat`` (V3) when their
    length matches; the recording start from ``metaData.json`` (``recordingStartTime``
    nested, or the same keys at the top level).

    Parameters
    ----------
    path
        The Miniscope folder, the session folder one or two levels above it, or one ``.avi``.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing folder or chunk, chunks out of order (a chunk other than the last shorter
        than ``framesPerFile`` or than the others), unreadable chunk, chunks of different
        frame sizes, unreadable timestamps or metadata.
    """

    format: str = "miniscope_avi"

    def __init__(self, path: Path | str) -> None:
        import av

        self.path = Path(path)
        chunks, extras, folder = _avi_layout(self.path)
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
            except InputFormatError:
                raise
            except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
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

        self.metadata: dict[str, Any] = {}
        self.fps: float | None = None
        self.start_time: str | None = None
        self.timestamps_s: np.ndarray | None = None
        if folder is not None:
            self._read_folder_metadata(folder)
        self._check_chunk_lengths()
        logger.debug(
            "video %s: %d chunks, %d frames of %dx%d %s",
            self.path,
            len(self.chunks),
            self.n_frames,
            self.height,
            self.width,
            self.dtype,
        )

    def _read_folder_metadata(self, folder: Path) -> None:
        meta_path = folder / METADATA_V4
        if meta_path.is_file():
            self.metadata = _read_json(meta_path)
            self.fps = parse_fps(self.metadata.get("frameRate"))
            if "frameRate" in self.metadata and self.fps is None:
                logger.warning(
                    "%s: cannot read frameRate %r; fps comes from elsewhere",
                    meta_path,
                    self.metadata.get("frameRate"),
                )
            roi = self.metadata.get("ROI")
            if isinstance(roi, dict):
                roi_size = (roi.get("height"), roi.get("width"))
                try:
                    mismatch = None not in roi_size and tuple(int(v) for v in roi_size) != (
                        self.height,
                        self.width,
                    )  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    mismatch = False
                if mismatch:
                    logger.warning(
                        "%s: ROI %sx%s differs from the AVI frame size %dx%d; using the AVI size",
                        meta_path,
                        roi_size[0],
                        roi_size[1],
                        self.height,
                        self.width,
                    )
        for candidate in (meta_path, folder.parent / METADATA_V4):
            if candidate.is_file():
                meta = self.metadata if candidate == meta_path else _read_json(candidate)
                self.start_time = _start_time(meta)
                if self.start_time:
                    break
        ts_path = folder / TIMESTAMPS_V4
        ms: np.ndarray | None = None
        where = ts_path
        if ts_path.is_file():
            ms, frame_numbers = _read_timestamps_v4(ts_path)
            if (
                frame_numbers is not None
                and len(frame_numbers) == self.n_frames
                and np.any(np.diff(frame_numbers) <= 0)
            ):
                logger.warning(
                    "%s: frame numbers are not increasing; frame times come from fps instead", ts_path
                )
                ms = None
        elif (folder / TIMESTAMPS_V3).is_file():
            where = folder / TIMESTAMPS_V3
            ms = _read_timestamps_v3(where, self.n_frames)
        if ms is None:
            return
        if where == ts_path and len(ms) > self.n_frames:
            self._missing_tail(folder, len(ms))
        if len(ms) != self.n_frames:
            logger.warning(
                "%s: %d timestamps for %d frames; frame times come from fps instead",
                where,
                len(ms),
                self.n_frames,
            )
        elif not (np.all(np.isfinite(ms)) and np.all(np.diff(ms) >= 0)):
            logger.warning("%s: timestamps are not increasing; frame times come from fps instead", where)
        else:
            self.timestamps_s = (ms - ms[0]) / 1000.0  # a negative first stamp is shifted to 0 too

    def _missing_tail(self, folder: Path, n_stamped: int) -> None:
        """``timeStamps.csv`` lists more frames than the chunks hold: a chunk at the end is
        missing (or the last one is truncated)."""
        per_file = self.metadata.get("framesPerFile")
        try:
            expected_chunks = -(-n_stamped // int(per_file)) if per_file else None
        except (TypeError, ValueError, ZeroDivisionError):
            expected_chunks = None
        last = self.chunks[-1]
        match = re.match(r"^(.*?)(\d+)$", last.stem)
        if expected_chunks is not None and expected_chunks > len(self.chunks) and match is not None:
            missing = folder / f"{match.group(1)}{int(match.group(2)) + 1}{last.suffix}"
            problem = (
                f"video chunk {missing.name} is missing: {TIMESTAMPS_V4} lists {n_stamped} frames "
                f"({expected_chunks} chunks of {per_file}) but the {len(self.chunks)} chunk"
                f"{'s hold' if len(self.chunks) > 1 else ' holds'} {self.n_frames}"
            )
        else:
            missing = last
            problem = (
                f"{TIMESTAMPS_V4} lists {n_stamped} frames but the chunks hold {self.n_frames}: "
                "a chunk at the end is missing or the last chunk is truncated"
            )
        raise InputFormatError(
            problem,
            path=missing,
            field="video",
            fix="copy all chunks from the acquisition computer",
        )

    def _check_chunk_lengths(self) -> None:
        """A chunk other than the last must be full: else it is truncated or out of order."""
        counts = self.chunk_frames
        if len(counts) < 2:
            return
        per_file = self.metadata.get("framesPerFile")
        try:
            expected = int(per_file) if per_file is not None else max(counts[:-1])
        except (TypeError, ValueError):
            expected = max(counts[:-1])
        for index, (chunk, n) in enumerate(zip(self.chunks, counts, strict=True)):
            last = index == len(counts) - 1
            if (not last and n != expected) or (last and n > expected):
                source = "framesPerFile in metaData.json" if per_file is not None else "the other chunks"
                raise InputFormatError(
                    f"chunk has {n} frames but {source} say {expected}: the chunk is truncated, "
                    "or the chunks are out of order (only the last chunk may be shorter)",
                    path=chunk,
                    field="video",
                    fix="re-copy the chunks from the acquisition computer and keep their original numbers",
                )

    def __repr__(self) -> str:
        return f"MiniscopeAviReader({str(self.path)!r}, n_frames={self.n_frames}, height={self.height}, width={self.width})"

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
                                f"frame {decoded} has shape {image.shape}, expected {(self.height, self.width)}",
                                path=chunk,
                                field="video",
                                fix="re-export the chunk",
                            )
                        decoded += 1
                        yield image
            except InputFormatError:
                raise
            except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
                raise _av_error(chunk, exc, "decode") from None
            if decoded != expected:
                raise InputFormatError(
                    f"chunk is truncated or corrupt: {decoded} frames decode, its header says {expected}",
                    path=chunk,
                    field="video",
                    fix="re-copy the chunk from the acquisition computer",
                )

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Decode the movie in blocks of at most ``n_frames`` frames (a fresh array per block).

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


# =========================================================================== TIFF


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
        files = [self.path] if self.path.is_file() else numbered_series(self.path, _TIFF, what="TIFF part")
        self.files: tuple[Path, ...] = tuple(files)
        self.part_frames: list[int] = []
        size: tuple[int, int] | None = None
        self.dtype = np.dtype(np.uint16)
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
        if self.dtype == np.float64:
            self.dtype = np.dtype(np.float32)

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames (memory-mapped parts are sliced)."""
        import tifffile

        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
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


# =========================================================================== HDF5 / .mat


class Hdf5VideoReader:
    """A movie stored as a 3-D dataset in an HDF5 file or a MATLAB ``.mat``.

    HDF5 written by Python holds ``(frames, height, width)``. MATLAB's ``Y`` is
    ``d1 x d2 x T``; a v7.3 file stores it transposed (``(T, d2, d1)``), so its frames
    are transposed back; a v5 ``.mat`` is read whole with scipy (it cannot be streamed).

    Parameters
    ----------
    path
        ``.h5``/``.hdf5``/``.mat`` file.
    dataset
        Dataset (HDF5 path) or variable name; default: the first of ``Y``, ``mov``,
        ``Yr``, ``data``, ``images``, ``movie`` that exists.
    """

    format: str = "hdf5"

    def __init__(self, path: Path | str, dataset: str | None = None) -> None:
        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        self.files: tuple[Path, ...] = (self.path,)
        self.fps: float | None = None
        self.timestamps_s: np.ndarray | None = None
        self._v5 = not is_hdf5(self.path)
        self._matlab = False
        if self._v5:
            if self.path.suffix.lower() != ".mat":
                raise InputFormatError(
                    "the file is neither HDF5 nor a MATLAB .mat",
                    path=self.path,
                    field="video",
                    fix="give an HDF5 / .mat movie, or set video_format",
                )
            self._init_v5(dataset)
        else:
            self._init_h5(dataset)
        if self.dtype.kind not in "biuf":
            raise InputFormatError(
                f"dataset '{self.dataset}' has dtype {self.dtype}, expected numbers",
                path=self.path,
                field="video_dataset",
                fix="point video_dataset at the movie",
            )
        if self.dtype == np.float64:
            self.dtype = np.dtype(np.float32)

    def _pick(self, available: dict[str, tuple[int, ...]], dataset: str | None) -> str:
        if dataset is not None:
            name = dataset.strip("/")
            three_d = ", ".join(sorted(k for k, s in available.items() if len(s) == 3)) or "none"
            if name not in available:
                raise InputFormatError(
                    f"no dataset '{dataset}' (3-D datasets: {three_d})",
                    path=self.path,
                    field="video_dataset",
                    fix="set video_dataset in the manifest to the movie's dataset",
                )
            if len(available[name]) != 3:
                raise InputFormatError(
                    f"dataset '{name}' has shape {available[name]}, expected 3 dimensions (3-D datasets: {three_d})",
                    path=self.path,
                    field="video_dataset",
                    fix="point video_dataset at the movie",
                )
            return name
        for name in HDF5_VIDEO_DATASETS:
            if name in available and len(available[name]) == 3:
                return name
        raise InputFormatError(
            f"no movie dataset ({', '.join(HDF5_VIDEO_DATASETS)}); 3-D datasets: "
            f"{', '.join(sorted(k for k, s in available.items() if len(s) == 3)) or 'none'}",
            path=self.path,
            field="video_dataset",
            fix="set video_dataset in the manifest to the movie's dataset",
        )

    def _init_h5(self, dataset: str | None) -> None:
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                available: dict[str, tuple[int, ...]] = {}
                handle.visititems(
                    lambda name, obj: (
                        available.__setitem__(name, tuple(obj.shape))
                        if isinstance(obj, h5py.Dataset)
                        else None
                    )
                )
                self.dataset = self._pick(available, dataset)
                ds = handle[self.dataset]
                shape = tuple(int(s) for s in ds.shape)
                self.dtype = np.dtype(ds.dtype)
                self._matlab = "MATLAB_class" in ds.attrs or is_matlab_hdf5(self.path)
                rate = ds.attrs.get("fps", ds.attrs.get("fr"))
                self.fps = finite_positive(rate) if rate is not None else None
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read the HDF5 movie ({one_line(exc)})",
                path=self.path,
                field="video",
                fix="the file is truncated or corrupt; write it again",
            ) from None
        if len(shape) != 3:
            raise InputFormatError(
                f"dataset '{self.dataset}' has shape {shape}, expected 3 dimensions (frames, height, width)",
                path=self.path,
                field="video_dataset",
                fix="point video_dataset at the movie",
            )
        self.n_frames = shape[0]
        # MATLAB v7.3: Y (d1, d2, T) is stored as (T, d2, d1)
        self.height, self.width = (shape[2], shape[1]) if self._matlab else (shape[1], shape[2])

    def _init_v5(self, dataset: str | None) -> None:
        import scipy.io

        from cellsift.pipeline.readers.matlab import corrupt_mat, load_v5

        try:
            listing = scipy.io.whosmat(str(self.path))
        except Exception as exc:  # noqa: BLE001 - scipy raises many types on corrupt files
            raise corrupt_mat(self.path, exc) from None
        shapes = {name: tuple(int(s) for s in shape) for name, shape, _ in listing}
        self.dataset = self._pick(shapes, dataset)
        d1, d2, t = shapes[self.dataset]
        self.height, self.width, self.n_frames = d1, d2, t
        self._v5_names = [self.dataset]
        self._load_v5 = load_v5
        classes = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "single": np.float32}
        mat_class = next(cls for name, _, cls in listing if name == self.dataset)
        self.dtype = np.dtype(classes.get(mat_class, np.float32))
        self._matlab = True

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames."""
        if self._v5:
            movie = np.asarray(self._load_v5(self.path, self._v5_names)[self.dataset])
            if movie.ndim != 3:
                raise InputFormatError(
                    f"'{self.dataset}' is not 3-D",
                    path=self.path,
                    field="video_dataset",
                    fix="check the file",
                )
            frames = np.moveaxis(movie, 2, 0)  # (d1, d2, T) -> (T, d1, d2)
            yield from _blocks_from_array(
                frames, n_frames, convert=lambda b: b.astype(self.dtype, copy=False)
            )
            return
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                ds = handle[self.dataset]
                convert = (
                    (lambda b: np.ascontiguousarray(b.transpose(0, 2, 1)).astype(self.dtype, copy=False))
                    if self._matlab
                    else (lambda b: b.astype(self.dtype, copy=False))
                )
                yield from _blocks_from_array(ds, n_frames, convert=convert)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read the HDF5 movie ({one_line(exc)})",
                path=self.path,
                field="video",
                fix="the file is truncated or corrupt; write it again",
            ) from None


# =========================================================================== Suite2p data.bin


def read_suite2p_ops(path: Path) -> dict[str, Any]:
    """Load Suite2p's ``ops.npy`` (a pickled dict) with a clear error if it is broken."""
    try:
        ops = np.load(path, allow_pickle=True)
        ops = ops.item() if isinstance(ops, np.ndarray) and ops.dtype.kind == "O" and ops.size == 1 else ops
    except Exception as exc:  # noqa: BLE001 - pickle/np.load raise many types
        raise InputFormatError(
            f"cannot read Suite2p's ops ({one_line(exc)})",
            path=path,
            fix="the file is truncated or corrupt; copy the plane folder again",
        ) from None
    if not isinstance(ops, dict):
        raise InputFormatError("ops.npy does not hold a dict", path=path, fix="copy the plane folder again")
    return ops


class Suite2pBinReader:
    """Suite2p's registered binary movie ``data.bin`` (int16 ``(T, Ly, Lx)``), memory-mapped.

    Parameters
    ----------
    path
        ``data.bin`` or the plane folder holding it; ``ops.npy`` must sit beside it
        (frame size ``Ly``/``Lx``, frame rate ``fs``).
    """

    format: str = "suite2p_bin"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        binary = self.path / "data.bin" if self.path.is_dir() else self.path
        ops_path = binary.parent / "ops.npy"
        if not binary.is_file():
            raise SessionNotFoundError(
                "no data.bin in the plane folder", path=binary, field="video", fix="check the video path"
            )
        if not ops_path.is_file():
            raise InputFormatError(
                "no ops.npy beside data.bin (it gives the frame size)",
                path=binary.parent,
                field="video",
                fix="keep data.bin in its Suite2p plane folder with ops.npy",
            )
        ops = read_suite2p_ops(ops_path)
        try:
            self.height, self.width = int(ops["Ly"]), int(ops["Lx"])
        except (KeyError, TypeError, ValueError):
            raise InputFormatError(
                "ops.npy has no Ly/Lx", path=ops_path, field="Ly", fix="copy the plane folder again"
            ) from None
        self.binary = binary
        self.files: tuple[Path, ...] = (binary, ops_path)
        self.dtype = np.dtype(np.int16)
        frame_bytes = self.height * self.width * self.dtype.itemsize
        size = binary.stat().st_size
        if size == 0 or size % frame_bytes:
            raise InputFormatError(
                f"data.bin holds {size} bytes, not a whole number of {self.height}x{self.width} int16 frames: truncated",
                path=binary,
                field="video",
                fix="copy data.bin again (or re-run Suite2p registration)",
            )
        self.n_frames = size // frame_bytes
        expected = ops.get("nframes")
        if expected is not None and int(expected) != self.n_frames:
            raise InputFormatError(
                f"data.bin holds {self.n_frames} frames but ops.npy says nframes = {int(expected)}: truncated or from another run",
                path=binary,
                field="video",
                fix="copy data.bin and ops.npy of the same Suite2p run",
            )
        self.fps = finite_positive(ops.get("fs"))
        self.timestamps_s: np.ndarray | None = None

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames from the memory map."""
        frames = np.memmap(
            self.binary, dtype=self.dtype, mode="r", shape=(self.n_frames, self.height, self.width)
        )
        try:
            yield from _blocks_from_array(frames, n_frames)
        finally:
            del frames


# =========================================================================== NWB


_PHOTON_SERIES: Final = ("OnePhotonSeries", "TwoPhotonSeries")


def _neurodata_type(obj: Any) -> str:
    value = obj.attrs.get("neurodata_type", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def nwb_photon_series(handle: Any) -> list[str]:
    """Names of the photon series with their own data in ``/acquisition`` of an open NWB file."""
    group = handle.get("acquisition")
    if group is None:
        return []
    names = []
    for name, obj in group.items():
        if (
            _neurodata_type(obj) in _PHOTON_SERIES
            and "data" in obj
            and obj["data"].ndim >= 3
            and obj["data"].shape[0] > 0
        ):
            names.append(name)
    return names


class NwbVideoReader:
    """The ``OnePhotonSeries`` / ``TwoPhotonSeries`` of an NWB file, streamed with h5py.

    NWB stores frames as ``(time, d0, d1)`` in the axis order its writer used (the same
    order as its ``PlaneSegmentation`` image masks), so frames are taken as stored.

    Parameters
    ----------
    path
        The ``.nwb`` file.
    series
        Name of the series in ``/acquisition``; default: the only (or first) photon series.
    """

    format: str = "nwb"

    def __init__(self, path: Path | str, series: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        self.files: tuple[Path, ...] = (self.path,)
        try:
            with h5py.File(self.path, "r") as handle:
                names = nwb_photon_series(handle)
                if series is None:
                    if not names:
                        raise InputFormatError(
                            "the NWB file has no OnePhotonSeries or TwoPhotonSeries with data in /acquisition",
                            path=self.path,
                            field="video",
                            fix="give the video separately in the manifest's video column (or leave it empty for no movie)",
                        )
                    if len(names) > 1:
                        logger.warning("%s: several photon series %s; using %s", self.path, names, names[0])
                    series = names[0]
                elif series not in names:
                    raise InputFormatError(
                        f"no photon series '{series}' with data (found: {', '.join(names) or 'none'})",
                        path=self.path,
                        field="video_dataset",
                        fix="set video_dataset to one of the series names",
                    )
                group = handle["acquisition"][series]
                data = group["data"]
                shape = tuple(int(s) for s in data.shape)
                self.dtype = np.dtype(data.dtype)
                self.fps = None
                self.timestamps_s = None
                if "starting_time" in group:
                    self.fps = finite_positive(group["starting_time"].attrs.get("rate"))
                if "timestamps" in group:
                    ts = np.asarray(group["timestamps"][()], dtype=np.float64)
                    if len(ts) == shape[0] and np.all(np.diff(ts) >= 0):
                        self.timestamps_s = ts - ts[0]
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read the NWB file ({one_line(exc)})",
                path=self.path,
                field="video",
                fix="the file is truncated or corrupt; export it again",
            ) from None
        squeezed = shape[:3] if all(s == 1 for s in shape[3:]) else shape
        if len(squeezed) != 3:
            raise InputFormatError(
                f"series '{series}' has shape {shape}, expected (time, height, width)",
                path=self.path,
                field="video",
                fix="store single-plane, single-channel frames",
            )
        self.series = series
        self.n_frames, self.height, self.width = squeezed
        if self.dtype.kind not in "biuf":
            raise InputFormatError(
                f"series '{series}' has dtype {self.dtype}",
                path=self.path,
                field="video",
                fix="store numeric frames",
            )
        if self.dtype == np.float64:
            self.dtype = np.dtype(np.float32)

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames."""
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                data = handle["acquisition"][self.series]["data"]
                shape = (self.height, self.width)
                yield from _blocks_from_array(
                    data, n_frames, convert=lambda b: b.reshape(len(b), *shape).astype(self.dtype, copy=False)
                )
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read the NWB series ({one_line(exc)})",
                path=self.path,
                field="video",
                fix="the file is truncated or corrupt; export it again",
            ) from None


# =========================================================================== choosing


def _has_files(folder: Path, suffixes: tuple[str, ...], depth: int = 2) -> bool:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    if any(p.is_file() and p.suffix.lower() in suffixes for p in entries):
        return True
    return depth > 0 and any(_has_files(p, suffixes, depth - 1) for p in entries if p.is_dir())


def detect_video_format(path: Path) -> str:
    """Return the video format of ``path`` from its name and folder contents."""
    path = Path(path)
    require_exists(path, field_name="video", what="video")
    if path.is_dir():
        if (path / "data.bin").is_file() and (path / "ops.npy").is_file():
            return "suite2p_bin"
        if _has_files(path, _AVI):
            return "miniscope_avi"
        if _has_files(path, _TIFF, depth=0):
            return "tiff"
        raise InputFormatError(
            "cannot tell the video format: the folder holds no AVI, TIFF or Suite2p data.bin",
            path=path,
            field="video",
            fix=f"point video at the recording, or set video_format (one of {', '.join(VIDEO_FORMATS)})",
        )
    by_suffix = {
        ".avi": "miniscope_avi",
        ".tif": "tiff",
        ".tiff": "tiff",
        ".h5": "hdf5",
        ".hdf5": "hdf5",
        ".mat": "hdf5",
        ".bin": "suite2p_bin",
        ".nwb": "nwb",
    }
    name = by_suffix.get(path.suffix.lower())
    if name is None:
        raise _unsupported(path, "file type")
    return name


def normalise_video_format(name: str | None, *, path: Path) -> str | None:
    """Canonical video format name for ``name`` (aliases allowed), ``None`` passes through."""
    if name is None:
        return None
    canonical = _VIDEO_ALIASES.get(name.strip().lower())
    if canonical is None:
        raise InputFormatError(
            f"unknown video format '{name}'",
            path=path,
            field="video_format",
            fix=f"use one of: {', '.join(VIDEO_FORMATS)}",
        )
    return canonical


def list_video_files(path: Path, *, format: str | None = None, dataset: str | None = None) -> list[Path]:  # noqa: A002
    """Every file a video reads, in order, without decoding anything (for hashing).

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video, missing chunk, unknown format.
    """
    path = Path(path)
    name = normalise_video_format(format, path=path) or detect_video_format(path)
    if name == "miniscope_avi":
        chunks, extras, _ = _avi_layout(path)
        return chunks + extras
    if name == "tiff":
        require_exists(path, field_name="video", what="video")
        return [path] if path.is_file() else numbered_series(path, _TIFF, what="TIFF part")
    if name == "suite2p_bin":
        require_exists(path, field_name="video", what="video")
        binary = path / "data.bin" if path.is_dir() else path
        return [binary, binary.parent / "ops.npy"]
    require_exists(path, field_name="video", what="video")
    return [path]


def open_video(path: Path | str, *, format: str | None = None, dataset: str | None = None) -> Any:  # noqa: A002
    """Open a video for block-wise reading.

    Parameters
    ----------
    path
        Video file or folder.
    format
        One of :data:`VIDEO_FORMATS` (aliases allowed), or ``None`` to detect it.
    dataset
        Dataset / series inside an HDF5, ``.mat`` or NWB file (``None``: the default).

    Returns
    -------
    VideoReader

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing or unreadable video, unknown format.
    """
    path = Path(path)
    name = normalise_video_format(format, path=path) or detect_video_format(path)
    if name == "miniscope_avi":
        return MiniscopeAviReader(path)
    if name == "tiff":
        return TiffStackReader(path)
    if name == "hdf5":
        return Hdf5VideoReader(path, dataset)
    if name == "suite2p_bin":
        return Suite2pBinReader(path)
    return NwbVideoReader(path, dataset)
