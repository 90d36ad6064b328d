"""Evaluation: the JSON + PNG report, and cross-validation on a lake grouped by animal."""

from __future__ import annotations

import json

from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.evaluation import cross_validate_on_lake, evaluate, write_report
from cellsift.pipeline.classify.lake_data import load_cell_data
from tests.pipeline.classify.synthetic import TINY_CLIPS, synthetic_cells


def test_report_writes_json_and_figures(tmp_path):
    train, test = synthetic_cells(100, seed=9), synthetic_cells(40, seed=10, cohort="t")
    model = ClipClassifier(TINY_CLIPS).fit(train)
    pred, metrics = evaluate(model, test)
    assert metrics["p_good"]["n"] == 40 and set(metrics["per_animal"]) == {f"t/m{i:02d}" for i in range(4)}
    path = write_report(tmp_path / "report", metrics=metrics, predictions=pred, model=model, data=test)
    report = json.loads(path.read_text())
    assert report["metrics"]["p_good"]["balanced_accuracy"] is not None
    for name in ("learning_curves.png", "roc_pr.png", "calibration.png", "confusion.png", "montage.png"):
        assert name in report["figures"] and (tmp_path / "report" / name).stat().st_size > 1000
    assert report["model_card"]["kind"] == "clips"


def test_cross_validate_on_lake_is_grouped_by_animal(processed_lake, tmp_path):
    metrics = cross_validate_on_lake(processed_lake, kind="features", n_folds=5, report_dir=tmp_path / "cv")
    assert metrics["n_folds"] == 2  # the tiny cohort has two animals
    animals = [tuple(f["animals"]) for f in metrics["per_fold"].values()]
    assert all(len(a) == 1 for a in animals) and len(set(animals)) == 2
    # every labelled, unflagged cell scored exactly once, by the fold that did not train on its animal
    n_labelled = len(load_cell_data(processed_lake, clips=False))
    assert metrics["n_cells"] == metrics["p_good"]["n"] == n_labelled
    assert sum(f["n"] for f in metrics["per_fold"].values()) == n_labelled
    assert 0.0 <= metrics["p_good"]["roc_auc"] <= 1.0  # (23 cells: too few to test accuracy here)
    assert (tmp_path / "cv" / "report.json").is_file() and (tmp_path / "cv" / "roc_pr.png").is_file()
