"""A session's inputs: which files they are, their hash, and reading them aligned.

:func:`session_input_files` lists every file a session reads (the video's chunks and
side files, the extraction, the extraction's own video, events, labels, ``truth.json``)
without decoding anything; :func:`compute_input_hash` hashes their content with the
manifest values and options that change the output. :func:`read_session_inputs` reads
the extraction, opens the video (headers only) and lines them up frame by frame.

Temporal downsampling (``temporal_downsample: N``) is stored at the *shorter* rate, so
every stored movie frame has a trace sample and the pipeline needs no change:

* traces N times longer than the video (the video holds every N-th frame, as in the
  Minian demo): ``C`` and ``C_raw`` are sampled at the video's frames (``C[:, ::N]``) and
  ``S`` is summed over each N-frame block (spikes are counts);
* a video N times longer than the traces (CNMF-E ``tsub``: traces of N-frame averages):
  the movie is stored as N-frame averages (rounded to its dtype).

The session's ``fps`` is then the stored rate (the full rate / N) and ``time_s`` the
stored frames' times (the video's timestamps, averaged per block for an averaged movie).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.ingest.manifest import SessionSpec
from cellsift.pipeline.readers import (
    Extraction,
    FrameAlignment,
    PeakFrameCheck,
    UnitLabels,
    VideoReader,
    check_frame_size,
    decimate_traces,
    frame_alignment,
    list_companion_video_files,
    list_extraction_files,
    list_video_files,
    open_extraction,
    open_video,
    peak_traces,
    read_labels_file,
)
from cellsift.schemas import DATASET_SCHEMA_VERSION, TRUTH_FILE, CellsiftError, InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "INGEST_VERSION",
    "SessionInputs",
    "compute_input_hash",
    "read_session_inputs",
    "session_input_files",
]

#: Version of the ingest output; part of the input hash, so bumping it re-ingests everything.
INGEST_VERSION: Final = "2"


# =========================================================================== files and hashes


def _role(prefix: str, path: Path, root: Path) -> str:
    try:
        return f"{prefix}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return f"{prefix}/{path.name}"


def _companion_files(spec: SessionSpec) -> list[Path]:
    """Files of the extraction's own video when the manifest gives none (for hashing)."""
    if spec.video is not None or spec.skip_video:
        return []
    try:
        return list_companion_video_files(spec.extraction, format=spec.format)
    except CellsiftError:
        return []  # the reader reports the problem with its own message


def session_input_files(spec: SessionSpec) -> list[tuple[str, Path]]:
    """Return ``(role, path)`` of every input file of a session, in a fixed order.

    Roles are ``video/<name>`` (AVI chunks, timestamps, metadata, TIFF parts, ...),
    ``extraction`` (or ``extraction/<name>`` for a results folder), ``events``,
    ``labels`` and ``truth`` (a ``truth.json`` beside the labels, which sets the labels'
    source).

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video or a missing AVI chunk, unknown format.
    """
    files: list[tuple[str, Path]] = []
    if spec.video is not None:
        root = spec.video if spec.video.is_dir() else spec.video.parent
        for path in list_video_files(spec.video, format=spec.video_format, dataset=spec.video_dataset):
            files.append((_role("video", path, root), path))
    extraction = list_extraction_files(spec.extraction, format=spec.format)
    if len(extraction) == 1 and extraction[0] == spec.extraction:
        files.append(("extraction", spec.extraction))
    else:
        files += [(_role("extraction", p, spec.extraction), p) for p in extraction]
    files += [(f"video/{p.name}", p) for p in _companion_files(spec)]
    if spec.events is not None:
        files.append(("events", spec.events))
    if spec.labels is not None:
        files.append(("labels", spec.labels))
        truth = spec.labels.parent / TRUTH_FILE
        if truth.is_file():
            files.append(("truth", truth))
    return files


