"""Ingest: read a cohort's raw files and write one session dataset per session into the lake.

For every session of a manifest (see :mod:`cellsift.pipeline.manifest`):

1. hash the inputs (SHA-256 of every file's content plus the ingest options that change
   the output); a session whose hash, catalog status and store are unchanged is skipped;
2. open the video (headers only) and read the extraction; check that they agree
   (frame size, frame count, units) and that values are finite;
3. write ``LAKE/tmp/<uuid>.zarr``: traces and coordinates at once, then the movie
   streamed block by block (``decode_block_frames`` frames in memory at a time) and the
   footprints 32 units at a time, the max projection computed on the way;
4. check the store reads back as a valid session dataset, move it to
   ``LAKE/sessions/<cohort>/<animal>/<session>/<input_hash[:16]>.zarr``, write the
   labels table, switch the catalog row to it (the atomic switch) and remove older
   versions.

A session that fails is recorded in the catalog as ``failed`` unless a good version of
it is already in the lake, which is then left exactly as it was.
"""

from __future__ import annotations

import csv
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

from .manifest import SessionSpec, check_spec_files, read_manifest
from .readers import Extraction, VideoReader, open_extraction, open_video, video_files

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
INGEST_VERSION: Final = "1"
STATUS_UNCHANGED: Final = "unchanged"
#: Footprints are chunked (and written) this many units at a time.
UNITS_PER_CHUNK: Final = 32
#: Trace chunks span at most this many frames.
TRACE_CHUNK_FRAMES: Final = 65536
_HASH_BLOCK: Final = 1 << 20
MOVIE_ZSTD_LEVEL: Final = 1
LABEL_VALUES: Final = ("good", "bad")
TRUTH_FILE: Final = "truth.json"


@dataclass(frozen=True)
class IngestOptions:
    """Options of :func:`ingest_cohort`.

    Parameters
    ----------
    chunk_frames
        Frames per zarr chunk of the movie (changes the output, so part of the input hash).
    decode_block_frames
        Frames decoded and held in memory at a time (memory only; not hashed).
    """

    chunk_frames: int = 100
    decode_block_frames: int = 256

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


def session_input_files(spec: SessionSpec) -> list[tuple[str, Path]]:
    """Return ``(role, path)`` of every input file of a session, in a fixed order.

    Roles are ``video/<name>`` (AVI chunks, ``timeStamps.csv``, ``metaData.json``),
    ``extraction``, ``events``, ``labels`` and ``truth`` (a ``truth.json`` beside the
    labels, which sets the labels' source).

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video or a missing AVI chunk.
    """
    chunks, extras = video_files(spec.video)
    files = [(f"video/{p.name}", p) for p in chunks + extras]
    files.append(("extraction", spec.extraction))
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

    The hash covers every input file's content (streamed in 1 MiB blocks), the
    manifest values written into the dataset (stage, day, fps, format), the options that
    change the output (``chunk_frames``) and the ingest and schema versions. File paths
    are not hashed: moving a cohort does not re-ingest it.

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
        "stage": spec.stage,
        "day": spec.day,
        "fps": spec.fps,
        "format": spec.format,
        "files": [[role, source_hashes[str(path.resolve())]] for role, path in files],
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), source_hashes


# =========================================================================== checks


