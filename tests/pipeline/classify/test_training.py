"""Training data from a lake, grouped cross-validation, fine-tuning, the capstone protocol and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellsift
from cellsift.pipeline.classify.evaluation import (
    CAPSTONE_TABLE2,
    CapstoneTrial,
    balanced_threshold,
    binary_metrics,
    capstone_protocol,
    evaluate,
    format_capstone_table,
    write_report,
)
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.base import REASONS
from cellsift.pipeline.classify.training import (
    LabelSpec,
    cross_validate,
    fine_tune,
    grouped_folds,
    load_cell_data,
    read_labels_csv,
)
from cellsift.schemas.errors import InputFormatError

from tests.pipeline.classify.test_models import TINY_CLIPS, synthetic_cells


@pytest.fixture(scope="session")
def processed_lake(_tiny_lake_master, tmp_path_factory) -> Path:
    """The tiny simulated cohort, ingested and processed (cells, sessions, clip stores)."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline.stages import run_pipeline

    lake = tmp_path_factory.mktemp("classifier_lake") / "lake"
    shutil.copytree(_tiny_lake_master, lake)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            summary = run_pipeline(lake, client=client)
    assert summary.n_failed == 0, summary
    return lake


# ---------------------------------------------------------------------------
# data assembly


def test_load_cell_data_joins_labels_and_clips_and_leaves_out_flagged(processed_lake):
    lake = cellsift.open_lake(processed_lake)
    cells = lake.cells
    data = load_cell_data(processed_lake, model_crop=32, pool=2)
    assert len(data) > 20 and data.y is not None and set(np.unique(data.y)) == {0, 1}
    assert not data.table["overlap_flag"].any()
    n_flagged = int(cells["overlap_flag"].sum())
    assert n_flagged > 0
    assert len(data) == len(cells) - n_flagged  # every unflagged simulated cell has a label
    assert data.clips is not None and data.clips.dynamic.shape[1:] == (5, 21, 16, 16)
    assert data.fps == pytest.approx(20.0)
    bad_reasons = {r for r, y in zip(data.reasons, data.y, strict=True) if y == 0}
    assert bad_reasons <= set(REASONS) | {None} and len(bad_reasons - {None}) >= 2
    assert all(r is None for r, y in zip(data.reasons, data.y, strict=True) if y == 1)
    with_flagged = load_cell_data(processed_lake, clips=False, include_flagged=True)
    assert len(with_flagged) == len(cells)


def test_labels_from_a_csv(processed_lake, tmp_path):
    cells = cellsift.open_lake(processed_lake).cells
    rows = cells[~cells["overlap_flag"]].head(10)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({
        "animal": rows["animal"], "session": rows["session"], "unit_id": rows["unit_id"],
        "label": ["good", "bad"] * 5, "reason": [None, "shape"] * 5,
    }).to_csv(csv, index=False)
    data = load_cell_data(processed_lake, labels=LabelSpec(csv=str(csv)), clips=False)
    assert len(data) == 10 and data.y.tolist().count(1) == 5
    assert set(data.reasons[data.y == 0]) == {"irregular_shape"}  # alias normalised
    assert set(data.table["label_source"]) == {"csv"}
    bad = tmp_path / "bad.csv"
    bad.write_text("animal,session,unit\nm01,d1,3\n")
    with pytest.raises(InputFormatError, match="unit_id"):
        read_labels_csv(bad)
    bad.write_text("animal,session,unit_id,label\nm01,d1,3,maybe\n")
    with pytest.raises(InputFormatError, match="maybe"):
        read_labels_csv(bad)
    nomatch = tmp_path / "nomatch.csv"
    nomatch.write_text("animal,session,unit_id,label\nzz,d1,3,good\n")
    with pytest.raises(InputFormatError, match="no labelled cell matches"):
        load_cell_data(processed_lake, labels=LabelSpec(csv=str(nomatch)), clips=False)


# ---------------------------------------------------------------------------
# splits and cross-validation


