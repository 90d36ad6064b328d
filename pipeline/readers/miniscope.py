"""Miniscope recordings (format ``miniscope_avi``): numbered AVI chunks, or one AVI.

``video`` points at a Miniscope V4 folder (``0.avi``, ``1.avi``, ... + ``timeStamps.csv``,
``metaData.json``), a Miniscope V3 folder (``msCam1.avi``, ... + ``timestamp.dat``), any
folder of numbered AVIs (``part1.avi``, ...), a session folder one or two levels above
one, or one ``.avi`` (found by :func:`~cellsift.pipeline.readers.miniscope_files.avi_layout`).
Opening reads container headers only; frames are decoded one chunk at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.pipeline.readers.base import one_line
from cellsift.pipeline.readers.miniscope_files import (
    METADATA_V4,
    TIMESTAMPS_V3,
    TIMESTAMPS_V4,
    avi_layout,
    parse_fps,
    read_metadata_json,
    read_timestamps_v3,
    read_timestamps_v4,
    recording_start_time,
)
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["MiniscopeAviReader"]

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
        chunks, extras, folder = avi_layout(self.path)
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
        self.dtype: np.dtype
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
            self.metadata = read_metadata_json(meta_path)
            self.fps = parse_fps(self.metadata.get("frameRate"))
            if "frameRate" in self.metadata and self.fps is None:
                logger.warning(
                    "%s: cannot read frameRate %r; fps comes from elsewhere",
                    meta_path,
                    self.metadata.get("frameRate"),
                )
            roi = self.metadata.get("ROI")
            if isinstance(roi, dict):
                roi_height, roi_width = roi.get("height"), roi.get("width")
                try:
                    mismatch = (
                        roi_height is not None
                        and roi_width is not None
                        and (int(roi_height), int(roi_width)) != (self.height, self.width)
                    )
                except (TypeError, ValueError):
                    mismatch = False
                if mismatch:
                    logger.warning(
                        "%s: ROI %sx%s differs from the AVI frame size %dx%d; using the AVI size",
                        meta_path,
                        roi_height,
                        roi_width,
                        self.height,
                        self.width,
                    )
        for candidate in (meta_path, folder.parent / METADATA_V4):
            if candidate.is_file():
                meta = self.metadata if candidate == meta_path else read_metadata_json(candidate)
                self.start_time = recording_start_time(meta)
                if self.start_time:
                    break
        ts_path = folder / TIMESTAMPS_V4
        ms: np.ndarray | None = None
        where = ts_path
        if ts_path.is_file():
            ms, frame_numbers = read_timestamps_v4(ts_path)
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
            ms = read_timestamps_v3(where, self.n_frames)
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
            raise ParameterError(
                f"n_frames must be >= 1, got {n_frames}",
                field="n_frames",
                fix="read at least one frame per block",
            )
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