def _check_agreement(spec: SessionSpec, video: VideoReader, ext: Extraction) -> None:
    """Check that the extraction was computed from this video."""
    h, w = video.height, video.width
    if isinstance(ext.A, np.ndarray):
        if ext.A.shape[1:] != (h, w):
            raise InputFormatError(
                f"footprints are {ext.A.shape[1]}x{ext.A.shape[2]} px but video frames are {h}x{w}",
                path=spec.extraction,
                field="A",
                fix="pair the extraction with the video it was computed from",
            )
    else:
        if ext.d1 is not None and ext.d2 is not None and (ext.d1, ext.d2) != (h, w):
            swapped = (ext.d1, ext.d2) == (w, h)
            raise InputFormatError(
                f"options.d1 x d2 = {ext.d1}x{ext.d2} but video frames are {h}x{w} (height x width)"
                + (" - d1/d2 look swapped" if swapped else ""),
                path=spec.extraction,
                field="options.d1",
                fix="pair the extraction with the video it was computed from"
                + ("; d1 is the height and d2 the width" if swapped else ""),
            )
        if ext.A.shape[0] != h * w:
            raise InputFormatError(
                f"footprints have {ext.A.shape[0]} pixels but video frames have {h}x{w} = {h * w}",
                path=spec.extraction,
                field="A",
                fix="pair the extraction with the video it was computed from (cropped or downsampled?)",
            )
    if ext.n_frames != video.n_frames:
        raise InputFormatError(
            f"traces have {ext.n_frames} frames but the video has {video.n_frames}",
            path=spec.extraction,
            field="C",
            fix="pair the extraction with the full video it was computed from (all AVI chunks)",
        )


def _resolve_fps(spec: SessionSpec, video: VideoReader, ext: Extraction) -> tuple[float, str]:
    """Pick the frame rate: manifest, video metadata, extraction ``Fs``, timestamps, AVI header."""
    candidates: list[tuple[float | None, str]] = [
        (spec.fps, "manifest"),
        (video.fps, "video_metadata"),
        (ext.fps, "extraction"),
    ]
    ts = video.timestamps_s
    if ts is not None and len(ts) > 1 and ts[-1] > ts[0]:
        candidates.append(((len(ts) - 1) / float(ts[-1] - ts[0]), "timestamps"))
    candidates.append((getattr(video, "container_fps", None), "avi_header"))
    known = [(f, s) for f, s in candidates if f is not None and np.isfinite(f) and f > 0]
    if not known:
        raise InputFormatError(
            "the frame rate is unknown (no fps in the manifest, metaData.json frameRate, extraction Fs or timestamps)",
            path=spec.video,
            field="fps",
            fix="add an 'fps' column to the manifest",
        )
    fps, source = known[0]
    if video.fps and ext.fps and abs(video.fps - ext.fps) > 0.01 * video.fps:
        logger.warning(
            "%s/%s/%s: video metadata says %.3g fps, extraction Fs says %.3g; using %s (%.3g)",
            *spec.key,
            video.fps,
            ext.fps,
            source,
            fps,
        )
    return float(fps), source