def compute_input_hash(
    spec: SessionSpec, *, chunk_frames: int, check_orientation: bool
) -> tuple[str, dict[str, str]]:
    """Hash a session's inputs.

    The hash covers every input file's content (streamed in 1 MiB blocks), the manifest
    values that change the dataset (stage, day, fps, formats, dataset, downsampling, pixel
    order), the options that change the output (``chunk_frames``, ``check_orientation``)
    and the ingest and schema versions. File paths are not hashed: moving a cohort does
    not re-ingest it.

    Parameters
    ----------
    spec
        The session.
    chunk_frames
        Frames per zarr chunk of the movie.
    check_orientation
        Whether the footprints' orientation is checked.

    Returns
    -------
    input_hash
        Hex SHA-256.
    source_hashes
        ``{absolute path: sha256}`` of every input file.
    """
    files = [(role, path, str(path.resolve())) for role, path in session_input_files(spec)]
    source_hashes = {resolved: file_sha256(path) for _, path, resolved in files}
    material = {
        "ingest_version": INGEST_VERSION,
        "schema_version": DATASET_SCHEMA_VERSION,
        "chunk_frames": chunk_frames,
        "check_orientation": check_orientation,
        "stage": spec.stage,
        "day": spec.day,
        "fps": spec.fps,
        "format": spec.format,
        "video_format": spec.video_format,
        "video_dataset": spec.video_dataset,
        "temporal_downsample": spec.temporal_downsample,
        "labels_format": spec.labels_format,
        "pixel_order": spec.pixel_order,
        "skip_video": spec.skip_video,
        "files": [[role, source_hashes[resolved]] for role, _, resolved in files],
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), source_hashes


# =========================================================================== reading


@dataclass
class SessionInputs:
    """A session's extraction and video, read and lined up with the stored frames.

    Attributes
    ----------
    ext
        The extraction, its traces at the stored rate (decimated when they are longer).
    video
        The opened video, or ``None`` (extraction only).
    frames
        The movie's frames at the stored rate, streamed in blocks, or ``None``.
    dims
        Frame size ``(height, width)`` in pixels.
    alignment
        How the trace and video frames line up (ratio, which is longer, stored frames).
    n_trace_frames
        Frames of the traces as read (before any decimation).
    time_s, time_source
        Time of every stored frame in seconds, and where it came from (``"timestamps"``
        or ``"fps"``).
    fps, fps_source
        Frame rate of the stored frames in Hz, and where it came from.
    labels
        Label sets of the session: the extraction's own, then the labels file's.
    peak_frames
        Collects the movie at the strongest cells' peaks for the orientation check, or
        ``None`` (no video, or the check is off).
    """

    ext: Extraction
    video: VideoReader | None
    frames: Iterator[np.ndarray] | None
    dims: tuple[int, int]
    alignment: FrameAlignment
    n_trace_frames: int
    time_s: np.ndarray
    time_source: str
    fps: float
    fps_source: str
    labels: list[UnitLabels]
    peak_frames: PeakFrameCheck | None


