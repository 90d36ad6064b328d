"""The built wheel holds every subpackage under ``cellsift`` and no generic top-level name."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("pipeline", "schemas", "cli", "catalog")


def test_wheel_contains_every_subpackage_folder(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cellsift-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"cellsift"}, tops
    assert "cellsift/__init__.py" in names
    for sub in SUBPACKAGES:  # every module of every subpackage, at any depth
        expected = {
            f"cellsift/{p.relative_to(REPO).as_posix()}"
            for p in (REPO / sub).rglob("*.py")
            if "_root" not in p.parts and "__pycache__" not in p.parts
        }
        assert expected, sub
        assert expected <= names, expected - names
    shipped_model = {
        f"cellsift/{p.relative_to(REPO).as_posix()}"
        for p in (REPO / "pipeline/classify/default_model").iterdir()
    }
    assert shipped_model and shipped_model <= names, shipped_model - names
    # every folder with an __init__.py under a subpackage is shipped too
    for sub in SUBPACKAGES:
        for init in (REPO / sub).glob("**/__init__.py"):
            rel = init.relative_to(REPO)
            if "_root" not in rel.parts:
                assert f"cellsift/{rel.as_posix()}" in names, rel
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "cellsift = cellsift.cli.app:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
