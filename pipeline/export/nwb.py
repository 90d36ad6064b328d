"""Export a lake's sessions as NWB files (:func:`export_nwb`), one file per session.

Each file is written to a temporary file in its output folder and renamed into place
(:func:`os.replace`), so a reader never sees a half-written file and an older export is
replaced only by a complete new one. A session that fails is reported in its
:class:`ExportOutcome` with a one-line error and the others carry on.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal

from cellsift.catalog import STATUS_INGESTED, Catalog, LakeLayout, SessionRecord
from cellsift.pipeline.export.nwb_behaviour import add_cell_registry, add_events, add_freezing
from cellsift.pipeline.export.nwb_inputs import (
    SessionSource,
    cells_are_current,
    dff_matrix,
    open_session,
    session_table,
)
from cellsift.pipeline.export.nwb_metadata import add_imaging_plane, check_subjects, new_nwbfile
from cellsift.pipeline.export.nwb_ophys import (
    VIDEO_MODES,
    FrameClock,
    add_segmentation,
    add_summary_images,
    add_traces,
    add_video,
)
from cellsift.schemas import CellsiftError, ParameterError, SessionKey

logger = logging.getLogger(__name__)

__all__ = ["EXPORTED", "FAILED", "ExportOutcome", "VideoMode", "export_nwb", "nwb_path"]

EXPORTED: Final = "exported"
FAILED: Final = "failed"
VideoMode = Literal["link", "copy", "none"]


@dataclass(frozen=True)
class ExportOutcome:
    """What happened to one session.

    Attributes
    ----------
    key
        The session.
    status
        ``"exported"`` or ``"failed"``.
    path
        The NWB file written (``None`` when it failed).
    video
        How the video went in: ``"link"``, ``"copy"`` or ``"none"`` (also when the
        requested mode was impossible; :attr:`warnings` says why).
    n_units
        ROIs written.
    warnings
        Parts left out and why (e.g. no ΔF/F before ``cellsift analyze``).
    error
        One line for people when it failed.
    duration_s
        Wall time (s).
    contents
        The main parts written (``"PlaneSegmentation"``, ``"DfOverF"``, ``"trials"``, ...).
    """

    key: SessionKey
    status: str
    path: Path | None = None
    video: str = "none"
    n_units: int = 0
    warnings: tuple[str, ...] = ()
    error: str = ""
    duration_s: float = 0.0
    contents: tuple[str, ...] = field(default=(), compare=False)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def line(self) -> str:
        """One line for a terminal: the file written, or the session and its error."""
        if self.failed:
            return f"FAILED {self.key.label}: {self.error}"
        return f"exported {self.key.label} -> {self.path} ({self.n_units} ROIs, video {self.video})"


def nwb_path(out_dir: Path, key: SessionKey) -> Path:
    """Where the file of session ``key`` goes: ``OUT/<cohort>/<animal>/<session>.nwb``."""
    return out_dir / key.cohort / key.animal / f"{key.session}.nwb"


def _select(records: list[SessionRecord], sessions: Iterable[str | SessionKey] | None) -> list[SessionRecord]:
    if sessions is None:
        return records
    if isinstance(sessions, str | SessionKey):  # one session given bare
        sessions = [sessions]
    chosen: dict[tuple[str, str, str], SessionRecord] = {}
    for selector in sessions:
        text = selector.label if isinstance(selector, SessionKey) else str(selector).strip("/")
        hits = [
            r
            for r in records
            if text in (f"{r.cohort}/{r.animal}/{r.session}", f"{r.animal}/{r.session}", r.session)
        ]
        if not hits:
            raise ParameterError(
                f"no ingested session matches '{text}'",
                field="sessions",
                fix="give cohort/animal/session, animal/session or a session name from 'cellsift status'",
            )
        chosen.update({r.key: r for r in hits})
    return [r for r in records if r.key in chosen]


def _cellsift_version() -> str:
    from cellsift import __version__

    return str(__version__)


def _add_ophys(
    layout: LakeLayout, nwbfile: Any, plane: Any, source: SessionSource, clock: FrameClock
) -> list[str]:
    """The ``ophys`` module: ROIs, traces, summary images, cell registry; returns warnings."""
    module = nwbfile.create_processing_module(
        name="ophys", description="Cell candidates, their traces and summary images (cellsift)."
    )
    add_summary_images(module, source)
    if source.n_units == 0:
        return ["the session has no ROIs: no segmentation, traces or cell registry"]
    notes = []
    cells = None
    if cells_are_current(layout, source):
        cells = session_table(layout, "cells", source.key)
    else:
        notes.append(
            "no cells table of the current ingest: features and labels left out (run 'cellsift run')"
        )
    ps = add_segmentation(module, plane, source, cells)
    dff = dff_matrix(layout, source)
    if dff is None:
        notes.append("no dF/F: the traces table has no rows for the session (run 'cellsift analyze')")
    add_traces(module, ps, source, dff, clock)
    add_cell_registry(module, ps, session_table(layout, "cell_registry", source.key), source.unit_ids)
    return notes


def _contents(nwbfile: Any) -> list[str]:
    """Names of the main parts of ``nwbfile`` (for the outcome)."""
    ophys = nwbfile.processing["ophys"].data_interfaces
    parts = [name for name in ("Fluorescence", "Deconvolved", "DfOverF", "cell_registry") if name in ophys]
    if "ImageSegmentation" in ophys:
        parts.insert(0, "PlaneSegmentation")
    parts += ["OnePhotonSeries"] if "OnePhotonSeries" in nwbfile.acquisition else []
    parts += ["trials"] if nwbfile.trials is not None else []
    parts += list(nwbfile.events or {}) + [n for n in nwbfile.intervals if n != "trials"]
    if "behavior" in nwbfile.processing:
        parts += list(nwbfile.processing["behavior"].data_interfaces)
    return parts


def _build(
    layout: LakeLayout,
    source: SessionSource,
    *,
    video: str,
    out_dir: Path,
    subjects: Mapping[str, Mapping[str, str]],
    timezone: tzinfo | None,
    location: str | None,
) -> tuple[Any, str, list[str]]:
    """The NWB file of one session (not yet written), the video mode written and warnings."""
    nwbfile = new_nwbfile(source, subjects=subjects, timezone=timezone, cellsift_version=_cellsift_version())
    plane = add_imaging_plane(nwbfile, source, location=location)
    clock = FrameClock(source.time_s, source.fps)
    written, notes = add_video(nwbfile, plane, source, mode=video, out_dir=out_dir, clock=clock)
    notes += _add_ophys(layout, nwbfile, plane, source, clock)
    events = session_table(layout, "events", source.key)
    add_events(nwbfile, events)
    notes += add_freezing(nwbfile, session_table(layout, "behaviour", source.key), events)
    return nwbfile, written, notes


def _write_atomic(nwbfile: Any, path: Path) -> None:
    """Write ``nwbfile`` to a temporary file beside ``path``, then rename it into place."""
    from pynwb import NWBHDF5IO

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.nwb")  # pynwb wants .nwb
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Dd]ate is missing timezone.*")
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwbfile)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _export_one(
    layout: LakeLayout, record: SessionRecord, out_dir: Path, *, video: str, options: dict[str, Any]
) -> ExportOutcome:
    key = SessionKey(record.cohort, record.animal, record.session)
    started = time.perf_counter()
    try:
        source = open_session(layout, record)
        path = nwb_path(out_dir, key)
        nwbfile, written, notes = _build(layout, source, video=video, out_dir=path.parent, **options)
        _write_atomic(nwbfile, path)
        contents = _contents(nwbfile)
    except Exception as exc:  # one bad session never stops the others
        if isinstance(exc, CellsiftError):
            message = exc.one_line()
        else:
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            logger.debug("%s: export failed", key.label, exc_info=True)
        logger.error("%s: NWB export failed: %s", key.label, message)
        return ExportOutcome(key, FAILED, error=message, duration_s=time.perf_counter() - started)
    for note in notes:
        logger.warning("%s: %s", key.label, note)
    outcome = ExportOutcome(
        key,
        EXPORTED,
        path=path,
        video=written,
        n_units=source.n_units,
        warnings=tuple(notes),
        duration_s=time.perf_counter() - started,
        contents=tuple(contents),
    )
    logger.info("%s (%.1f s)", outcome.line, outcome.duration_s)
    return outcome


def export_nwb(
    lake: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    sessions: Iterable[str | SessionKey] | None = None,
    video: VideoMode = "link",
    subjects: Mapping[str, Mapping[str, str]] | None = None,
    location: str | None = None,
    timezone: tzinfo | None = None,
) -> list[ExportOutcome]:
    """Write one NWB file per ingested session of ``lake`` into ``out_dir``.

    Each file (``OUT/<cohort>/<animal>/<session>.nwb``) holds the subject and session
    metadata, the miniscope ``Device`` and ``ImagingPlane``, the video (see ``video``),
    an ``ophys`` module (``PlaneSegmentation`` with image masks from ``A`` and the
    ``cells`` table's features and classification; ``Fluorescence/C_raw``,
    ``Deconvolved/S``, ``dff/dff`` (ΔF/F) series; summary images; the session's
    ``cell_registry`` rows), the tones as ``trials``, shocks, freezing epochs and a
    ``behavior`` module (freezing summary and trace). Parts the lake does not have yet
    (no ``cellsift run``/``analyze``) are left out and listed in the outcome's warnings.

    Parameters
    ----------
    lake
        The lake folder.
    out_dir
        Output folder (created).
    sessions
        Sessions to export, each ``cohort/animal/session``, ``animal/session``, a session
        name (all animals) or a :class:`~cellsift.schemas.SessionKey`; ``None``: every
        ingested session.
    video
        ``"link"`` (default): an external link to the original video file(s) with their
        starting frames (paths relative to the NWB file; nothing is copied);
        ``"copy"``: the lake's movie written into the file in blocks of frames;
        ``"none"``: no video.
    subjects
        Subject fields cellsift does not record, per animal (key ``animal`` or
        ``cohort/animal``): ``species``, ``sex``, ``age`` (ISO 8601, e.g. ``"P90D"``),
        ``genotype``, ``strain``, ``weight`` (e.g. ``"0.025 kg"``), ``description``,
        ``date_of_birth`` (ISO date). Defaults: ``species="Mus musculus"``, ``sex="U"``
        (unknown), ``age="P0D/"`` (unknown).
    location
        The imaged brain area (Allen CCF name or acronym, e.g. ``"BLA"``); ``None``:
        unknown (written as ``"root"``).
    timezone
        Time zone of the acquisition computer's clock, for the naive Miniscope
        recording start (``None``: this machine's time zone).

    Returns
    -------
    list of ExportOutcome
        One per session, in catalog order.

    Raises
    ------
    ParameterError
        Unknown ``video`` mode, a ``sessions`` entry that matches no session, an
        unknown subject field.
    SessionNotFoundError
        No lake at ``lake``.
    """
    if video not in VIDEO_MODES:
        raise ParameterError(
            f"unknown video mode '{video}'", field="video", fix=f"use one of {', '.join(VIDEO_MODES)}"
        )
    checked = check_subjects(subjects)
    catalog = Catalog(Path(lake))
    records = _select(catalog.records(status=STATUS_INGESTED), sessions)
    if not records:
        logger.warning("%s: no ingested sessions to export", lake)
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"subjects": checked, "timezone": timezone, "location": location}
    logger.info("exporting %d session(s) to NWB in %s (video: %s)", len(records), out, video)
    return [_export_one(catalog.layout, r, out, video=video, options=options) for r in records]
