"""One session's ingest work, the task a Dask worker runs: hash, read, write a staged store.

:func:`stage_session` is what :func:`cellsift.pipeline.executor.run_sessions` calls once
per session (in this process, or as one task on a worker of a local or SLURM cluster):

1. hash the inputs (:func:`~cellsift.pipeline.ingest.inputs.compute_input_hash`); a
   session whose hash equals the good version already in the lake is ``unchanged``. A
   session without a good version in the lake is hashed on a thread of its own while
   steps 2 and 3 run (the store is written under a provisional name, then its hash
   attributes are filled in and it is renamed), so hashing costs no wall time;
   the video starts decoding on a thread (a bounded prefetch) before step 2;
2. read the extraction and the video aligned
   (:func:`~cellsift.pipeline.ingest.inputs.read_session_inputs`);
3. write the session's zarr store with
   :func:`~cellsift.pipeline.ingest.writer.write_session_store` to
   ``LAKE/tmp/<run_id>/<session slug>-<input_hash[:16]>.zarr`` (its own scratch under
   ``LAKE/tmp/<run_id>/work/``), and build the labels table.

The task never touches the catalog, the ``sessions/`` folders or the tables: it returns a
:class:`StagedSession` and the client alone publishes it (one writer per lake). Everything
it writes lies under the run's staging folder, which the client removes at the end, so a
worker killed half-way leaves nothing behind once the run ends. It never raises: a failure
is a :class:`StagedSession` with status ``failed``, its one-line error and the input hash
computed so far.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import traceback as tb
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.catalog import LakeLayout, publish_dir
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.ingest.inputs import SessionInputs, compute_input_hash, read_session_inputs
from cellsift.pipeline.ingest.spec import SessionSpec, check_spec_files
from cellsift.pipeline.ingest.streaming import PREFETCH_BLOCK_BYTES, PREFETCH_MIB, Prefetch
from cellsift.pipeline.ingest.writer import labels_table, write_session_store
from cellsift.pipeline.readers import open_video
from cellsift.schemas import DATASET_SCHEMA_VERSION, CellsiftError, ParameterError, SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "INGEST_STAGE",
    "STAGED",
    "IngestOptions",
    "StageRequest",
    "StagedSession",
    "stage_session",
]

#: Stage name of ingest in task keys and outcomes.
INGEST_STAGE: Final = "ingest"
#: Status of a session whose new store is staged, waiting for the client to publish it.
STAGED: Final = "staged"


@dataclass(frozen=True)
class IngestOptions:
    """Options of :func:`~cellsift.pipeline.ingest.cohort.ingest_cohort`.

    Parameters
    ----------
    chunk_frames
        Frames per zarr chunk of the movie (changes the output, so part of the input hash).
    decode_block_frames
        Frames decoded and held in memory at a time (memory only; not hashed).
    check_orientation
        Check footprints against the movie's peak frames (transposed / pixel order).
    prefetch_mib
        Decoded frames (MiB) the video may run ahead while the extraction is read and the
        inputs hashed (memory only; not hashed). A constant bound whatever the session's
        length: it fills only as far as the reading lasts.

    Raises
    ------
    ParameterError
        ``chunk_frames``, ``decode_block_frames`` or ``prefetch_mib`` is not a whole number >= 1.
    """

    chunk_frames: int = 100
    decode_block_frames: int = 256
    check_orientation: bool = True
    prefetch_mib: int = PREFETCH_MIB

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "decode_block_frames", "prefetch_mib"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError(
                    f"must be a whole number >= 1, got {value!r}",
                    field=name,
                    fix=f"pass {name}=100 or another positive number of frames",
                )


@dataclass(frozen=True)
class StageRequest:
    """What one ingest task needs (picklable: it travels to a worker).

    Parameters
    ----------
    spec
        The session.
    lake
        The lake's root folder (on a file system the workers share with the client).
    staging
        The run's staging folder, ``LAKE/tmp/<run_id>``.
    options
        Ingest options.
    known_hash
        Input hash of the good version already in the lake ("" when there is none).
    """

    spec: SessionSpec
    lake: str
    staging: str
    options: IngestOptions
    known_hash: str = ""


@dataclass(frozen=True)
class StagedSession:
    """What one ingest task produced, for the client to publish.

    Attributes
    ----------
    spec
        The session.
    status
        ``"staged"`` (a new store waits at :attr:`store`), ``"unchanged"`` (same input
        hash as the good version in the lake) or ``"failed"``.
    input_hash
        The session's input hash ("" when it failed before hashing).
    store
        The staged store (absolute path; "" unless staged).
    labels
        The labels table (``pyarrow.Table``) or ``None``.
    fps, video, source_format, n_frames, height, width, n_units
        The catalog row's values (Hz, absolute path, format name, frames, px, px, units).
    error
        One-line error when failed.
    traceback
        The traceback of an unexpected exception (for the debug log).
    seconds
        Wall time of the task (s).
    """

    spec: SessionSpec
    status: str
    input_hash: str = ""
    store: str = ""
    labels: Any = None
    fps: float = 0.0
    video: str = ""
    source_format: str = ""
    n_frames: int = 0
    height: int = 0
    width: int = 0
    n_units: int = 0
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0


def _cellsift_version() -> str:
    try:
        from cellsift import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _str(path: Path | None) -> str:
    return "" if path is None else str(path.resolve())


def _store_attrs(
    spec: SessionSpec,
    inputs: SessionInputs,
    *,
    input_hash: str,
    source_hashes: dict[str, str],
    options: IngestOptions,
) -> dict[str, Any]:
    """The session dataset's attributes: where it came from and how it was stored."""
    ext, video, alignment = inputs.ext, inputs.video, inputs.alignment
    video_path = None if video is None else Path(video.path)
    return {
        "schema_version": DATASET_SCHEMA_VERSION,
        "cohort": spec.cohort,
        "animal": spec.animal,
        "session": spec.session,
        "stage": spec.stage,
        "day": int(spec.day),
        "fps": float(inputs.fps),
        "fps_source": inputs.fps_source,
        "time_source": inputs.time_source,
        "source_format": ext.source_format,
        "video_format": "" if video is None else video.format,
        "source_video": _str(video_path),
        "source_extraction": _str(spec.extraction),
        "source_events": _str(spec.events),
        "source_labels": _str(spec.labels),
        "labels_sources": json.dumps([s.source for s in inputs.labels]),
        "c_raw_source": ext.c_raw_source,
        "pixel_order": ext.pixel_order,
        "temporal_downsample": int(alignment.ratio),
        "downsampled": {"traces": "traces", "video": "movie"}.get(alignment.longer, ""),
        "source_trace_frames": int(inputs.n_trace_frames),
        "source_video_frames": 0 if video is None else int(video.n_frames),
        "recording_start": getattr(video, "start_time", None) or "",
        "input_hash": input_hash,
        "source_hashes": json.dumps(source_hashes, sort_keys=True),
        "chunk_frames": int(options.chunk_frames),
        "cellsift_version": _cellsift_version(),
        "ingested_at": utc_now().isoformat(timespec="seconds"),
    }


