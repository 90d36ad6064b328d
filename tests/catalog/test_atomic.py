import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cellsift.catalog import publish_dir, staging_path, write_parquet_atomic
from cellsift.catalog.layout import LakeLayout, safe_name
from cellsift.schemas import LakeError


def test_publish_dir_replaces_whole_folder(tmp_path):
    final = tmp_path / "lake" / "x.zarr"
    for version in ("old", "new"):
        with staging_path(tmp_path / "tmp", suffix=".zarr") as staged:
            staged.mkdir()
            (staged / "data").write_text(version)
            if version == "old":
                (staged / "only-old").write_text("1")
            publish_dir(staged, final)
            assert not staged.exists()
    assert (final / "data").read_text() == "new"
    assert not (final / "only-old").exists()
    assert [p.name for p in final.parent.iterdir()] == ["x.zarr"]


def test_staging_is_cleaned_when_writing_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with staging_path(tmp_path) as staged:
            staged.mkdir()
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_parquet_written_atomically_and_replaced(tmp_path):
    final = tmp_path / "t" / "part-0.parquet"
    write_parquet_atomic(pa.table({"a": [1, 2]}), final, tmp_root=tmp_path / "tmp")
    write_parquet_atomic(pa.table({"a": [3]}), final, tmp_root=tmp_path / "tmp")
    assert pq.read_table(final).column("a").to_pylist() == [3]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_layout_paths_and_unsafe_names(tmp_path):
    layout = LakeLayout(tmp_path)
    path = layout.table_file("cells", "demo", "m01", "d1")
    assert path == tmp_path / "tables/cells/demo/m01/d1/part-0.parquet"
    assert layout.relative(path) == "tables/cells/demo/m01/d1/part-0.parquet"
    for bad in ("../x", "a/b", "", ".hidden", "a b"):
        with pytest.raises(LakeError):
            safe_name(bad, field="animal")
