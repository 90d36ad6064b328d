"""Evaluation: the JSON + PNG report, and cross-validation on a lake grouped by animal."""

from __future__ import annotations

import json

from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.data import CellData
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


def _documented_figures() -> dict[str, set[str]]:
    """``{protocol: PNG names}`` from the report table of docs/classification.md."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "classification.md").read_text()
    out = {}
    for line in doc.splitlines():
        m = re.match(r"\| `(heldout|cv|capstone)` \|(.*)\|$", line)
        if m:
            out[m.group(1)] = set(re.findall(r"`([a-z_]+\.png)`", m.group(2)))
    return out


def test_docs_list_exactly_the_report_files(processed_lake, tmp_path):
    from cellsift.pipeline.classify.capstone import capstone_on_lake
    from cellsift.pipeline.classify.evaluation import evaluate_on_lake

    documented = _documented_figures()
    assert set(documented) == {"heldout", "cv", "capstone"}
    evaluate_on_lake(processed_lake, "default", report_dir=tmp_path / "heldout")  # an ensemble: clips
    cross_validate_on_lake(processed_lake, kind="features", report_dir=tmp_path / "cv")
    capstone_on_lake(processed_lake, models=("features",), report_dir=tmp_path / "capstone")
    for protocol, names in documented.items():
        written = {p.name for p in (tmp_path / protocol).iterdir()}
        assert written == names | {"report.json"}, protocol
        assert set(json.loads((tmp_path / protocol / "report.json").read_text())["figures"]) == names


def test_heldout_evaluation_leaves_out_the_models_training_cells(
    ensemble, train_test, lake_model, processed_lake
):
    from dataclasses import replace

    import pytest

    from cellsift.pipeline.classify.evaluation import evaluate_on_lake, training_cells_mask
    from cellsift.schemas import InputFormatError

    train, test = train_test
    seen, how = training_cells_mask(ensemble.card, train)
    assert how == "by cell" and seen.all()
    assert not training_cells_mask(ensemble.card, test)[0].any()
    half = train.take(list(range(0, len(train), 2)))
    assert training_cells_mask(ensemble.card, CellData.concat([half, test]))[0].sum() == len(half)
    # a card written before cellsift recorded the cells: whole training animals are left out
    training = {k: v for k, v in ensemble.card.training.items() if k != "cells"}
    old = replace(ensemble.card, training=training)
    seen, how = training_cells_mask(old, test.take([0, 1]))
    assert how == "by animal" and not seen.any()
    assert training_cells_mask(old, train)[0].all()
    # the lake model trained on every labelled cell of the lake: nothing is left to evaluate
    with pytest.raises(InputFormatError, match="own training cells"):
        evaluate_on_lake(processed_lake, lake_model)
