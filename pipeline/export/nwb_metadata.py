"""File-level metadata of an exported NWB file: session, subject, device, imaging plane.

cellsift records a session's cohort, animal, stage and day, its frame rate and (from a
Miniscope ``metaData.json``) when the recording started; it does not record the
species, sex or age of an animal, the indicator, the light path or the imaged brain
area. What it does not know is left out or written as NWB's explicit "unknown", never
guessed, except where NWB requires a value:

* ``session_start_time``: the Miniscope ``recordingStartTime`` (local time of the
  acquisition computer; its time zone is the ``timezone`` argument, by default this
  machine's). Without it, the earliest modification time of the session's source files
  (video, extraction), an upper bound of the start. The file's ``notes`` say which.
* subject: ``subject_id`` is the animal; ``species`` defaults to ``Mus musculus``
  (cellsift's fear-conditioning miniscope protocols are mouse protocols; override per
  animal); ``sex`` is ``"U"`` (NWB's code for unknown) and ``age`` ``"P0D/"`` (ISO 8601
  open range, "zero days or older": NWB's notation for an unknown age) unless given.
* imaging plane: excitation 470 nm and emission 525 nm are GCaMP defaults (NWB requires
  both, cellsift does not record them); the indicator is ``"unknown"`` and the location
  ``"root"`` (the whole brain in the Allen mouse CCF) unless given.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final

from cellsift.pipeline.export.nwb_inputs import SessionSource
from cellsift.schemas import PIPELINE_VERSION, ParameterError, SessionKey

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SPECIES",
    "EMISSION_NM",
    "EXCITATION_NM",
    "SUBJECT_FIELDS",
    "UNKNOWN_AGE",
    "UNKNOWN_LOCATION",
    "UNKNOWN_SEX",
    "add_imaging_plane",
    "check_subjects",
    "new_nwbfile",
    "session_start_time",
]

DEFAULT_SPECIES: Final = "Mus musculus"
UNKNOWN_SEX: Final = "U"
UNKNOWN_AGE: Final = "P0D/"
UNKNOWN_LOCATION: Final = "root"
EXCITATION_NM: Final = 470.0
EMISSION_NM: Final = 525.0
#: Subject fields a caller may give per animal (NWB ``Subject`` arguments).
SUBJECT_FIELDS: Final = (
    "species",
    "sex",
    "age",
    "genotype",
    "strain",
    "weight",
    "description",
    "date_of_birth",
)

_METADATA_JSON: Final = "metaData.json"


def check_subjects(subjects: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    """Validate per-animal subject fields; keys are ``animal`` or ``cohort/animal``.

    Raises
    ------
    ParameterError
        An unknown field name.
    """
    out: dict[str, dict[str, str]] = {}
    for animal, fields in (subjects or {}).items():
        unknown = sorted(set(fields) - set(SUBJECT_FIELDS))
        if unknown:
            raise ParameterError(
                f"unknown subject field(s) {', '.join(unknown)} for '{animal}'",
                field="subjects",
                fix=f"use {', '.join(SUBJECT_FIELDS)}",
            )
        born = str(fields.get("date_of_birth") or "")
        try:
            _ = datetime.fromisoformat(born) if born else None
        except ValueError:
            raise ParameterError(
                f"date_of_birth '{born}' of '{animal}' is not an ISO date",
                field="subjects",
                fix="write it as YYYY-MM-DD",
            ) from None
        out[str(animal)] = {k: str(v) for k, v in fields.items()}
    return out


def session_start_time(source: SessionSource, timezone: tzinfo | None) -> tuple[datetime, str]:
    """The session's start time (timezone-aware) and a sentence saying where it came from.

    Parameters
    ----------
    source
        The open session.
    timezone
        Time zone of the acquisition computer's clock (``None``: this machine's).
    """
    text = str(source.attrs.get("recording_start") or "")
    if text:
        try:
            start = datetime.fromisoformat(text)
        except ValueError:
            logger.warning("%s: cannot read recording_start %r", source.key.label, text)
        else:
            if start.tzinfo is None:
                start = start.replace(tzinfo=timezone) if timezone is not None else start.astimezone()
                zone = (
                    "the time zone given to the export"
                    if timezone is not None
                    else "this machine's time zone"
                )
                note = f"recordingStartTime of the Miniscope metaData.json, a local time read in {zone}"
            else:
                note = "recordingStartTime of the Miniscope metaData.json"
            return start, f"session_start_time: {note}."
    times = []
    for name in ("source_video", "source_extraction"):
        path = Path(str(source.attrs.get(name) or ""))
        if str(path) not in ("", ".") and path.exists():
            times.append(path.stat().st_mtime)
    if times:
        start = datetime.fromtimestamp(min(times), tz=UTC)
        return start, (
            "session_start_time: no recording start in the session's metadata; this is the earliest "
            "modification time of its source files (video, extraction), an upper bound of the start."
        )
    return datetime(1970, 1, 1, tzinfo=UTC), (
        "session_start_time: unknown (no recording start in the metadata, source files gone); "
        "1970-01-01T00:00Z is a placeholder."
    )


def _subject_fields(key: SessionKey, subjects: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    given = _given(key, subjects)
    fields: dict[str, str] = {
        "species": DEFAULT_SPECIES,
        "sex": UNKNOWN_SEX,
        "description": f"Animal {key.animal} of cohort {key.cohort}.",
    }
    if "date_of_birth" not in given:
        fields["age"] = UNKNOWN_AGE
    fields.update(given)
    return {k: v for k, v in fields.items() if v != ""}


def _description(source: SessionSource) -> str:
    rec = source.record
    stage = rec.stage or str(source.attrs.get("stage") or "")
    day = rec.day or source.attrs.get("day")
    parts = [f"Cohort {rec.cohort}, animal {rec.animal}, session {rec.session}"]
    if stage:
        parts.append(f"stage {stage}")
    if day:
        parts.append(f"day {day}")
    return (
        ", ".join(parts) + ". One-photon (miniscope) calcium imaging; cell candidates curated with cellsift "
        f"(pipeline {PIPELINE_VERSION})."
    )


def new_nwbfile(
    source: SessionSource,
    *,
    subjects: Mapping[str, Mapping[str, str]],
    timezone: tzinfo | None,
    cellsift_version: str,
) -> Any:
    """A new ``pynwb.NWBFile`` for ``source`` with its subject and session metadata.

    Parameters
    ----------
    source
        The open session.
    subjects
        Per-animal subject fields (validated by :func:`check_subjects`).
    timezone
        Time zone of the acquisition clock (``None``: this machine's).
    cellsift_version
        Written to ``source_script``.
    """
    from pynwb import NWBFile
    from pynwb.file import Subject

    key = source.key
    start, start_note = session_start_time(source, timezone)
    fields: dict[str, Any] = dict(_subject_fields(key, subjects))
    if "date_of_birth" in fields:
        fields["date_of_birth"] = _aware(datetime.fromisoformat(fields["date_of_birth"]), start)
    subject = Subject(subject_id=key.animal, **fields)
    notes = [
        start_note,
        "Times are seconds from session_start_time on the imaging clock (the first frame is 0 s).",
    ]
    given = _given(key, subjects)
    unknown = [
        f"{name} '{fields[name]}'"
        for name in ("species", "sex", "age")
        if name in fields and name not in given
    ]
    if unknown:
        notes.append(
            "Not recorded by cellsift, written as defaults: subject "
            + ", ".join(unknown)
            + " ('U' and 'P0D/' mean unknown)."
        )
    return NWBFile(
        session_description=_description(source),
        identifier=str(uuid.uuid4()),
        session_start_time=start,
        session_id=f"{key.cohort}-{key.animal}-{key.session}",
        subject=subject,
        notes=" ".join(notes),
        keywords=["miniscope", "one-photon calcium imaging", "cellsift"],
        source_script=f"cellsift {cellsift_version} (cellsift.pipeline.export.export_nwb)",
        source_script_file_name="cellsift",
    )


def _given(key: SessionKey, subjects: Mapping[str, Mapping[str, str]]) -> Mapping[str, str]:
    return subjects.get(f"{key.cohort}/{key.animal}") or subjects.get(key.animal) or {}


def _aware(when: datetime, like: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=like.tzinfo)


def _device_description(source: SessionSource) -> str:
    """What the Miniscope ``metaData.json`` says about the device, if it is still there."""
    base = "Head-mounted one-photon miniscope"
    if source.attrs.get("video_format") != "miniscope_avi":
        return base + "."
    folder = Path(str(source.attrs.get("source_video") or ""))
    for candidate in (folder / _METADATA_JSON, folder.parent / _METADATA_JSON):
        try:
            meta = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            known = {k: meta[k] for k in ("deviceType", "deviceName", "deviceID") if k in meta}
            if known:
                return (
                    base
                    + " ("
                    + ", ".join(f"{k} {v}" for k, v in known.items())
                    + f", from {candidate.name})."
                )
    return base + "."


def add_imaging_plane(nwbfile: Any, source: SessionSource, *, location: str | None) -> Any:
    """Add the miniscope ``Device``, its ``OpticalChannel`` and the ``ImagingPlane``.

    Parameters
    ----------
    nwbfile
        The file being built.
    source
        The open session.
    location
        The imaged brain area (Allen CCF name or acronym for mice); ``None``: unknown.

    Returns
    -------
    pynwb.ophys.ImagingPlane
    """
    from pynwb.ophys import OpticalChannel

    device = nwbfile.create_device(name="Miniscope", description=_device_description(source))
    channel = OpticalChannel(
        name="OpticalChannel",
        description=(
            f"Green emission; {EMISSION_NM:g} nm is the GCaMP emission peak used as a default "
            "(cellsift does not record the filter set)."
        ),
        emission_lambda=EMISSION_NM,
    )
    height, width = source.frame_size
    where = location or UNKNOWN_LOCATION
    return nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        device=device,
        description=(
            f"Miniscope field of view, {height} x {width} px, frames at {source.fps:g} Hz. "
            f"Excitation {EXCITATION_NM:g} nm and emission {EMISSION_NM:g} nm are GCaMP defaults, not "
            "recorded values; "
            + (
                f"location '{where}' as given."
                if location
                else "the indicator and the imaged area were not recorded ('root' = whole brain)."
            )
        ),
        excitation_lambda=EXCITATION_NM,
        indicator="unknown",
        location=where,
    )
