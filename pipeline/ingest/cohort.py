"""Ingest: read a cohort's raw files and write one session dataset per session into the lake.

For every session of a manifest (see :mod:`cellsift.pipeline.ingest.manifest`):

1. hash the inputs (SHA-256 of every file's content plus the manifest values and ingest
   options that change the output); a session whose hash, catalog status and store are
   unchanged is skipped;
2. read the extraction (any format of :mod:`cellsift.pipeline.readers`) and open the
   video (headers only; the manifest's ``video``, else the extraction's own video, else
   none); check that they agree: frame size and pixel count, frame count (an exact
   integer ratio is a temporal downsampling, accepted only when the manifest declares
   ``temporal_downsample``), labels against unit ids;
3. write ``LAKE/tmp/<uuid>.zarr``: traces and coordinates at once, then the movie
   streamed block by block (``decode_block_frames`` frames in memory at a time) and the
   footprints 32 units at a time, the max projection computed on the way; while the
   movie streams, the frames at the strongest cells' peaks are kept and the footprints'
   orientation is checked against them (transposed or row/column-major mix-ups);
4. check the store reads back as a valid session dataset, move it to
   ``LAKE/sessions/<cohort>/<animal>/<session>/<input_hash[:16]>.zarr``, write the
   labels table, switch the catalog row to it (the atomic switch) and remove older
   versions.

Temporal downsampling (``temporal_downsample: N``) is stored at the *shorter* rate, so
every stored movie frame has a trace sample and the pipeline needs no change:

* traces N times longer than the video (the video holds every N-th frame, as in the
  Minian demo): ``C`` and ``C_raw`` are sampled at the video's frames (``C[:, ::N]``) and
  ``S`` is summed over each N-frame block (spikes are counts);
* a video N times longer than the traces (CNMF-E ``tsub``: traces of N-frame averages):
  the movie is stored as N-frame averages (rounded to its dtype).

The session's ``fps`` is then the stored rate (the full rate / N) and ``time_s`` the
stored frames' times (the video's timestamps, averaged per block for an averaged movie).

A session that fails is recorded in the catalog as ``failed`` unless a good version of
it is already in the lake, which is then left exactly as it was (no file changes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from cellsift.catalog.atomic import publish_dir, remove_tree_quietly, staging_path, write_parquet_atomic
from cellsift.catalog.layout import LakeLayout
from cellsift.catalog.lock import run_lock
from cellsift.catalog.store import STATUS_FAILED, STATUS_INGESTED, Catalog, SessionRecord
from cellsift.schemas.dataset import validate_session_dataset
from cellsift.schemas.dims import DATASET_SCHEMA_VERSION, FRAME, HEIGHT, UNIT_ID, WIDTH
from cellsift.schemas.errors import CellsiftError, InputFormatError
from cellsift.schemas.tables import LABELS_SCHEMA

from cellsift.pipeline.ingest.manifest import SessionSpec, check_spec_files, read_manifest
from cellsift.pipeline.readers import (
    Extraction,
    FrameAlignment,
    PeakFrameCheck,
    UnitLabels,
    VideoReader,
    check_frame_size,
    check_orientation,
    detect_extraction_format,
    frame_alignment,
    image_orientation_scores,
    list_extraction_files,
    list_video_files,
    normalise_extraction_format,
    open_extraction,
    open_video,
    read_labels_file,
)
from cellsift.pipeline.readers.extraction import suite2p_plane
from cellsift.pipeline.readers.labels import TRUTH_FILE, labels_rows

logger = logging.getLogger(__name__)

__all__ = [
    "IngestOptions",
    "IngestResult",
    "STATUS_UNCHANGED",
    "ingest_cohort",
    "ingest_session",
    "session_input_files",
    "compute_input_hash",
]

#: Version of the ingest output; part of the input hash, so bumping it re-ingests everything.
INGEST_VERSION: Final = "2"
STATUS_UNCHANGED: Final = "unchanged"
#: Footprints are chunked (and written) this many units at a time.
UNITS_PER_CHUNK: Final = 32
#: Trace chunks span at most this many frames.
TRACE_CHUNK_FRAMES: Final = 65536
_HASH_BLOCK: Final = 1 << 20
MOVIE_ZSTD_LEVEL: Final = 1
#: Dataset variable names extraction images and per-unit columns must not take.
_RESERVED: Final = frozenset(
    {"movie", "A", "C", "C_raw", "S", "max_proj", FRAME, UNIT_ID, HEIGHT, WIDTH, "time_s"}
)


@dataclass(frozen=True)
class IngestOptions:
    """Options of :func:`ingest_cohort`.

    Parameters
    ----------
    chunk_frames
        Frames per zarr chunk of the movie (changes the output, so part of the input hash).
    decode_block_frames
        Frames decoded and held in memory at a time (memory only; not hashed).
    check_orientation
        Check footprints against the movie's peak frames (transposed / pixel order).
    """

    chunk_frames: int = 100
    decode_block_frames: int = 256
    check_orientation: bool = True

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "decode_block_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputFormatError(
                    f"must be a whole number >= 1, got {value!r}",
                    field=name,
                    fix=f"pass {name}=100 or another positive number of frames",
                )


@dataclass(frozen=True)
class IngestResult:
    """What happened to one session.

    Attributes
    ----------
    status
        ``"ingested"`` (written now), ``"unchanged"`` (same inputs already in the lake)
        or ``"failed"``.
    error
        One readable line naming the file, field and fix when failed.
    n_frames, n_units
        Size of the session (0 when failed before reading it).
    dataset_path
        The session store, relative to the lake root ("" when failed).
    seconds
        Wall time spent on the session.
    """

    cohort: str
    animal: str
    session: str
    status: str
    error: str = ""
    n_frames: int = 0
    n_units: int = 0
    dataset_path: str = ""
    seconds: float = 0.0


# =========================================================================== hashing


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise InputFormatError(
            f"cannot read the file ({exc.strerror or exc})", path=path, fix="check the file's permissions"
        ) from None
    return digest.hexdigest()


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
        fmt = normalise_extraction_format(spec.format, path=spec.extraction) or detect_extraction_format(
            spec.extraction
        )
        if fmt == "suite2p" and spec.extraction.is_dir():
            binary = suite2p_plane(spec.extraction) / "data.bin"
            return [binary] if binary.is_file() else []
    except CellsiftError:
        return []  # the reader reports the problem with its own message
    return []


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


def compute_input_hash(spec: SessionSpec, *, options: IngestOptions) -> tuple[str, dict[str, str]]:
    """Hash a session's inputs.

    The hash covers every input file's content (streamed in 1 MiB blocks), the manifest
    values that change the dataset (stage, day, fps, formats, dataset, downsampling, pixel
    order), the options that change the output (``chunk_frames``, ``check_orientation``)
    and the ingest and schema versions. File paths are not hashed: moving a cohort does
    not re-ingest it.

    Returns
    -------
    input_hash
        Hex SHA-256.
    source_hashes
        ``{absolute path: sha256}`` of every input file.
    """
    files = session_input_files(spec)
    source_hashes = {str(path.resolve()): _sha256_file(path) for _, path in files}
    material = {
        "ingest_version": INGEST_VERSION,
        "schema_version": DATASET_SCHEMA_VERSION,
        "chunk_frames": options.chunk_frames,
        "check_orientation": options.check_orientation,
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
        "files": [[role, source_hashes[str(path.resolve())]] for role, path in files],
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), source_hashes


# =========================================================================== reading


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


def _decimate_traces(ext: Extraction, alignment: FrameAlignment) -> Extraction:
    """Traces N times longer than the video: sample C, C_raw at the video frames, sum S per block."""
    r, n = alignment.ratio, alignment.n_frames
    idx = np.arange(n) * r
    s_full = ext.S[:, : n * r]
    if s_full.shape[1] < n * r:
        s_full = np.pad(s_full, ((0, 0), (0, n * r - s_full.shape[1])))
    S = s_full.reshape(ext.n_units, n, r).sum(axis=2, dtype=np.float64).astype(np.float32)
    return dataclasses.replace(
        ext,
        C=np.ascontiguousarray(ext.C[:, idx]),
        C_raw=np.ascontiguousarray(ext.C_raw[:, idx]),
        S=np.ascontiguousarray(S),
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


def _labels_table(spec: SessionSpec, ext: Extraction) -> tuple[pa.Table | None, list[str]]:
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
    if not sets:
        return None, []
    rows = labels_rows(sets)
    n = len(rows["unit_id"])
    keys = {"cohort": [spec.cohort] * n, "animal": [spec.animal] * n, "session": [spec.session] * n}
    return pa.Table.from_pydict({**keys, **rows}, schema=LABELS_SCHEMA), sources


# =========================================================================== writing


def _footprint_block(A: sp.csc_matrix, start: int, stop: int, h: int, w: int, order: str) -> np.ndarray:
    """Return footprints ``start:stop`` as ``(n, h, w)`` float32, reading pixels in ``order``."""
    dense = A[:, start:stop].toarray().T  # (n, h*w)
    n = stop - start
    if order == "F":  # pixel index = y + x*h
        return np.ascontiguousarray(dense.reshape(n, w, h).transpose(0, 2, 1), dtype=np.float32)
    return np.ascontiguousarray(dense.reshape(n, h, w), dtype=np.float32)


def _aligned_blocks(blocks: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Regroup frame blocks so every block but the last is a multiple of ``chunk`` frames.

    Writes then cover whole zarr chunks (no read-modify-write). At most one block plus
    ``chunk - 1`` frames are held at a time.
    """
    tail: np.ndarray | None = None
    for block in blocks:
        if tail is not None:
            block = np.concatenate([tail, block])
            tail = None
        full = (len(block) // chunk) * chunk
        if full:
            yield block[:full]
        if full < len(block):
            tail = block[full:]
    if tail is not None:
        yield tail


def _write_store(
    store: Path,
    *,
    video: VideoReader | None,
    frames: Iterator[np.ndarray] | None,
    ext: Extraction,
    dims: tuple[int, int],
    time_s: np.ndarray,
    attrs: dict[str, Any],
    options: IngestOptions,
    peak_frames: PeakFrameCheck | None,
) -> None:
    """Write the session dataset to ``store`` (a fresh path), streaming movie and footprints."""
    import dask.array as da
    import xarray as xr
    import zarr
    from zarr.codecs import ZstdCodec

    t, k = ext.n_frames, ext.n_units
    h, w = dims
    cf = min(options.chunk_frames, t)
    ku = min(UNITS_PER_CHUNK, k)
    trace_chunks = (ku, min(t, TRACE_CHUNK_FRAMES))
    compressors = (ZstdCodec(level=3),)
    data_vars: dict[str, Any] = {
        "A": ((UNIT_ID, HEIGHT, WIDTH), da.zeros((k, h, w), chunks=(ku, h, w), dtype=np.float32)),
        "C": ((UNIT_ID, FRAME), ext.C),
        "C_raw": ((UNIT_ID, FRAME), ext.C_raw),
        "S": ((UNIT_ID, FRAME), ext.S),
    }
    encoding: dict[str, dict[str, Any]] = {
        "A": {"chunks": (ku, h, w), "compressors": compressors},
        **{name: {"chunks": trace_chunks, "compressors": compressors} for name in ("C", "C_raw", "S")},
    }
    if video is not None:
        dtype = np.dtype(np.float32) if video.dtype == np.float64 else video.dtype
        data_vars["movie"] = ((FRAME, HEIGHT, WIDTH), da.zeros((t, h, w), chunks=(cf, h, w), dtype=dtype))
        data_vars["max_proj"] = ((HEIGHT, WIDTH), da.zeros((h, w), chunks=(h, w), dtype=dtype))
        # zstd level 1: on noisy 8-bit movies as small as level 3 and ~3x faster
        encoding["movie"] = {"chunks": (cf, h, w), "compressors": (ZstdCodec(level=MOVIE_ZSTD_LEVEL),)}
        encoding["max_proj"] = {"chunks": (h, w), "compressors": compressors}
    for name, image in ext.extras.items():
        key = name if name not in _RESERVED else f"extraction_{name}"
        data_vars[key] = ((HEIGHT, WIDTH), np.asarray(image, dtype=np.float32))
    for name, values in ext.unit_vars.items():
        key = name if name not in _RESERVED else f"extraction_{name}"
        data_vars[key] = ((UNIT_ID,), np.asarray(values))
    ds = xr.Dataset(
        data_vars,
        coords={
            FRAME: np.arange(t, dtype=np.int64),
            "time_s": (FRAME, np.asarray(time_s, dtype=np.float64)),
            UNIT_ID: ext.unit_ids.astype(np.int64),
        },
        attrs=attrs,
    )
    if video is not None:
        ds["movie"].attrs.update(units="camera counts", long_name="raw miniscope movie")
    ds["A"].attrs.update(long_name="spatial footprints")
    ds["time_s"].attrs.update(units="s", long_name="frame time relative to the first frame")
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet in the v3 spec; xarray reads it fine
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(store, mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=3)
    group = zarr.open_group(store, mode="r+", zarr_format=3)

    if video is not None and frames is not None:
        movie = group["movie"]
        max_proj: np.ndarray | None = None
        pos = 0
        # Decode the next block while the previous one is compressed and written: at most
        # two blocks (plus a partial chunk) are in memory.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
            pending: Future[None] | None = None
            for block in _aligned_blocks(frames, cf):
                n = len(block)
                if pos + n > t:
                    raise InputFormatError(
                        f"the video decodes to more than its {t} frames",
                        path=video.path,
                        field="video",
                        fix="re-export the video; its headers are inconsistent",
                    )
                if block.dtype != movie.dtype:
                    block = block.astype(movie.dtype)
                block_max = block.max(axis=0)
                max_proj = block_max if max_proj is None else np.maximum(max_proj, block_max)
                if peak_frames is not None:
                    peak_frames.take(block, pos)
                if pending is not None:
                    pending.result()
                pending = writer.submit(movie.__setitem__, slice(pos, pos + n), block)
                pos += n
            if pending is not None:
                pending.result()
        if pos != t or max_proj is None:
            raise InputFormatError(
                f"the video decodes to {pos} frames, its headers say {t}",
                path=video.path,
                field="video",
                fix="re-copy the video from the acquisition computer",
            )
        group["max_proj"][...] = max_proj

    footprints = group["A"]
    for start in range(0, k, ku):
        stop = min(start + ku, k)
        footprints[start:stop] = _footprint_block(ext.A, start, stop, h, w, ext.pixel_order)


def _orientation_attrs(
    ext: Extraction, dims: tuple[int, int], peak_frames: PeakFrameCheck | None, *, path: Path
) -> dict[str, Any]:
    """Run the orientation check (movie peak frames, else a reference image); return attrs."""
    h, w = dims
    if peak_frames is not None and peak_frames.n_checked:
        scores = peak_frames.scores()
        against = f"the movie at the peak frames of {peak_frames.n_checked} cells"
        warn = True
    else:
        image = next(
            (ext.extras[n] for n in ("Cn", "max_proj_extraction", "suite2p_Vcorr") if n in ext.extras), None
        )
        if image is None:
            return {"orientation_check": "not checked"}
        scores = image_orientation_scores(ext.A, h, w, image)
        against = (
            "the extraction's correlation image" if "Cn" in ext.extras else "the extraction's reference image"
        )
        warn = False
    outcome = check_orientation(
        scores, declared=ext.pixel_order, path=path, square=h == w, against=against, warn_unclear=warn
    )
    return {
        "orientation_check": outcome,
        "orientation_scores": json.dumps({k: round(v, 4) for k, v in scores.items()}),
    }


# =========================================================================== ingest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cellsift_version() -> str:
    try:
        from cellsift import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _str(path: Path | None) -> str:
    return "" if path is None else str(path.resolve())


def _has_good_version(catalog: Catalog, spec: SessionSpec) -> SessionRecord | None:
    prev = catalog.get(*spec.key)
    if prev is not None and prev.status == STATUS_INGESTED and prev.dataset_path:
        if (catalog.root / prev.dataset_path).is_dir():
            return prev
    return None


def _ingest_or_raise(
    spec: SessionSpec, catalog: Catalog, options: IngestOptions, state: dict[str, str]
) -> IngestResult:
    t0 = time.perf_counter()
    layout = catalog.layout
    check_spec_files(spec)
    session_dir = layout.session_dir(*spec.key)  # checks names before any work
    input_hash, source_hashes = compute_input_hash(spec, options=options)
    state["input_hash"] = input_hash

    good = _has_good_version(catalog, spec)
    if good is not None and good.input_hash == input_hash:
        logger.info("unchanged %s/%s/%s", *spec.key)
        return IngestResult(
            *spec.key,
            status=STATUS_UNCHANGED,
            n_frames=good.n_frames,
            n_units=good.n_units,
            dataset_path=good.dataset_path,
            seconds=time.perf_counter() - t0,
        )

    ext = open_extraction(spec.extraction, spec.format).read()
    if spec.pixel_order is not None and spec.pixel_order != ext.pixel_order:
        logger.info("%s: pixel order %s declared in the manifest", spec.extraction, spec.pixel_order)
        ext = dataclasses.replace(ext, pixel_order=spec.pixel_order)
    video = _open_session_video(spec, ext)
    n_trace_frames = ext.n_frames
    alignment = FrameAlignment(1, "", ext.n_frames)
    if video is not None:
        check_frame_size(ext, video.height, video.width, path=spec.extraction, video=video.path)
        dims = (video.height, video.width)
        alignment = frame_alignment(
            ext.n_frames,
            video.n_frames,
            declared=spec.temporal_downsample,
            extraction=spec.extraction,
            video=video.path,
            tsub=ext.tsub,
        )
    else:
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
        dims = ext.dims
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
    labels, label_sources = _labels_table(spec, ext)

    peak_frames: PeakFrameCheck | None = None
    if video is not None and options.check_orientation:
        peak_frames = PeakFrameCheck(ext.A, dims[0], dims[1], ext.C if np.any(ext.C) else ext.C_raw)
    frames: Iterator[np.ndarray] | None = None
    if video is not None:
        frames = video.iter_blocks(options.decode_block_frames)
        if alignment.longer == "video":
            frames = _average_frames(frames, ratio, alignment.n_frames, video.dtype)

    video_path = None if video is None else Path(video.path)
    final = session_dir / f"{input_hash[:16]}.zarr"
    attrs: dict[str, Any] = {
        "schema_version": DATASET_SCHEMA_VERSION,
        "cohort": spec.cohort,
        "animal": spec.animal,
        "session": spec.session,
        "stage": spec.stage,
        "day": int(spec.day),
        "fps": float(fps),
        "fps_source": fps_source,
        "time_source": time_source,
        "source_format": ext.source_format,
        "video_format": "" if video is None else video.format,
        "source_video": _str(video_path),
        "source_extraction": _str(spec.extraction),
        "source_events": _str(spec.events),
        "source_labels": _str(spec.labels),
        "labels_sources": json.dumps(label_sources),
        "c_raw_source": ext.c_raw_source,
        "pixel_order": ext.pixel_order,
        "temporal_downsample": int(ratio),
        "downsampled": {"traces": "traces", "video": "movie"}.get(alignment.longer, ""),
        "source_trace_frames": int(n_trace_frames),
        "source_video_frames": 0 if video is None else int(video.n_frames),
        "recording_start": getattr(video, "start_time", None) or "",
        "input_hash": input_hash,
        "source_hashes": json.dumps(source_hashes, sort_keys=True),
        "chunk_frames": int(options.chunk_frames),
        "cellsift_version": _cellsift_version(),
        "ingested_at": _now(),
    }
    with staging_path(layout.tmp, suffix=".zarr") as staged:
        _write_store(
            staged,
            video=video,
            frames=frames,
            ext=ext,
            dims=dims,
            time_s=time_s,
            attrs=attrs,
            options=options,
            peak_frames=peak_frames,
        )
        if options.check_orientation:
            checked = _orientation_attrs(ext, dims, peak_frames, path=spec.extraction)
            import zarr

            zarr.open_group(staged, mode="r+").attrs.update(checked)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                zarr.consolidate_metadata(staged)
        _validate_store(staged, final)
        publish_dir(staged, final)
    dataset_path = layout.relative(final)
    labels_file = layout.table_file("labels", *spec.key)
    if labels is not None:
        write_parquet_atomic(labels, labels_file, tmp_root=layout.tmp)
    elif labels_file.exists():
        labels_file.unlink()  # the new version has no labels: drop the old ones
    height, width = dims
    catalog.upsert(
        SessionRecord(
            cohort=spec.cohort,
            animal=spec.animal,
            session=spec.session,
            stage=spec.stage,
            day=int(spec.day),
            fps=float(fps),
            video=_str(video_path),
            extraction=_str(spec.extraction),
            events=_str(spec.events),
            labels=_str(spec.labels),
            source_format=ext.source_format,
            dataset_path=dataset_path,
            input_hash=input_hash,
            n_frames=ext.n_frames,
            height=height,
            width=width,
            n_units=ext.n_units,
            status=STATUS_INGESTED,
        )
    )
    for sibling in session_dir.iterdir():
        if sibling != final and (sibling.suffix == ".zarr" or ".zarr.old-" in sibling.name):
            remove_tree_quietly(sibling)
            logger.debug("removed older version %s", sibling)
    seconds = time.perf_counter() - t0
    logger.info(
        "ingested %s/%s/%s: %d frames %dx%d%s, %d units in %.1f s",
        *spec.key,
        ext.n_frames,
        height,
        width,
        "" if video is not None else " (no movie)",
        ext.n_units,
        seconds,
    )
    return IngestResult(
        *spec.key,
        status=STATUS_INGESTED,
        n_frames=ext.n_frames,
        n_units=ext.n_units,
        dataset_path=dataset_path,
        seconds=seconds,
    )


def _validate_store(staged: Path, final: Path) -> None:
    import xarray as xr

    try:
        ds = xr.open_zarr(staged, consolidated=True)
    except Exception as exc:  # noqa: BLE001 - report any read-back failure as a lake error
        raise InputFormatError(
            f"the written session store cannot be read back ({type(exc).__name__}: {exc})",
            path=final,
            fix="report this as a cellsift bug",
        ) from None
    try:
        validate_session_dataset(ds, path=final)
    finally:
        ds.close()


def _record_failure(
    spec: SessionSpec, catalog: Catalog, message: str, input_hash: str, seconds: float
) -> IngestResult:
    good = _has_good_version(catalog, spec)
    if good is None:
        catalog.upsert(
            SessionRecord(
                cohort=spec.cohort,
                animal=spec.animal,
                session=spec.session,
                stage=spec.stage,
                day=int(spec.day),
                fps=float(spec.fps or 0.0),
                video=_str(spec.video),
                extraction=_str(spec.extraction),
                events=_str(spec.events),
                labels=_str(spec.labels),
                input_hash=input_hash,
                status=STATUS_FAILED,
                error=message,
            )
        )
        # info, not warning: the caller reports the result (the CLI prints one line per failure)
        logger.info("failed %s/%s/%s: %s", *spec.key, message)
    else:
        logger.info(
            "failed %s/%s/%s (kept the previous good version %s): %s", *spec.key, good.dataset_path, message
        )
    return IngestResult(*spec.key, status=STATUS_FAILED, error=message, seconds=seconds)


def _ingest_one(spec: SessionSpec, catalog: Catalog, options: IngestOptions) -> IngestResult:
    t0 = time.perf_counter()
    state: dict[str, str] = {}
    try:
        return _ingest_or_raise(spec, catalog, options, state)
    except CellsiftError as exc:
        message = exc.one_line()
    except Exception as exc:  # noqa: BLE001 - one bad session never stops the cohort
        logger.debug("unexpected error ingesting %s/%s/%s\n%s", *spec.key, traceback.format_exc())
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
    return _record_failure(spec, catalog, message, state.get("input_hash", ""), time.perf_counter() - t0)


def ingest_session(
    spec: SessionSpec, lake: Path | str, *, options: IngestOptions = IngestOptions()
) -> IngestResult:
    """Ingest one session into ``lake`` (created if missing).

    Does not take the lake's run lock (:func:`ingest_cohort` does); do not run it while
    a pipeline run writes into the same lake.

    Parameters
    ----------
    spec
        The session (usually from :func:`~cellsift.pipeline.ingest.manifest.read_manifest`).
    lake
        The lake folder.
    options
        Ingest options.

    Returns
    -------
    IngestResult
        ``"ingested"``, ``"unchanged"`` or ``"failed"`` (with the one-line error; the
        failure is recorded in the catalog unless a good version is kept).
    """
    catalog = Catalog(Path(lake), create=True)
    return _ingest_one(spec, catalog, options)


def ingest_cohort(
    source: Path | str,
    lake: Path | str,
    *,
    options: IngestOptions = IngestOptions(),
    progress: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest every session of a cohort into ``lake``.

    Parameters
    ----------
    source
        Cohort manifest (CSV or YAML) or a folder laid out as the demo writes it.
    lake
        The lake folder (created if missing).
    options
        Ingest options.
    progress
        Called with each session's result as soon as it is done.

    Returns
    -------
    list of IngestResult
        One per session, in manifest order. A failing session does not stop the others.

    Raises
    ------
    ManifestError, SessionNotFoundError
        If the manifest itself cannot be read (per-session problems are results instead).
    LakeError
        If another run is writing into the lake.
    """
    specs = read_manifest(Path(source), check_files=False)
    catalog = Catalog(Path(lake), create=True)
    layout: LakeLayout = catalog.layout
    results: list[IngestResult] = []
    with run_lock(layout.root, run_id=f"ingest-{uuid.uuid4().hex[:12]}") as stale:
        if stale:  # a killed writer may have left half-written staging folders
            for leftover in layout.tmp.iterdir() if layout.tmp.is_dir() else ():
                remove_tree_quietly(leftover)
        for spec in specs:
            result = _ingest_one(spec, catalog, options)
            results.append(result)
            if progress is not None:
                progress(result)
    counts = {
        s: sum(r.status == s for r in results) for s in (STATUS_INGESTED, STATUS_UNCHANGED, STATUS_FAILED)
    }
    logger.info(
        "ingest of %s: %d ingested, %d unchanged, %d failed",
        source,
        counts[STATUS_INGESTED],
        counts[STATUS_UNCHANGED],
        counts[STATUS_FAILED],
    )
    return results
