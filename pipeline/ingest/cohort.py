"""Ingest: read a cohort's raw files and write one session dataset per session into the lake.

For every session of a manifest (see :mod:`cellsift.pipeline.ingest.manifest`), one task
(:func:`~cellsift.pipeline.ingest.staging.stage_session`, run by
:func:`cellsift.pipeline.executor.run_sessions` in this process or on the workers of a
Dask cluster, local or SLURM):

1. hashes the inputs (:mod:`~cellsift.pipeline.ingest.inputs`: SHA-256 of every file's
   content plus the manifest values and ingest options that change the output); a
   session whose hash equals the good version in the lake is ``unchanged``;
2. reads the extraction (any format of :mod:`cellsift.pipeline.readers`) and opens the
   video; checks that they agree (frame size, frame count, labels against unit ids);
3. writes the session's zarr store (:mod:`~cellsift.pipeline.ingest.writer`) into the
   run's staging folder ``LAKE/tmp/<run_id>/`` and checks it reads back.

The client alone writes into the lake (one writer, holding ``LAKE/run.lock``): as each
task finishes, :func:`_publish_session_version` moves the staged store to
``LAKE/sessions/<cohort>/<animal>/<session>/<input_hash[:16]>.zarr``, writes the labels
table, switches the catalog row to it (the atomic switch) and removes older versions. At
the end the run's staging folder is removed, whatever happened to the workers (a task
whose worker was killed is run again elsewhere by Dask; its half-written store is removed
with the folder).

A session that fails is recorded in the catalog as ``failed`` unless a good version of
it is already in the lake, which is then left exactly as it was (no file changes).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from cellsift.catalog import (
    STATUS_FAILED,
    STATUS_INGESTED,
    Catalog,
    LakeLayout,
    SessionRecord,
    cascade_new_input,
    publish_dir,
    remove_tree_quietly,
    run_lock,
    write_parquet_atomic,
)
from cellsift.pipeline.executor import SessionOutcome, run_sessions
from cellsift.pipeline.ingest.manifest import SessionSpec, read_manifest
from cellsift.pipeline.ingest.staging import (
    INGEST_STAGE,
    STAGED,
    IngestOptions,
    StagedSession,
    StageRequest,
    stage_session,
)
from cellsift.schemas import SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "IngestOptions",
    "IngestResult",
    "STATUS_UNCHANGED",
    "ingest_cohort",
    "ingest_session",
]

STATUS_UNCHANGED: Final = "unchanged"
_DEFAULT_OPTIONS: Final = IngestOptions()


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
        Wall time spent on the session (its task, plus publishing).
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


# =========================================================================== the catalog side


def _str(path: Path | None) -> str:
    return "" if path is None else str(path.resolve())


def _has_good_version(catalog: Catalog, spec: SessionSpec) -> SessionRecord | None:
    prev = catalog.get(*spec.key)
    if prev is not None and prev.status == STATUS_INGESTED and prev.dataset_path:
        if (catalog.root / prev.dataset_path).is_dir():
            return prev
    return None


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


def _publish_session_version(catalog: Catalog, staged: StagedSession) -> str:
    """Publish a staged store as the session's new version; return its path in the lake.

    Moves the store into ``sessions/``, writes (or drops) the labels table, switches the
    catalog row to the new store in one transaction and removes older versions. Only the
    client calls this: the lake has one writer.
    """
    spec, layout = staged.spec, catalog.layout
    session_dir = layout.session_dir(*spec.key)
    final = session_dir / f"{staged.input_hash[:16]}.zarr"
    publish_dir(Path(staged.store), final)
    dataset_path = layout.relative(final)
    cascade_new_input(layout, spec.key, store=final)  # its checksums; parts built from the old input go
    labels_file = layout.table_file("labels", *spec.key)
    if staged.labels is not None:
        write_parquet_atomic(staged.labels, labels_file, tmp_root=layout.tmp)
    elif labels_file.exists():
        labels_file.unlink()  # the new version has no labels: drop the old ones
    catalog.upsert(
        replace(
            _manifest_record(spec),
            fps=staged.fps,
            video=staged.video,
            source_format=staged.source_format,
            dataset_path=dataset_path,
            input_hash=staged.input_hash,
            n_frames=staged.n_frames,
            height=staged.height,
            width=staged.width,
            n_units=staged.n_units,
            status=STATUS_INGESTED,
        )
    )
    for sibling in session_dir.iterdir():
        if sibling != final and (sibling.suffix == ".zarr" or ".zarr.old-" in sibling.name):
            remove_tree_quietly(sibling)
            logger.debug("removed older version %s", sibling)
    return dataset_path


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


def _finish(catalog: Catalog, spec: SessionSpec, outcome: SessionOutcome) -> IngestResult:
    """The client's half of one session: publish what its task staged, or record why it failed."""
    staged = outcome.value if isinstance(outcome.value, StagedSession) else None
    if staged is None:  # the task itself failed (e.g. its worker was killed again and again)
        return _record_failure(spec, catalog, outcome.error, "", outcome.duration_s)
    if staged.traceback:
        logger.debug("unexpected error ingesting %s/%s/%s\n%s", *spec.key, staged.traceback)
    if staged.status == STAGED:
        t0 = time.perf_counter()
        try:
            dataset_path = _publish_session_version(catalog, staged)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: this session fails, not the cohort
            message = " ".join(f"could not publish the session: {type(exc).__name__}: {exc}".split())
            return _record_failure(spec, catalog, message, staged.input_hash, staged.seconds)
        seconds = staged.seconds + time.perf_counter() - t0
        logger.info("ingested %s/%s/%s -> %s in %.1f s", *spec.key, dataset_path, seconds)
        return IngestResult(
            spec.cohort,
            spec.animal,
            spec.session,
            status=STATUS_INGESTED,
            n_frames=staged.n_frames,
            n_units=staged.n_units,
            dataset_path=dataset_path,
            seconds=seconds,
        )
    good = _has_good_version(catalog, spec) if staged.status == STATUS_UNCHANGED else None
    if good is not None and good.input_hash == staged.input_hash:
        return IngestResult(
            spec.cohort,
            spec.animal,
            spec.session,
            status=STATUS_UNCHANGED,
            n_frames=good.n_frames,
            n_units=good.n_units,
            dataset_path=good.dataset_path,
            seconds=staged.seconds,
        )
    message = staged.error or "the lake's version changed while the session was ingested; ingest again"
    return _record_failure(spec, catalog, message, staged.input_hash, staged.seconds)


