"""Curation labels files: every labels format detected and read, errors, CNMF-E before/after pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cellsift.pipeline.readers import (
    CnmfeMatReader,
    Extraction,
    detect_labels_format,
    read_labels_file,
)
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.fixtures import (
    blob_footprints,
    cnmfe_arrays,
    synthetic_traces,
    write_cnmfe_v5,
    write_inscopix_props,
    write_inscopix_traces,
    write_labels_csv,
)
from tests.pipeline.readers.conftest import FOUR_UNIT_FRAME

H, W = FOUR_UNIT_FRAME


def test_labels_formats_detected_and_read(
    tmp_path: Path, four_unit_extraction: Callable[..., Extraction]
) -> None:
    ext = four_unit_extraction(ids=np.array([0, 1, 2, 3]))
    kw = {"ext": ext, "fmt": None, "cohort": "c", "animal": "m1", "session": "d1"}
    plain = write_labels_csv(tmp_path / "l.csv", [0, 3], ["good", "bad"], ["", "dendrite"])
    got = read_labels_file(plain, **kw)
    assert detect_labels_format(plain) == "csv" and got.source == "csv" and got.reasons == (None, "dendrite")

    cohort = tmp_path / "cohort_labels.csv"
    cohort.write_text(
        "animal,session,unit_id,label\nm1,d1,1,keep\nm1,d2,1,bad\nm2,d1,2,bad\nm1,d1,2,exclude\n"
    )
    got = read_labels_file(cohort, **kw)
    assert detect_labels_format(cohort) == "cohort_csv"
    assert got.unit_ids.tolist() == [1, 2] and got.labels == ("good", "bad")
    assert read_labels_file(cohort, **{**kw, "animal": "m9"}) is None  # no rows for this session: no labels

    props = write_inscopix_props(
        tmp_path / "props.csv", [0, 1, 2, 3], ["accepted", "rejected", "undecided", "accepted"]
    )
    got = read_labels_file(props, **kw)
    assert detect_labels_format(props) == "inscopix_status" and got.source == "inscopix_cell_status"
    assert got.unit_ids.tolist() == [0, 1, 3] and got.labels == ("good", "bad", "good")

    traces = write_inscopix_traces(
        tmp_path / "traces.csv", [0, 2], ["rejected", "accepted"], np.zeros((2, 5))
    )
    got = read_labels_file(traces, **kw)
    assert got.unit_ids.tolist() == [0, 2] and got.labels == ("bad", "good")

    deleted = tmp_path / "deleted.csv"
    deleted.write_text("deleted_id\n2\n")
    got = read_labels_file(deleted, **kw)
    assert got.source == "cnmfe_manual_deletion" and got.labels == ("good", "good", "bad", "good")
    assert got.reasons[2] == "manually_deleted"
    flags = tmp_path / "flags.csv"
    flags.write_text("unit_id,deleted\n0,1\n1,0\n")
    assert read_labels_file(flags, **kw).labels == ("bad", "good")


@pytest.mark.parametrize(
    ("content", "fmt", "match"),
    [
        ("unit_id,label\n1,good\n1,bad\n", None, "labelled more than once"),
        ("unit_id,label\n99,good\n", None, "unit ids the extraction does not have"),
        ("unit_id,label\n1,maybe\n", None, "label 'maybe'"),
        ("Name,Status\nC01,accepted\nC02,pending\n", None, "cell status 'pending'"),
        ("deleted_id\n77\n", None, "deleted ids the extraction does not have"),
        ("deleted_id\n77\n", "xml", "unknown labels format"),
    ],
    ids=["twice", "unknown_unit", "bad_label", "bad_status", "unknown_deleted", "unknown_format"],
)
def test_labels_errors(
    tmp_path: Path, four_unit_extraction: Callable[..., Extraction], content: str, fmt: str | None, match: str
) -> None:
    ext = four_unit_extraction()
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(InputFormatError, match=match):
        read_labels_file(bad, ext=ext, fmt=fmt, cohort="c", animal="m1", session="d1")


def test_cnmfe_before_after_pair(tmp_path: Path) -> None:
    fp = blob_footprints(H, W, [(8, 9), (30, 14), (20, 40), (10, 30)])
    C, C_raw, S = synthetic_traces(4, 100, seed=1)
    before = CnmfeMatReader(
        write_cnmfe_v5(tmp_path / "before.mat", **cnmfe_arrays(fp, C), ids=np.array([11, 12, 13, 14]))
    ).read()
    keep = [0, 2, 3]
    after_ids = write_cnmfe_v5(
        tmp_path / "after_ids.mat", **cnmfe_arrays(fp[keep], C[keep]), ids=np.array([11, 13, 14])
    )
    kw = {"fmt": None, "cohort": "c", "animal": "m", "session": "s"}
    got = read_labels_file(after_ids, ext=before, **kw)
    assert detect_labels_format(after_ids) == "cnmfe_pair"
    assert got.labels == ("good", "bad", "good", "good") and got.source == "cnmfe_manual_deletion"
    # without ids: matched by footprint (a trimmed footprint still matches)
    trimmed = fp[keep].copy()
    trimmed[0][trimmed[0] < 0.3] = 0
    after_fp = write_cnmfe_v5(tmp_path / "after_fp.mat", **cnmfe_arrays(trimmed, C[keep]))
    before_no_ids = CnmfeMatReader(write_cnmfe_v5(tmp_path / "b2.mat", **cnmfe_arrays(fp, C))).read()
    assert read_labels_file(after_fp, ext=before_no_ids, **kw).labels == ("good", "bad", "good", "good")
    other = write_cnmfe_v5(tmp_path / "other.mat", **cnmfe_arrays(fp, C), ids=np.array([11, 12, 13, 99]))
    with pytest.raises(InputFormatError, match="ids the extraction lacks"):
        read_labels_file(other, ext=before, **kw)
