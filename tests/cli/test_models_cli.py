"""The model commands' error paths and progress output (fast: no training)."""

from __future__ import annotations

from typer.testing import CliRunner

from cellsift.cli import app

runner = CliRunner()


def test_models_list_on_a_missing_lake_is_one_error_line(tmp_path):
    missing = tmp_path / "nonexistent"
    result = runner.invoke(app, ["models", "list", "--lake", str(missing)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(missing) in lines[0] and "cellsift ingest" in lines[0]


def test_train_refuses_a_registered_id_before_loading_anything(tmp_path):
    (tmp_path / "lake" / "models" / "lab-v1").mkdir(parents=True)
    args = ["train", "--lake", str(tmp_path / "lake"), "--kind", "features", "--model-id", "lab-v1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "already registered" in result.output and "--overwrite" in result.output
    assert "loading labels" not in result.output


def test_train_prints_progress_lines(capsys):
    from cellsift.cli.commands.models import _show_progress
    from cellsift.pipeline.classify import report_progress

    with _show_progress():
        report_progress("labels: %d cells (%d good / %d bad) from %d animals", 10, 6, 4, 2)
    report_progress("not shown outside a train command")
    assert capsys.readouterr().out == "labels: 10 cells (6 good / 4 bad) from 2 animals\n"


def test_evaluate_sizes_option_errors(tmp_path):
    lake = str(tmp_path)
    result = runner.invoke(app, ["evaluate", "--lake", lake, "--sizes", "100,50"])
    assert result.exit_code == 1 and "--protocol capstone" in result.output
    result = runner.invoke(app, ["evaluate", "--lake", lake, "--protocol", "capstone", "--sizes", "x"])
    assert result.exit_code == 1 and "--sizes 377,300,150,50" in result.output