class _Publisher:
    """Publishes each session as soon as its task is done; one result per session, once."""

    def __init__(
        self, catalog: Catalog, specs: Sequence[SessionSpec], progress: Callable[[IngestResult], None] | None
    ) -> None:
        self.catalog = catalog
        self.specs = {SessionKey(*s.key): s for s in specs}
        self.progress = progress
        self.results: dict[SessionKey, IngestResult] = {}

    def handle(self, outcome: SessionOutcome) -> None:
        key = outcome.key
        if key in self.results:
            return
        result = _finish(self.catalog, self.specs[key], outcome)
        self.results[key] = result
        if self.progress is not None:
            self.progress(result)

    def watch(self, futures: Sequence[Any]) -> None:
        """The executor's progress hook: publish each session's store as its task finishes."""
        from distributed import as_completed

        for future in as_completed(futures):
            if future.status == "finished":
                self.handle(future.result())
            # an errored future (worker killed too often) is recorded from the executor's outcome


def _ingest_all(
    specs: Sequence[SessionSpec],
    catalog: Catalog,
    *,
    options: IngestOptions,
    client: Any,
    run_id: str,
    staging: Path,
    progress: Callable[[IngestResult], None] | None,
) -> list[IngestResult]:
    publisher = _Publisher(catalog, specs, progress)
    items = []
    for spec in specs:
        good = _has_good_version(catalog, spec)
        request = StageRequest(
            spec,
            lake=str(catalog.root.resolve()),
            staging=str(staging.resolve()),
            options=options,
            known_hash=good.input_hash if good is not None else "",
        )
        items.append((SessionKey(*spec.key), request))
    if client is None:  # in this process: publish each session before starting the next
        for item in items:
            for outcome in run_sessions([item], stage_session, stage=INGEST_STAGE, run_id=run_id):
                publisher.handle(outcome)
    else:
        outcomes = run_sessions(
            items, stage_session, stage=INGEST_STAGE, run_id=run_id, client=client, progress=publisher.watch
        )
        for outcome in outcomes:  # those the hook did not see: failed futures
            publisher.handle(outcome)
    return [publisher.results[key] for key, _ in items]


# =========================================================================== public


def ingest_session(
    spec: SessionSpec, lake: Path | str, *, options: IngestOptions = _DEFAULT_OPTIONS
) -> IngestResult:
    """Ingest one session into ``lake`` (created if missing), in this process.

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
    run_id = f"ingest-{uuid.uuid4().hex[:12]}"
    staging = catalog.layout.tmp / run_id
    try:
        return _ingest_all(
            [spec], catalog, options=options, client=None, run_id=run_id, staging=staging, progress=None
        )[0]
    finally:
        remove_tree_quietly(staging)


def ingest_cohort(
    source: Path | str,
    lake: Path | str,
    *,
    options: IngestOptions = _DEFAULT_OPTIONS,
    client: Any = None,
    progress: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest every session of a cohort into ``lake``: one task per session.

    Parameters
    ----------
    source
        Cohort manifest (CSV or YAML) or a folder laid out as the demo writes it.
    lake
        The lake folder (created if missing). With a ``client`` whose workers run on
        other machines, it must sit on a file system they share with this process, and
        so must the source files.
    options
        Ingest options.
    client
        A connected ``distributed.Client``: one task per session on its workers, which
        write staged stores only; this process publishes them. ``None``: every session
        in this process, one after the other.
    progress
        Called with each session's result as soon as it is published (in the order the
        sessions finish).

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
    run_id = f"ingest-{uuid.uuid4().hex[:12]}"
    with run_lock(layout.root, run_id=run_id) as stale:
        if stale:  # a killed writer may have left half-written staging folders
            for leftover in layout.tmp.iterdir() if layout.tmp.is_dir() else ():
                remove_tree_quietly(leftover)
        staging = layout.tmp / run_id
        try:
            results = _ingest_all(
                specs,
                catalog,
                options=options,
                client=client,
                run_id=run_id,
                staging=staging,
                progress=progress,
            )
        finally:  # whatever happened to the workers, no staged store outlives the run
            remove_tree_quietly(staging)
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
