"""Session start time, subject and imaging-plane metadata of an exported file."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from cellsift.catalog import SessionRecord
from cellsift.pipeline.export.nwb_inputs import SessionSource
from cellsift.pipeline.export.nwb_metadata import check_subjects, new_nwbfile, session_start_time
from cellsift.schemas import ParameterError, SessionKey


def _source(**attrs) -> SessionSource:
    record = SessionRecord("c1", "m07", "d2_safety", stage="safety", day=2, fps=20.0)
    return SessionSource(
        SessionKey("c1", "m07", "d2_safety"),
        record,
        Path("."),
        None,
        attrs,
        np.arange(3),
        np.arange(5) / 20.0,
    )


def test_start_time_from_the_miniscope_metadata_in_the_given_time_zone():
    zone = timezone(timedelta(hours=-5))
    start, note = session_start_time(_source(recording_start="2024-03-04T10:00:00.250"), zone)
    assert start == datetime(2024, 3, 4, 10, 0, 0, 250000, tzinfo=zone)
    assert "recordingStartTime" in note
    local, _ = session_start_time(_source(recording_start="2024-03-04T10:00:00.000"), None)
    assert local.tzinfo is not None and local.replace(tzinfo=None) == datetime(2024, 3, 4, 10)


def test_start_time_falls_back_to_the_source_files_then_a_placeholder(tmp_path):
    video = tmp_path / "0.avi"
    video.write_bytes(b"x")
    os.utime(video, (1_700_000_000, 1_700_000_000))
    start, note = session_start_time(_source(recording_start="", source_video=str(video)), None)
    assert start == datetime.fromtimestamp(1_700_000_000, tz=UTC) and "modification time" in note
    start, note = session_start_time(_source(source_video=str(tmp_path / "gone.avi")), None)
    assert start.year == 1970 and "placeholder" in note


def test_subject_defaults_are_explicit_unknowns_and_given_fields_win():
    nwb = new_nwbfile(_source(), subjects={}, timezone=UTC, cellsift_version="0+test")
    assert (nwb.subject.subject_id, nwb.subject.species, nwb.subject.sex, nwb.subject.age) == (
        "m07",
        "Mus musculus",
        "U",
        "P0D/",
    )
    assert "Cohort c1, animal m07, session d2_safety, stage safety, day 2" in nwb.session_description
    assert "written as defaults" in nwb.notes and "/" not in nwb.session_id
    given = {"c1/m07": {"sex": "F", "age": "P90D", "strain": "C57BL/6J"}}
    nwb = new_nwbfile(_source(), subjects=check_subjects(given), timezone=UTC, cellsift_version="0+test")
    assert (nwb.subject.sex, nwb.subject.age, nwb.subject.strain) == ("F", "P90D", "C57BL/6J")
    nwb = new_nwbfile(
        _source(), subjects={"m07": {"date_of_birth": "2023-12-01"}}, timezone=UTC, cellsift_version="0+test"
    )
    assert nwb.subject.age is None and nwb.subject.date_of_birth.date().isoformat() == "2023-12-01"


def test_bad_subject_fields_are_refused():
    with pytest.raises(ParameterError, match="weight_kg"):
        check_subjects({"m01": {"weight_kg": "0.02"}})
    with pytest.raises(ParameterError, match="not an ISO date"):
        check_subjects({"m01": {"date_of_birth": "1st of May"}})
