"""Ingest: a cohort's raw files in, one checked session dataset per session in the lake.

A cohort is described by a manifest (CSV or YAML) or a folder laid out as the demo
writes it; :func:`read_manifest` turns it into :class:`SessionSpec` entries.
:func:`ingest_cohort` then, for every session, hashes its input files (a session whose
inputs did not change is skipped), reads the extraction and the video with
:mod:`cellsift.pipeline.readers`, checks that they agree, writes the session's zarr
store and labels table and switches its catalog row to the new store. A session that
fails is recorded as failed without stopping the others.

Modules: :mod:`~cellsift.pipeline.ingest.spec` (a session's entry),
:mod:`~cellsift.pipeline.ingest.manifest` (reading manifests),
:mod:`~cellsift.pipeline.ingest.inputs` (input files, hashes, reading them aligned),
:mod:`~cellsift.pipeline.ingest.writer` (the zarr store),
:mod:`~cellsift.pipeline.ingest.staging` (one session's task: hash, read, write a staged
store) and :mod:`~cellsift.pipeline.ingest.cohort` (orchestration: one task per session
on a Dask cluster or in this process; the client alone publishes).
"""

from __future__ import annotations

from cellsift.pipeline.ingest.cohort import (
    STATUS_UNCHANGED,
    IngestOptions,
    IngestResult,
    ingest_cohort,
    ingest_session,
)
from cellsift.pipeline.ingest.inputs import INGEST_VERSION, compute_input_hash, session_input_files
from cellsift.pipeline.ingest.manifest import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, read_manifest
from cellsift.pipeline.ingest.spec import SessionSpec, check_spec_files

__all__ = [
    "INGEST_VERSION",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "STATUS_UNCHANGED",
    "IngestOptions",
    "IngestResult",
    "SessionSpec",
    "check_spec_files",
    "compute_input_hash",
    "ingest_cohort",
    "ingest_session",
    "read_manifest",
    "session_input_files",
]