def _read_labels(spec: SessionSpec, unit_ids: np.ndarray) -> pa.Table | None:
    """Read ``labels.csv`` (``unit_id,label,reason``) into a :data:`LABELS_SCHEMA` table."""
    path = spec.labels
    if path is None:
        return None
    source = "simulator" if (path.parent / TRUTH_FILE).is_file() else "csv"
    ids: list[int] = []
    labels: list[str] = []
    reasons: list[str | None] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [(h or "").strip() for h in reader.fieldnames or []]
            for column in ("unit_id", "label"):
                if column not in header:
                    raise InputFormatError(
                        f"no '{column}' column (header: {', '.join(header) or 'empty'})",
                        path=path,
                        field=column,
                        fix="write the header 'unit_id,label,reason'",
                    )
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                if not any(row.values()):
                    continue
                try:
                    ids.append(int(float(row["unit_id"])))
                except ValueError:
                    raise InputFormatError(
                        f"line {reader.line_num}: unit id '{row['unit_id']}' is not a whole number",
                        path=path,
                        field="unit_id",
                        fix="use the extraction's unit ids",
                    ) from None
                label = row["label"].lower()
                if label not in LABEL_VALUES:
                    raise InputFormatError(
                        f"line {reader.line_num}: label '{row['label']}' is not one of {', '.join(LABEL_VALUES)}",
                        path=path,
                        field="label",
                        fix="label each unit 'good' or 'bad'",
                    )
                labels.append(label)
                reasons.append(row.get("reason") or None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFormatError(
            f"cannot read the labels ({type(exc).__name__}: {exc})",
            path=path,
            fix="save it as a UTF-8 CSV with the header 'unit_id,label,reason'",
        ) from None
    id_array = np.asarray(ids, dtype=np.int64)
    unknown = np.setdiff1d(id_array, unit_ids)
    if unknown.size:
        raise InputFormatError(
            f"labels name {unknown.size} unit ids the extraction does not have (e.g. {unknown[0]})",
            path=path,
            field="unit_id",
            fix="pair the labels with the extraction they were made for",
        )
    if len(np.unique(id_array)) != len(id_array):
        raise InputFormatError(
            "a unit is labelled more than once", path=path, field="unit_id", fix="keep one row per unit"
        )
    n = len(ids)
    return pa.Table.from_pydict(
        {
            "cohort": [spec.cohort] * n,
            "animal": [spec.animal] * n,
            "session": [spec.session] * n,
            "unit_id": ids,
            "label": labels,
            "reason": reasons,
            "source": [source] * n,
        },
        schema=LABELS_SCHEMA,
    )


# =========================================================================== writing


def _footprint_block(A: sp.csc_matrix | np.ndarray, start: int, stop: int, h: int, w: int) -> np.ndarray:
    """Return footprints ``start:stop`` as ``(n, h, w)`` float32 (column-major pixels)."""
    if isinstance(A, np.ndarray):
        return np.ascontiguousarray(A[start:stop], dtype=np.float32)
    dense = A[:, start:stop].toarray()  # (h*w, n), pixel index = y + x*h
    n = stop - start
    return np.ascontiguousarray(dense.T.reshape(n, w, h).transpose(0, 2, 1), dtype=np.float32)


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
    video: VideoReader,
    ext: Extraction,
    time_s: np.ndarray,
    attrs: dict[str, Any],
    options: IngestOptions,
) -> None:
    """Write the session dataset to ``store`` (a fresh path), streaming movie and footprints."""
    import dask.array as da
    import xarray as xr
    import zarr
    from zarr.codecs import ZstdCodec

    t, h, w, k = video.n_frames, video.height, video.width, ext.n_units
    cf = min(options.chunk_frames, t)
    ku = min(UNITS_PER_CHUNK, k)
    trace_chunks = (ku, min(t, TRACE_CHUNK_FRAMES))
    data_vars: dict[str, Any] = {
        "movie": ((FRAME, HEIGHT, WIDTH), da.zeros((t, h, w), chunks=(cf, h, w), dtype=video.dtype)),
        "A": ((UNIT_ID, HEIGHT, WIDTH), da.zeros((k, h, w), chunks=(ku, h, w), dtype=np.float32)),
        "C": ((UNIT_ID, FRAME), ext.C),
        "C_raw": ((UNIT_ID, FRAME), ext.C_raw),
        "S": ((UNIT_ID, FRAME), ext.S),
        "max_proj": ((HEIGHT, WIDTH), da.zeros((h, w), chunks=(h, w), dtype=video.dtype)),
    }
    if "Cn" in ext.extras:
        data_vars["Cn"] = ((HEIGHT, WIDTH), ext.extras["Cn"])
    ds = xr.Dataset(
        data_vars,
        coords={
            FRAME: np.arange(t, dtype=np.int64),
            "time_s": (FRAME, np.asarray(time_s, dtype=np.float64)),
            UNIT_ID: ext.unit_ids.astype(np.int64),
        },
        attrs=attrs,
    )
    compressors = (ZstdCodec(level=3),)
    encoding: dict[str, dict[str, Any]] = {
        # zstd level 1: on noisy 8-bit movies as small as level 3 and ~3x faster
        "movie": {"chunks": (cf, h, w), "compressors": (ZstdCodec(level=MOVIE_ZSTD_LEVEL),)},
        "A": {"chunks": (ku, h, w), "compressors": compressors},
        "max_proj": {"chunks": (h, w), "compressors": compressors},
        **{name: {"chunks": trace_chunks, "compressors": compressors} for name in ("C", "C_raw", "S")},
    }
    ds["movie"].attrs.update(units="camera counts", long_name="raw miniscope movie")
    ds["A"].attrs.update(long_name="spatial footprints")
    ds["time_s"].attrs.update(units="s", long_name="frame time relative to the first frame")
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet in the v3 spec; xarray reads it fine
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(store, mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=3)
    group = zarr.open_group(store, mode="r+", zarr_format=3)

    movie = group["movie"]
    max_proj: np.ndarray | None = None
    pos = 0
    # Decode the next block while the previous one is compressed and written: at most
    # two blocks (plus a partial chunk) are in memory.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
        pending: Future[None] | None = None
        for block in _aligned_blocks(video.iter_blocks(options.decode_block_frames), cf):
            n = len(block)
            if pos + n > t:
                raise InputFormatError(
                    f"the video decodes to more than its {t} frames",
                    path=video.path,
                    field="video",
                    fix="re-export the video; its AVI headers are inconsistent",
                )
            block_max = block.max(axis=0)
            max_proj = block_max if max_proj is None else np.maximum(max_proj, block_max)
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
            fix="re-copy the video chunks from the acquisition computer",
        )
    group["max_proj"][...] = max_proj

    footprints = group["A"]
    for start in range(0, k, ku):
        stop = min(start + ku, k)
        footprints[start:stop] = _footprint_block(ext.A, start, stop, h, w)


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

    video = open_video(spec.video)
    ext = open_extraction(spec.extraction, spec.format).read()
    _check_agreement(spec, video, ext)
    fps, fps_source = _resolve_fps(spec, video, ext)
    if video.timestamps_s is not None:
        time_s, time_source = video.timestamps_s, "timestamps"
    else:
        time_s, time_source = np.arange(video.n_frames, dtype=np.float64) / fps, "fps"
    labels = _read_labels(spec, ext.unit_ids)

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
        "source_video": _str(spec.video),
        "source_extraction": _str(spec.extraction),
        "source_events": _str(spec.events),
        "source_labels": _str(spec.labels),
        "input_hash": input_hash,
        "source_hashes": json.dumps(source_hashes, sort_keys=True),
        "chunk_frames": int(options.chunk_frames),
        "cellsift_version": _cellsift_version(),
        "ingested_at": _now(),
    }
    with staging_path(layout.tmp, suffix=".zarr") as staged:
        _write_store(staged, video=video, ext=ext, time_s=time_s, attrs=attrs, options=options)
        _validate_store(staged, final)
        publish_dir(staged, final)
    dataset_path = layout.relative(final)
    if labels is not None:
        write_parquet_atomic(
            labels, layout.table_file("labels", *spec.key), tmp_root=layout.tmp
        )
    catalog.upsert(
        SessionRecord(
            cohort=spec.cohort,
            animal=spec.animal,
            session=spec.session,
            stage=spec.stage,
            day=int(spec.day),
            fps=float(fps),
            video=_str(spec.video),
            extraction=_str(spec.extraction),
            events=_str(spec.events),
            labels=_str(spec.labels),
            source_format=ext.source_format,
            dataset_path=dataset_path,
            input_hash=input_hash,
            n_frames=video.n_frames,
            height=video.height,
            width=video.width,
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
        "ingested %s/%s/%s: %d frames %dx%d, %d units in %.1f s (%.0f frames/s)",
        *spec.key,
        video.n_frames,
        video.height,
        video.width,
        ext.n_units,
        seconds,
        video.n_frames / max(seconds, 1e-9),
    )
    return IngestResult(
        *spec.key,
        status=STATUS_INGESTED,
        n_frames=video.n_frames,
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
        logger.warning("failed %s/%s/%s: %s", *spec.key, message)
    else:
        logger.warning(
            "failed %s/%s/%s (kept the previous good version %s): %s",
            *spec.key,
            good.dataset_path,
            message,
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
        The session (usually from :func:`~cellsift.pipeline.manifest.read_manifest`).
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
    counts = {s: sum(r.status == s for r in results) for s in (STATUS_INGESTED, STATUS_UNCHANGED, STATUS_FAILED)}
    logger.info(
        "ingest of %s: %d ingested, %d unchanged, %d failed",
        source,
        counts[STATUS_INGESTED],
        counts[STATUS_UNCHANGED],
        counts[STATUS_FAILED],
    )
    return results
