"""``cellsift export nwb``: one file per session, one line each, exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from cellsift.cli import app

runner = CliRunner()


def test_export_nwb_writes_one_file_per_session(tiny_lake, tmp_path):
    out = tmp_path / "nwb"
    result = runner.invoke(
        app, ["export", "nwb", "--lake", str(tiny_lake), "--out", str(out), "--video", "none"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("*.nwb"))
    assert len(files) == 4
    assert all(f.parent.parent.parent == out for f in files)  # OUT/cohort/animal/session.nwb
    assert "nwb export: 4 exported, 0 failed" in result.output
    assert result.output.count("exported tiny/") == 4


def test_export_nwb_unknown_session_is_one_line(tiny_lake, tmp_path):
    result = runner.invoke(
        app,
        ["export", "nwb", "--lake", str(tiny_lake), "--out", str(tmp_path / "o"), "--session", "m99/nothing"],
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "m99/nothing" in lines[0]
