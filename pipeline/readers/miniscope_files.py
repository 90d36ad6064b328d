"""The files of a Miniscope recording: where the AVI chunks are, and its side files.

:func:`avi_layout` finds the chunks of a Miniscope V4 folder (``0.avi``, ``1.avi``, ...
+ ``timeStamps.csv``, ``metaData.json``), a Miniscope V3 folder (``msCam1.avi``, ... +
``timestamp.dat``), any folder of numbered AVIs, a session folder one or two levels above
one, or one ``.avi``; the ``read_*`` functions parse the timestamps and metadata. The
reader itself is :class:`cellsift.pipeline.readers.miniscope.MiniscopeAviReader`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.pipeline._util import natural_key
from cellsift.pipeline.readers.base import one_line, require_exists
from cellsift.pipeline.readers.series import numbered_series
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "AVI_SUFFIXES",
    "METADATA_V4",
    "TIMESTAMPS_V3",
    "TIMESTAMPS_V4",
    "avi_layout",
    "has_avi_files",
    "parse_fps",
    "read_metadata_json",
    "read_timestamps_v3",
    "read_timestamps_v4",
    "recording_start_time",
]

TIMESTAMPS_V4: Final = "timeStamps.csv"
METADATA_V4: Final = "metaData.json"
TIMESTAMPS_V3: Final = "timestamp.dat"
AVI_SUFFIXES: Final = (".avi",)


# =========================================================================== files and metadata


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


def read_metadata_json(path: Path) -> dict[str, Any]:
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


def recording_start_time(meta: dict[str, Any]) -> str | None:
    """Recording start from a Miniscope ``metaData.json``: the nested ``recordingStartTime``
    mapping (newer DAQ software) or the same keys at the top level (older)."""
    info = meta.get("recordingStartTime", meta)
    if not isinstance(info, dict):
        return None
    keys = ("year", "month", "day", "hour", "minute", "second")
    if not all(k in info for k in keys):
        return None
    try:
        year, month, day, hour, minute, second = (int(info[k]) for k in keys)
        when = datetime(year, month, day, hour, minute, second, microsecond=int(info.get("msec", 0)) * 1000)
    except (TypeError, ValueError):
        return None
    return when.isoformat(timespec="milliseconds")


def read_timestamps_v4(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
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


def read_timestamps_v3(path: Path, n_frames: int) -> np.ndarray | None:
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


def has_avi_files(folder: Path, depth: int = 2) -> bool:
    """Whether ``folder`` or a folder up to ``depth`` levels below it holds an ``.avi``."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    if any(p.is_file() and p.suffix.lower() in AVI_SUFFIXES for p in entries):
        return True
    return depth > 0 and any(has_avi_files(p, depth - 1) for p in entries if p.is_dir())


def avi_layout(path: Path) -> tuple[list[Path], list[Path], Path | None]:
    """``(chunks, extra files, folder)`` of an AVI video; ``folder`` is ``None`` for one file.

    Extra files are the timestamps and metadata beside the chunks and the session-level
    ``metaData.json`` one folder up. Nothing is decoded.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video, a file that is not an ``.avi``, no or ambiguous AVI folder, a
        missing or duplicated chunk number.
    """
    require_exists(path, field_name="video", what="video")
    if path.is_file():
        if path.suffix.lower() not in AVI_SUFFIXES:
            raise InputFormatError(
                f"unsupported video file type '{path.suffix or path.name}'",
                path=path,
                field="video",
                fix="give one .avi or a Miniscope folder of numbered AVIs (see docs/formats.md), "
                "or set video_format in the manifest",
            )
        return [path], [], None
    folder = _avi_folder(path)
    chunks = numbered_series(folder, AVI_SUFFIXES, prefer=("mscam",))
    extras = [folder / n for n in (TIMESTAMPS_V4, METADATA_V4, TIMESTAMPS_V3) if (folder / n).is_file()]
    session_meta = folder.parent / METADATA_V4  # session-level metadata (recording start)
    if session_meta.is_file():
        extras.append(session_meta)
    return chunks, extras, folder
