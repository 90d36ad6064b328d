import dataclasses

import pytest

from cellsift.catalog import STATUS_FAILED, Catalog, SessionRecord
from cellsift.schemas import LakeError, SessionNotFoundError


def test_upsert_get_and_list(tmp_path):
    cat = Catalog(tmp_path / "lake", create=True)
    rec = SessionRecord("demo", "m01", "d1_conditioning", stage="conditioning", day=1, fps=20.0, n_units=4)
    cat.upsert(rec)
    cat.upsert(SessionRecord("demo", "m00", "d1", status=STATUS_FAILED, error="bad file"))
    got = cat.get("demo", "m01", "d1_conditioning")
    assert got is not None
    assert dataclasses.replace(got, updated_at="") == rec
    assert [r.animal for r in cat.records()] == ["m00", "m01"]
    assert [r.animal for r in cat.records(status=STATUS_FAILED)] == ["m00"]
    cat.upsert(dataclasses.replace(rec, n_units=7))
    assert len(cat.records()) == 2
    assert cat.get("demo", "m01", "d1_conditioning").n_units == 7
    frame = cat.to_frame()
    assert list(frame["animal"]) == ["m00", "m01"]
    assert cat.get("demo", "nope", "x") is None


def test_opening_a_folder_without_lake_says_what_to_do(tmp_path):
    with pytest.raises(SessionNotFoundError, match="cellsift ingest"):
        Catalog(tmp_path / "missing")


def test_corrupt_catalog_is_a_lake_error(tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LakeError, match="catalog"):
        Catalog(tmp_path)