class _Hashing:
    """:func:`compute_input_hash` on a thread of its own (hashlib and file reads release the
    GIL), so a new session's inputs are hashed while its extraction is read and its movie
    decoded, instead of before."""

    def __init__(self, spec: SessionSpec, options: IngestOptions) -> None:
        self._result: tuple[str, dict[str, str]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(spec, options), name="ingest-hash", daemon=True
        )
        self._thread.start()

    def _run(self, spec: SessionSpec, options: IngestOptions) -> None:
        try:
            self._result = compute_input_hash(
                spec, chunk_frames=options.chunk_frames, check_orientation=options.check_orientation
            )
        except BaseException as exc:  # noqa: BLE001 - raised on the calling thread by result()
            self._error = exc

    @property
    def failed(self) -> bool:
        """Whether hashing has already failed."""
        return self._error is not None

    def result(self, state: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Wait for the hash; record it in ``state``; raise hashing's own error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._result is None:  # pragma: no cover - the thread always sets one of the two
            raise RuntimeError("input hashing ended without a result")
        state["input_hash"] = self._result[0]
        return self._result


def _set_hash_attrs(store: Path, input_hash: str, source_hashes: dict[str, str]) -> None:
    """Fill in the input hash attributes of a store written before its hash was known."""
    import zarr

    group = zarr.open_group(store, mode="r+")
    group.attrs.update({"input_hash": input_hash, "source_hashes": json.dumps(source_hashes, sort_keys=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(store)


def _prefetch(spec: SessionSpec, options: IngestOptions) -> Prefetch | None:
    """Start decoding the manifest's video before the extraction is read (``None``
    without a manifest video, or when it does not open: the reader reports that)."""
    if spec.video is None:
        return None
    try:
        video = open_video(spec.video, format=spec.video_format, dataset=spec.video_dataset)
    except CellsiftError:
        return None
    frame_bytes = max(1, video.height * video.width * np.dtype(video.dtype).itemsize)
    block = max(1, min(options.decode_block_frames, PREFETCH_BLOCK_BYTES // frame_bytes))
    return Prefetch(
        video.iter_blocks(block), max_blocks=(options.prefetch_mib << 20) // (block * frame_bytes)
    )


def _use_prefetch(inputs: SessionInputs, prefetch: Prefetch | None) -> SessionInputs:
    """The inputs streaming the prefetched frames when they are the stored frames as they
    are (no averaging of a longer video); else the prefetch is stopped."""
    if prefetch is None:
        return inputs
    if inputs.frames is None or inputs.alignment.longer == "video":
        prefetch.close()
        return inputs
    close = getattr(inputs.frames, "close", None)
    if close is not None:
        close()
    return dataclasses.replace(inputs, frames=prefetch)


def _stage_or_raise(request: StageRequest, state: dict[str, str]) -> StagedSession:
    """Hash, read, write. A session with a good version in the lake (``known_hash``) is
    hashed first, so an unchanged one is skipped without decoding; a new one is hashed on
    a thread while it is read and written (its store is renamed once the hash is known).
    The manifest's video starts decoding (:class:`Prefetch`, bounded) before the
    extraction is read."""
    t0 = time.perf_counter()
    spec, options = request.spec, request.options
    check_spec_files(spec)
    LakeLayout(Path(request.lake)).session_dir(*spec.key)  # checks the names before any work
    hashing: _Hashing | None = None
    input_hash, source_hashes = "", {}
    if request.known_hash:
        input_hash, source_hashes = compute_input_hash(
            spec, chunk_frames=options.chunk_frames, check_orientation=options.check_orientation
        )
        state["input_hash"] = input_hash
        if request.known_hash == input_hash:
            logger.info("unchanged %s/%s/%s", *spec.key)
            return StagedSession(
                spec, status="unchanged", input_hash=input_hash, seconds=time.perf_counter() - t0
            )
    else:
        hashing = _Hashing(spec, options)
    staging = Path(request.staging)
    prefetch = _prefetch(spec, options)
    try:
        inputs = read_session_inputs(
            spec, decode_block_frames=options.decode_block_frames, check_orientation=options.check_orientation
        )
        inputs = _use_prefetch(inputs, prefetch)
        if hashing is not None and hashing.failed:
            hashing.result(state)  # raises hashing's error, as when hashing came first
        labels = labels_table(spec.cohort, spec.animal, spec.session, inputs.labels)
        written = staging / f"{SessionKey(*spec.key).slug}-{input_hash[:16] or uuid.uuid4().hex}.zarr"
        write_session_store(
            staging / "work",
            written,
            inputs=inputs,
            attrs=_store_attrs(
                spec, inputs, input_hash=input_hash, source_hashes=source_hashes, options=options
            ),
            chunk_frames=options.chunk_frames,
            check_orientation=options.check_orientation,
            extraction=spec.extraction,
        )
    except BaseException:
        if prefetch is not None:
            prefetch.close()
        if hashing is not None:
            hashing.result(state)  # hashing's error first; else the hash goes into the failure record
        raise
    staged = written
    if hashing is not None:
        input_hash, source_hashes = hashing.result(state)
        _set_hash_attrs(written, input_hash, source_hashes)
        staged = staging / f"{SessionKey(*spec.key).slug}-{input_hash[:16]}.zarr"
        publish_dir(written, staged)
    ext, (height, width) = inputs.ext, inputs.dims
    seconds = time.perf_counter() - t0
    logger.info(
        "staged %s/%s/%s: %d frames %dx%d%s, %d units in %.1f s",
        *spec.key,
        ext.n_frames,
        height,
        width,
        "" if inputs.video is not None else " (no movie)",
        ext.n_units,
        seconds,
    )
    return StagedSession(
        spec,
        status=STAGED,
        input_hash=input_hash,
        store=str(staged),
        labels=labels,
        fps=float(inputs.fps),
        video=_str(None if inputs.video is None else Path(inputs.video.path)),
        source_format=ext.source_format,
        n_frames=int(ext.n_frames),
        height=int(height),
        width=int(width),
        n_units=int(ext.n_units),
        seconds=seconds,
    )


def stage_session(context: Any, request: StageRequest) -> StagedSession:
    """Hash, read and write one session into the run's staging folder; never raises.

    Parameters
    ----------
    context
        The executor's per-worker context (unused: ingest needs no per-worker state).
    request
        The session and where to stage it.

    Returns
    -------
    StagedSession
        ``staged``, ``unchanged`` or ``failed`` (with a one-line error naming the file,
        field and fix, and the input hash when it was computed before the failure).
    """
    del context
    t0 = time.perf_counter()
    state: dict[str, str] = {}
    trace = ""
    try:
        return _stage_or_raise(request, state)
    except CellsiftError as exc:
        message = exc.one_line()
    except Exception as exc:  # noqa: BLE001 - one bad session never stops the cohort
        trace = tb.format_exc()
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
    return StagedSession(
        request.spec,
        status="failed",
        input_hash=state.get("input_hash", ""),
        error=message,
        traceback=trace,
        seconds=time.perf_counter() - t0,
    )
