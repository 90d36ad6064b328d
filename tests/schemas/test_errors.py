import pickle

import pytest

from cellsift.schemas import (
    CellsiftError,
    InputFormatError,
    LakeError,
    ManifestError,
    SchemaError,
    SessionNotFoundError,
)


def test_message_names_file_field_and_fix():
    err = InputFormatError("has 10 pixels, expected 12", path="/data/a.mat", field="A", fix="check d1/d2")
    assert str(err) == "/data/a.mat: field 'A': has 10 pixels, expected 12. Fix: check d1/d2."
    assert "\n" not in err.one_line()


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (InputFormatError, ValueError),
        (SessionNotFoundError, FileNotFoundError),
        (ManifestError, ValueError),
        (SchemaError, ValueError),
        (LakeError, RuntimeError),
    ],
)
def test_errors_are_also_builtin_errors(cls, builtin):
    err = cls("problem")
    assert isinstance(err, CellsiftError)
    assert isinstance(err, builtin)


def test_errors_survive_pickling_as_on_dask_workers():
    err = SessionNotFoundError("missing", path="x.avi", field="video", fix="add it")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SessionNotFoundError
    assert back.one_line() == err.one_line()
    assert (back.path, back.field, back.fix) == ("x.avi", "video", "add it")