def test_grouped_folds_never_share_an_animal():
    rng = np.random.default_rng(0)
    groups = np.array([f"c{i % 2}/m{i % 7}" for i in range(300)])
    y = rng.integers(0, 2, 300)
    seen = np.zeros(300, dtype=int)
    folds = list(grouped_folds(groups, y, n_folds=5, seed=1))
    assert len(folds) == 5
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert np.all(seen == 1)
    with pytest.raises(InputFormatError, match="at least 2 animals"):
        list(grouped_folds(np.array(["a"] * 10), np.arange(10) % 2))


def test_cross_validation_is_grouped_and_out_of_fold():
    data = synthetic_cells(120, seed=3, clips=False, n_animals=4)
    oof = cross_validate(data, lambda: FeatureClassifier(FeatureModelConfig(max_iter=40)), n_folds=4)
    assert oof["p_good"].notna().all() and sorted(oof["fold"].unique()) == [0, 1, 2, 3]
    for _, g in oof.groupby("fold"):
        assert g["animal"].nunique() == 1  # 4 animals, 4 folds: one animal per test fold
    m = binary_metrics(oof["y"].to_numpy(), oof["p_good"].to_numpy())
    assert m["balanced_accuracy"] > 0.9 and m["roc_auc"] > 0.95


def test_fine_tune_starts_from_the_base_and_records_the_parent():
    from cellsift.pipeline.classify.clip_model import ClipClassifier

    base_data = synthetic_cells(80, seed=4)
    lab_data = synthetic_cells(40, seed=5, cohort="lab")
    base = ClipClassifier(TINY_CLIPS).fit(base_data)
    tuned = fine_tune(base, lab_data, model_id="lab-v1")
    assert tuned.card is not None and tuned.card.parent_model_id == base.model_id
    assert tuned.model_id == "lab-v1"
    p = tuned.predict_proba(synthetic_cells(30, seed=6, cohort="lab"))
    assert np.isfinite(p).all()
    feat = FeatureClassifier(FeatureModelConfig(max_iter=20)).fit(base_data)
    assert fine_tune(feat, lab_data).card.parent_model_id == feat.model_id


# ---------------------------------------------------------------------------
# metrics, capstone protocol, report


def test_binary_metrics_and_threshold():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.4, 0.2, 0.1, 0.6, 0.7, 0.3])
    m = binary_metrics(y, p)
    assert m["confusion"]["matrix"] == [[3, 1], [1, 3]]
    assert m["balanced_accuracy"] == pytest.approx(0.75) and m["roc_auc"] == pytest.approx(15 / 16)
    assert m["good"]["precision"] == pytest.approx(0.75) and m["bad"]["recall"] == pytest.approx(0.75)
    assert sum(m["calibration"]["bin_count"]) == 8 and 0 <= m["ece"] <= 1
    assert binary_metrics(np.ones(3), np.ones(3) * 0.9)["roc_auc"] is None
    yy = np.r_[np.ones(80), np.zeros(20)].astype(int)
    pp = np.r_[np.linspace(0.5, 1, 80), np.linspace(0.1, 0.6, 20)]
    thr = balanced_threshold(yy, pp)
    assert 0.5 <= thr <= 0.65


def test_capstone_protocol_on_small_trials():
    pool = synthetic_cells(200, seed=7, clips=False, n_animals=4)
    test_pool = synthetic_cells(80, seed=8, clips=False, n_animals=2, cohort="other")
    trials = (CapstoneTrial(1, 60, 30, 30, 73.68, 64.3, 64.3, 64.3), CapstoneTrial(4, 20, 10, 10, 100, 71.5, 78.6, 64.3))
    table = capstone_protocol(pool, test_pool, {"features": lambda: FeatureClassifier(FeatureModelConfig(max_iter=30))},
                              n_test_per_class=10, trials=trials)
    assert table["n_train"].tolist() == [60, 20] and (table["test_accuracy"] >= 75).all()
    text = format_capstone_table(table)
    assert "64.3%" in text and "71.5%" in text
    with pytest.raises(InputFormatError, match="share animals"):
        capstone_protocol(pool, pool, {"features": FeatureClassifier}, trials=trials)
    assert [t.n_train for t in CAPSTONE_TABLE2] == [377, 300, 150, 50]


def test_report_writes_json_and_figures(tmp_path):
    from cellsift.pipeline.classify.clip_model import ClipClassifier

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
    from cellsift.pipeline.classify.evaluation import cross_validate_on_lake

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