def read_session_inputs(
    spec: SessionSpec, *, decode_block_frames: int, check_orientation: bool
) -> SessionInputs:
    """Read the extraction, open the video and line them up (nothing of the movie decoded).

    Parameters
    ----------
    spec
        The session.
    decode_block_frames
        Frames decoded and held in memory at a time when the movie streams.
    check_orientation
        Prepare the orientation check against the movie's peak frames.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Unreadable files, or an extraction and video that do not agree (frame size,
        frame count, undeclared temporal downsampling, labels).
    """
    ext = open_extraction(spec.extraction, spec.format).read()
    if spec.pixel_order is not None and spec.pixel_order != ext.pixel_order:
        logger.info("%s: pixel order %s declared in the manifest", spec.extraction, spec.pixel_order)
        ext = dataclasses.replace(ext, pixel_order=spec.pixel_order)
    video = _open_session_video(spec, ext)
    n_trace_frames = ext.n_frames
    dims, alignment = _align(spec, ext, video)
    if alignment.longer == "traces":
        ext = _decimate_traces(ext, alignment)
    ratio = alignment.ratio
    stored_times: np.ndarray | None = None
    time_source = "fps"
    if video is not None and video.timestamps_s is not None:
        ts = np.asarray(video.timestamps_s, dtype=np.float64)
        stored_times = _block_means(ts, ratio, alignment.n_frames) if alignment.longer == "video" else ts
        time_source = "timestamps"
    fps, fps_source = _resolve_fps(spec, video, ext, ratio, stored_times)
    time_s = stored_times if stored_times is not None else np.arange(ext.n_frames, dtype=np.float64) / fps
    labels = _session_labels(spec, ext)
    peak_frames: PeakFrameCheck | None = None
    if video is not None and check_orientation:
        peak_frames = PeakFrameCheck(ext.A, dims[0], dims[1], peak_traces(ext))
    frames: Iterator[np.ndarray] | None = None
    if video is not None:
        frames = video.iter_blocks(decode_block_frames)
        if alignment.longer == "video":
            frames = _average_frames(frames, ratio, alignment.n_frames, video.dtype)
    return SessionInputs(
        ext=ext,
        video=video,
        frames=frames,
        dims=dims,
        alignment=alignment,
        n_trace_frames=n_trace_frames,
        time_s=time_s,
        time_source=time_source,
        fps=fps,
        fps_source=fps_source,
        labels=labels,
        peak_frames=peak_frames,
    )


def _open_session_video(spec: SessionSpec, ext: Extraction) -> VideoReader | None:
    """The manifest's video, else the extraction's own video, else ``None``."""
    if spec.video is not None:
        return open_video(spec.video, format=spec.video_format, dataset=spec.video_dataset)
    if spec.skip_video or ext.companion_video is None:
        return None
    logger.info("%s/%s/%s: using the extraction's own video %s", *spec.key, ext.companion_video)
    return open_video(
        ext.companion_video,
        format=spec.video_format or ext.companion_video_format,
        dataset=spec.video_dataset or ext.companion_video_dataset,
    )


def _align(
    spec: SessionSpec, ext: Extraction, video: VideoReader | None
) -> tuple[tuple[int, int], FrameAlignment]:
    """Frame size and frame alignment of the extraction with its video (or with none)."""
    if video is not None:
        check_frame_size(ext, video.height, video.width, path=spec.extraction, video=video.path)
        alignment = frame_alignment(
            ext.n_frames,
            video.n_frames,
            declared=spec.temporal_downsample,
            extraction=spec.extraction,
            video=video.path,
            tsub=ext.tsub,
        )
        return (video.height, video.width), alignment
    if spec.temporal_downsample not in (None, 1):
        raise InputFormatError(
            "temporal_downsample is given but the session has no video",
            path=spec.extraction,
            field="temporal_downsample",
            fix="remove temporal_downsample, or give the video",
        )
    if ext.dims is None:
        raise InputFormatError(
            f"the frame size is unknown: the extraction does not store it and there is no video "
            f"({ext.A.shape[0]} pixels per footprint)",
            path=spec.extraction,
            field="dims",
            fix="give the video in the manifest, or save the frame size with the results (CNMF-E options.d1/d2)",
        )
    return ext.dims, FrameAlignment(1, "", ext.n_frames)


def _decimate_traces(ext: Extraction, alignment: FrameAlignment) -> Extraction:
    """Traces N times longer than the video: sample C, C_raw at the video frames, sum S per block
    (lazily for traces read from the file in blocks of units)."""
    r, n = alignment.ratio, alignment.n_frames
    return dataclasses.replace(
        ext,
        C=decimate_traces(ext.C, r, n, reduce="sample"),
        C_raw=decimate_traces(ext.C_raw, r, n, reduce="sample"),
        S=decimate_traces(ext.S, r, n, reduce="sum"),
    )


