"""Tests of cohort manifests: CSV, YAML and demo folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cellsift.pipeline.ingest import SessionSpec, check_spec_files, read_manifest
from cellsift.schemas.errors import ManifestError, SessionNotFoundError
from tests.pipeline.fixtures import write_manifest_csv


def _files(root: Path, animal: str = "m1", session: str = "d1") -> Path:
    folder = root / animal / session
    (folder / "miniscope").mkdir(parents=True)
    (folder / "cnmfe_results.mat").write_bytes(b"x")
    (folder / "events.csv").write_text("event,onset_s,offset_s\n")
    (folder / "labels.csv").write_text("unit_id,label,reason\n")
    return folder


def _row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "cohort": "c1",
        "animal": "m1",
        "session": "d1",
        "stage": "conditioning",
        "day": 3,
        "video": "m1/d1/miniscope",
        "extraction": "m1/d1/cnmfe_results.mat",
        "events": "m1/d1/events.csv",
        "labels": "m1/d1/labels.csv",
        "fps": "",
    }
    row.update(overrides)
    return row


def test_csv_relative_paths_and_optional_columns(tmp_path: Path) -> None:
    _files(tmp_path)
    _files(tmp_path, session="d2")
    manifest = write_manifest_csv(
        tmp_path / "cohort.csv",
        [
            _row(),
            _row(
                session="d2",
                day="4",
                video="m1/d2/miniscope",
                extraction=str(tmp_path / "m1/d2/cnmfe_results.mat"),
                events="",
                labels="",
                fps="19.5",
                format="CNMFE_MAT",
            ),
        ],
    )
    specs = read_manifest(manifest)
    assert [s.session for s in specs] == ["d1", "d2"]
    first, second = specs
    assert first == SessionSpec(
        cohort="c1",
        animal="m1",
        session="d1",
        stage="conditioning",
        day=3,
        video=(tmp_path / "m1/d1/miniscope").resolve(),
        extraction=(tmp_path / "m1/d1/cnmfe_results.mat").resolve(),
        events=(tmp_path / "m1/d1/events.csv").resolve(),
        labels=(tmp_path / "m1/d1/labels.csv").resolve(),
        fps=None,
        format=None,
        manifest=manifest,
        line=2,
    )
    assert second.fps == 19.5 and second.events is None and second.labels is None
    assert second.format == "cnmfe_mat" and second.day == 4
    assert second.where.endswith("cohort.csv line 3")


def test_csv_missing_column(tmp_path: Path) -> None:
    row = _row()
    del row["stage"]
    manifest = write_manifest_csv(tmp_path / "m.csv", [row])
    with pytest.raises(ManifestError, match="no column 'stage'") as info:
        read_manifest(manifest)
    assert info.value.field == "stage" and info.value.path == str(manifest)


@pytest.mark.parametrize(
    ("change", "column", "pattern"),
    [
        ({"day": "three"}, "day", "not a whole number"),
        ({"day": ""}, "day", "empty"),
        ({"fps": "-2"}, "fps", "not a positive number"),
        ({"animal": "m 1/x"}, "animal", "cannot be used"),
        ({"extraction": ""}, "extraction", "empty"),
    ],
)
def test_csv_bad_values_name_line_and_column(tmp_path: Path, change: dict, column: str, pattern: str) -> None:
    _files(tmp_path)
    manifest = write_manifest_csv(tmp_path / "m.csv", [_row(session="d0"), _row(**change)])
    with pytest.raises(ManifestError, match=pattern) as info:
        read_manifest(manifest, check_files=False)
    assert info.value.field == column
    assert "line 3" in str(info.value)
    assert str(manifest) in str(info.value)


def test_missing_file_named_with_line_and_column(tmp_path: Path) -> None:
    _files(tmp_path)
    manifest = write_manifest_csv(
        tmp_path / "m.csv", [_row(), _row(session="d2", extraction="m1/d2/missing.mat")]
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    error = info.value
    assert error.field == "extraction" and error.path == str(manifest)
    assert "line 3" in str(error) and "missing.mat" in str(error)
    # without the file check the manifest reads, and the check can be done per session
    specs = read_manifest(manifest, check_files=False)
    check_spec_files(specs[0])
    with pytest.raises(ManifestError, match="line 3"):
        check_spec_files(specs[1])


def test_spec_without_manifest_raises_not_found(tmp_path: Path) -> None:
    spec = SessionSpec("c", "a", "s", "st", 1, tmp_path / "v", tmp_path / "e.mat")
    with pytest.raises(SessionNotFoundError) as info:
        check_spec_files(spec)
    assert info.value.field == "video"


def test_duplicate_session(tmp_path: Path) -> None:
    _files(tmp_path)
    manifest = write_manifest_csv(tmp_path / "m.csv", [_row(), _row()])
    with pytest.raises(ManifestError, match="listed twice"):
        read_manifest(manifest)


def test_empty_csv(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("cohort,animal,session,stage,day,video,extraction\n")
    with pytest.raises(ManifestError, match="no sessions"):
        read_manifest(tmp_path / "m.csv")


def test_yaml_mapping_with_top_level_cohort(tmp_path: Path) -> None:
    _files(tmp_path)
    _files(tmp_path, animal="m2")
    rows = [_row(), _row(animal="m2", video="m2/d1/miniscope", extraction="m2/d1/cnmfe_results.mat", fps=20)]
    for row in rows:
        del row["cohort"]
        row.pop("events")
        row.pop("labels")
    (tmp_path / "cohort.yaml").write_text(yaml.safe_dump({"cohort": "yc", "sessions": rows}))
    specs = read_manifest(tmp_path / "cohort.yaml")
    assert [(s.cohort, s.animal, s.fps) for s in specs] == [("yc", "m1", None), ("yc", "m2", 20.0)]
    assert specs[1].line == 2 and specs[1].where.endswith("entry 2")


def test_yaml_plain_list(tmp_path: Path) -> None:
    _files(tmp_path)
    (tmp_path / "m.yml").write_text(yaml.safe_dump([_row()]))
    (spec,) = read_manifest(tmp_path / "m.yml")
    assert spec.cohort == "c1" and spec.labels is not None


def test_yaml_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("sessions: [unclosed\n")
    with pytest.raises(ManifestError, match="YAML"):
        read_manifest(tmp_path / "bad.yaml")
    (tmp_path / "nolist.yaml").write_text("cohort: x\n")
    with pytest.raises(ManifestError, match="sessions"):
        read_manifest(tmp_path / "nolist.yaml")
    row = _row()
    del row["extraction"]
    (tmp_path / "nocol.yaml").write_text(yaml.safe_dump({"sessions": [row]}))
    with pytest.raises(ManifestError, match="entry 1 has no column 'extraction'"):
        read_manifest(tmp_path / "nocol.yaml")


def test_folder_with_cohort_csv(tmp_path: Path) -> None:
    _files(tmp_path)
    write_manifest_csv(tmp_path / "cohort.csv", [_row()])
    (spec,) = read_manifest(tmp_path)
    assert spec.stage == "conditioning" and spec.manifest == tmp_path / "cohort.csv"


def test_folder_walk(tmp_path: Path) -> None:
    root = tmp_path / "demo-cohort"
    _files(root, "m10", "day2")
    _files(root, "m2", "day10")
    _files(root, "m2", "day2")
    (root / "m2" / "notes").mkdir()  # not a session: ignored
    specs = read_manifest(root)
    assert [(s.animal, s.session, s.day) for s in specs] == [
        ("m2", "day2", 2),
        ("m2", "day10", 10),
        ("m10", "day2", 2),
    ]
    assert all(s.cohort == "demo-cohort" and s.events is not None for s in specs)


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SessionNotFoundError):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(SessionNotFoundError, match="no sessions"):
        read_manifest(tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match="unknown manifest type"):
        read_manifest(tmp_path / "m.txt")


# =========================================================================== format columns


def test_format_columns_parsed(tmp_path: Path) -> None:
    _files(tmp_path)
    manifest = write_manifest_csv(
        tmp_path / "m.csv",
        [
            _row(
                format="CaImAn",
                video_format="TIF",
                video_dataset="/mov",
                temporal_downsample="2",
                labels_format="inscopix_status",
                pixel_order="row-major",
            ),
            _row(session="d2", video=""),
            _row(session="d3", video="none"),
        ],
    )
    first, second, third = read_manifest(manifest)
    assert first.video is not None and not first.skip_video and first.format == "caiman"
    assert third.video is None and third.skip_video
    assert (first.video_format, first.video_dataset, first.temporal_downsample) == ("tiff", "/mov", 2)
    assert (first.labels_format, first.pixel_order) == ("inscopix_status", "C")
    assert second.video is None and not second.skip_video  # empty: the extraction's own video, if any


@pytest.mark.parametrize(
    ("change", "column", "pattern"),
    [
        ({"temporal_downsample": "1.5"}, "temporal_downsample", "not a whole number >= 1"),
        ({"temporal_downsample": "0"}, "temporal_downsample", "not a whole number >= 1"),
        ({"pixel_order": "diagonal"}, "pixel_order", "not a pixel order"),
        ({"format": "imagej"}, "format", "unknown extraction format"),
        ({"video_format": "mkv"}, "video_format", "unknown video format"),
        ({"labels_format": "xml"}, "labels_format", "unknown labels format"),
        ({"video": "none", "temporal_downsample": "2"}, "temporal_downsample", "no video"),
    ],
)
def test_format_columns_checked(tmp_path: Path, change: dict, column: str, pattern: str) -> None:
    _files(tmp_path)
    manifest = write_manifest_csv(tmp_path / "m.csv", [_row(**change)])
    with pytest.raises(ManifestError, match=pattern) as info:
        read_manifest(manifest, check_files=False)
    assert info.value.field == column and "line 2" in str(info.value)


def test_unknown_columns_typo_is_an_error_others_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    _files(tmp_path)
    typo = write_manifest_csv(tmp_path / "typo.csv", [_row(temporal_downsampling="2")])
    with pytest.raises(ManifestError, match="did you mean 'temporal_downsample'") as info:
        read_manifest(typo)
    assert info.value.field == "temporal_downsampling"
    extra = write_manifest_csv(tmp_path / "extra.csv", [_row(notes="first day", surgeon="A.B.")])
    with caplog.at_level(logging.WARNING):
        (spec,) = read_manifest(extra)
    assert "ignoring unknown columns notes, surgeon" in caplog.text and spec.session == "d1"
