"""One session's ingest work, the task a Dask worker runs: hash, read, write a staged store.

:func:`stage_session` is what :func:`cellsift.pipeline.executor.run_sessions` calls once
per session (in this process, or as one task on a worker of a local or SLURM cluster):

1. hash the inputs (:func:`~cellsift.pipeline.ingest.inputs.compute_input_hash`); a
   session whose hash equals the good version already in the lake is ``unchanged``;
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

import json
import logging
import time
import traceback as tb
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cellsift.catalog import LakeLayout
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.ingest.inputs import SessionInputs, compute_input_hash, read_session_inputs
from cellsift.pipeline.ingest.spec import SessionSpec, check_spec_files
from cellsift.pipeline.ingest.writer import labels_table, write_session_store
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

    Raises
    ------
    ParameterError
        ``chunk_frames`` or ``decode_block_frames`` is not a whole number >= 1.
    """

    chunk_frames: int = 100
    decode_block_frames: int = 256
    check_orientation: bool = True

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "decode_block_frames"):
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


def _stage_or_raise(request: StageRequest, state: dict[str, str]) -> StagedSession:
    t0 = time.perf_counter()
    spec, options = request.spec, request.options
    check_spec_files(spec)
    LakeLayout(Path(request.lake)).session_dir(*spec.key)  # checks the names before any work
    input_hash, source_hashes = compute_input_hash(
        spec, chunk_frames=options.chunk_frames, check_orientation=options.check_orientation
    )
    state["input_hash"] = input_hash
    if request.known_hash and request.known_hash == input_hash:
        logger.info("unchanged %s/%s/%s", *spec.key)
        return StagedSession(
            spec, status="unchanged", input_hash=input_hash, seconds=time.perf_counter() - t0
        )

    inputs = read_session_inputs(
        spec, decode_block_frames=options.decode_block_frames, check_orientation=options.check_orientation
    )
    labels = labels_table(spec.cohort, spec.animal, spec.session, inputs.labels)
    staging = Path(request.staging)
    staged = staging / f"{SessionKey(*spec.key).slug}-{input_hash[:16]}.zarr"
    write_session_store(
        staging / "work",
        staged,
        inputs=inputs,
        attrs=_store_attrs(spec, inputs, input_hash=input_hash, source_hashes=source_hashes, options=options),
        chunk_frames=options.chunk_frames,
        check_orientation=options.check_orientation,
        extraction=spec.extraction,
    )
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