def _cast_frames(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(frames), info.min, info.max).astype(dtype)
    return frames.astype(dtype)


def _average_frames(
    blocks: Iterator[np.ndarray], ratio: int, n_out: int, dtype: np.dtype
) -> Iterator[np.ndarray]:
    """Average consecutive groups of ``ratio`` frames; yield at most ``n_out`` averaged frames."""
    carry: np.ndarray | None = None
    emitted = 0
    for block in blocks:
        if carry is not None:
            block = np.concatenate([carry, block])
            carry = None
        full = (len(block) // ratio) * ratio
        if full and emitted < n_out:
            groups = (
                block[:full].reshape(full // ratio, ratio, *block.shape[1:]).mean(axis=1, dtype=np.float64)
            )
            take = min(len(groups), n_out - emitted)
            yield _cast_frames(groups[:take], dtype)
            emitted += take
        if full < len(block):
            carry = block[full:]
    if carry is not None and emitted < n_out:
        yield _cast_frames(carry.mean(axis=0, dtype=np.float64)[None], dtype)


def _block_means(values: np.ndarray, ratio: int, n_out: int) -> np.ndarray:
    """Mean of consecutive groups of ``ratio`` values (the last group may be shorter)."""
    return np.asarray([values[i * ratio : (i + 1) * ratio].mean() for i in range(n_out)], dtype=np.float64)


def _resolve_fps(
    spec: SessionSpec, video: VideoReader | None, ext: Extraction, ratio: int, stored_times: np.ndarray | None
) -> tuple[float, str]:
    """Frame rate of the stored frames: manifest, video metadata, extraction, timestamps, AVI header.

    The manifest's, the video's and the extraction's rates describe the full-rate
    recording; with a temporal downsampling N the stored rate is theirs / N.
    """
    full_rate: list[tuple[float | None, str]] = [
        (spec.fps, "manifest"),
        (video.fps if video is not None else None, "video_metadata"),
        (ext.fps, "extraction"),
    ]
    candidates = [(None if f is None else f / ratio, s) for f, s in full_rate]
    if stored_times is not None and len(stored_times) > 1 and stored_times[-1] > stored_times[0]:
        candidates.append(((len(stored_times) - 1) / float(stored_times[-1] - stored_times[0]), "timestamps"))
    container = getattr(video, "container_fps", None)
    candidates.append((None if container is None else container / ratio, "avi_header"))
    known = [(f, s) for f, s in candidates if f is not None and np.isfinite(f) and f > 0]
    if not known:
        raise InputFormatError(
            "the frame rate is unknown (no fps in the manifest, the video's metadata, the extraction or timestamps)",
            path=spec.video or spec.extraction,
            field="fps",
            fix="add an 'fps' column to the manifest",
        )
    fps, source = known[0]
    if video is not None and video.fps and ext.fps and abs(video.fps - ext.fps) > 0.01 * video.fps:
        logger.warning(
            "%s/%s/%s: video metadata says %.3g fps, extraction says %.3g; using %s (%.3g)",
            *spec.key,
            video.fps,
            ext.fps,
            source,
            fps,
        )
    return float(fps), source


def _session_labels(spec: SessionSpec, ext: Extraction) -> list[UnitLabels]:
    """Labels of the session: those inside the extraction plus the manifest's labels file."""
    sets: list[UnitLabels] = list(ext.labels)
    if spec.labels is not None:
        from_file = read_labels_file(
            spec.labels,
            ext=ext,
            fmt=spec.labels_format,
            cohort=spec.cohort,
            animal=spec.animal,
            session=spec.session,
        )
        if from_file is not None:
            sets.append(from_file)
    sources = [s.source for s in sets]
    if len(set(sources)) != len(sources):
        raise InputFormatError(
            f"labels of source '{sources[-1]}' come twice (from the extraction and the labels file)",
            path=spec.labels,
            field="labels",
            fix="drop the labels column: the extraction already carries these labels",
        )
    return sets
