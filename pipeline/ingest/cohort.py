"""Ingest: read a cohort's raw files and write one session dataset per session into the lake.

For every session of a manifest (see :mod:`cellsift.pipeline.ingest.manifest`):

1. hash the inputs (:mod:`~cellsift.pipeline.ingest.inputs`: SHA-256 of every file's
   content plus the manifest values and ingest options that change the output); a
   session whose hash, catalog status and store are unchanged is skipped;
2. read the extraction (any format of :mod:`cellsift.pipeline.readers`) and open the
   video (headers only; the manifest's ``video``, else the extraction's own video, else
   none); check that they agree: frame size and pixel count, frame count (an exact
   integer ratio is a temporal downsampling, accepted only when the manifest declares
   ``temporal_downsample``), labels against unit ids;
3. write ``LAKE/tmp/<uuid>.zarr`` (:mod:`~cellsift.pipeline.ingest.writer`): traces and
   coordinates at once, then the movie streamed block by block (``decode_block_frames``
   frames in memory at a time) and the footprints 32 units at a time, checking the
   footprints' orientation against the movie on the way;
4. check the store reads back as a valid session dataset, move it to
   ``LAKE/sessions/<cohort>/<animal>/<session>/<input_hash[:16]>.zarr``, write the
   labels table, switch the catalog row to it (the atomic switch) and remove older
   versions.

A session that fails is recorded in the catalog as ``failed`` unless a good version of
it is already in the lake, which is then left exactly as it was (no file changes).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from cellsift.catalog import (
    STATUS_FAILED,
    STATUS_INGESTED,
    Catalog,
    LakeLayout,
    SessionRecord,
    remove_tree_quietly,
    run_lock,
    write_parquet_atomic,
)
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.ingest.inputs import SessionInputs, compute_input_hash, read_session_inputs
from cellsift.pipeline.ingest.manifest import SessionSpec, check_spec_files, read_manifest
from cellsift.pipeline.ingest.writer import labels_table, write_session_store
from cellsift.schemas import DATASET_SCHEMA_VERSION, CellsiftError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "IngestOptions",
    "IngestResult",
    "STATUS_UNCHANGED",
    "ingest_cohort",
    "ingest_session",
]

STATUS_UNCHANGED: Final = "unchanged"


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


# =========================================================================== one session


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


def _ingest_or_raise(
    spec: SessionSpec, catalog: Catalog, options: IngestOptions, state: dict[str, str]
) -> IngestResult:
    t0 = time.perf_counter()
    layout = catalog.layout
    check_spec_files(spec)
    session_dir = layout.session_dir(*spec.key)  # checks names before any work
    input_hash, source_hashes = compute_input_hash(
        spec, chunk_frames=options.chunk_frames, check_orientation=options.check_orientation
    )
    state["input_hash"] = input_hash

    good = _has_good_version(catalog, spec)
    if good is not None and good.input_hash == input_hash:
        logger.info("unchanged %s/%s/%s", *spec.key)
        return IngestResult(
            spec.cohort,
            spec.animal,
            spec.session,
            status=STATUS_UNCHANGED,
            n_frames=good.n_frames,
            n_units=good.n_units,
            dataset_path=good.dataset_path,
            seconds=time.perf_counter() - t0,
        )

    inputs = read_session_inputs(
        spec, decode_block_frames=options.decode_block_frames, check_orientation=options.check_orientation
    )
    labels = labels_table(spec.cohort, spec.animal, spec.session, inputs.labels)
    final = session_dir / f"{input_hash[:16]}.zarr"
    attrs = _store_attrs(spec, inputs, input_hash=input_hash, source_hashes=source_hashes, options=options)
    write_session_store(
        layout.tmp,
        final,
        inputs=inputs,
        attrs=attrs,
        chunk_frames=options.chunk_frames,
        check_orientation=options.check_orientation,
        extraction=spec.extraction,
    )
    dataset_path = layout.relative(final)
    labels_file = layout.table_file("labels", *spec.key)
    if labels is not None:
        write_parquet_atomic(labels, labels_file, tmp_root=layout.tmp)
    elif labels_file.exists():
        labels_file.unlink()  # the new version has no labels: drop the old ones
    _switch_catalog(catalog, spec, inputs, dataset_path=dataset_path, input_hash=input_hash)
    for sibling in session_dir.iterdir():
        if sibling != final and (sibling.suffix == ".zarr" or ".zarr.old-" in sibling.name):
            remove_tree_quietly(sibling)
            logger.debug("removed older version %s", sibling)
    ext, (height, width) = inputs.ext, inputs.dims
    seconds = time.perf_counter() - t0
    logger.info(
        "ingested %s/%s/%s: %d frames %dx%d%s, %d units in %.1f s",
        *spec.key,
        ext.n_frames,
        height,
        width,
        "" if inputs.video is not None else " (no movie)",
        ext.n_units,
        seconds,
    )
    return IngestResult(
        spec.cohort,
        spec.animal,
        spec.session,
        status=STATUS_INGESTED,
        n_frames=ext.n_frames,
        n_units=ext.n_units,
        dataset_path=dataset_path,
        seconds=seconds,
    )


def _manifest_record(spec: SessionSpec) -> SessionRecord:
    """The session's catalog row as far as its manifest row gives it (key, stage, day, inputs)."""
    return SessionRecord(
        cohort=spec.cohort,
        animal=spec.animal,
        session=spec.session,
        stage=spec.stage,
        day=int(spec.day),
        extraction=_str(spec.extraction),
        events=_str(spec.events),
        labels=_str(spec.labels),
    )


def _switch_catalog(
    catalog: Catalog, spec: SessionSpec, inputs: SessionInputs, *, dataset_path: str, input_hash: str
) -> None:
    """Point the session's catalog row at the new store (the atomic switch)."""
    ext, (height, width) = inputs.ext, inputs.dims
    catalog.upsert(
        replace(
            _manifest_record(spec),
            fps=float(inputs.fps),
            video=_str(None if inputs.video is None else Path(inputs.video.path)),
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


def _record_failure(
    spec: SessionSpec, catalog: Catalog, message: str, input_hash: str, seconds: float
) -> IngestResult:
    good = _has_good_version(catalog, spec)
    if good is None:
        catalog.upsert(
            replace(
                _manifest_record(spec),
                fps=float(spec.fps or 0.0),
                video=_str(spec.video),
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
    return IngestResult(
        spec.cohort, spec.animal, spec.session, status=STATUS_FAILED, error=message, seconds=seconds
    )


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


# =========================================================================== public


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
