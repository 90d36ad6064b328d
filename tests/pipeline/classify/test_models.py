"""Cell classifiers on synthetic cells: learning, persistence, model cards, OOD, clip preparation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from cellsift.pipeline.classify.clip_model import ClipClassifier, ClipModelConfig, prepare_clips
from cellsift.pipeline.classify.ensemble import EnsembleClassifier, EnsembleConfig
from cellsift.pipeline.classify.feature_model import (
    MODEL_FEATURES,
    FeatureClassifier,
    FeatureModelConfig,
    TreeEnsemble,
    feature_matrix,
)
from cellsift.pipeline.classify.base import (
    FEATURE_VERSION,
    REASONS,
    CellData,
    ModelCard,
    labels_to_int,
)
from cellsift.pipeline.classify.ood import OODDetector, session_ood
from cellsift.schemas.errors import InputFormatError, ModelMismatchError
from cellsift.schemas.tables import FEATURE_COLUMNS

#: A clip model small enough to train in seconds on 8x8-px clips.
TINY_CLIPS = ClipModelConfig(model_crop=16, pool=2, width=4, embed=16, hidden=8, epochs=10,
                             patience=3, min_epochs=5, batch_size=16, lr=5e-3, max_peaks_predict=2)


def _raw_clips(good: np.ndarray, rng: np.random.Generator, *, k: int = 2, t: int = 21, s: int = 16):
    """Raw clips: a blob on a bright, noisy background; good cells flash inside their footprint."""
    n = len(good)
    yy, xx = np.mgrid[:s, :s] - s // 2
    blob = np.exp(-(yy**2 + xx**2) / (2 * 2.0**2))
    off = np.exp(-((yy - 5) ** 2 + (xx + 5) ** 2) / (2 * 2.0**2))
    kernel = np.zeros(t)
    kernel[10:] = np.exp(-np.arange(t - 10) / 4.0)
    offset = rng.uniform(40, 120, size=(n, 1, 1, 1, 1))
    clips = offset + rng.normal(0, 2.0, size=(n, k, t, s, s))
    amp = rng.uniform(8, 20, size=(n, k))
    for i in range(n):
        shape = blob if good[i] else off  # artifacts: the flash is beside the footprint
        clips[i] += amp[i][:, None, None, None] * kernel[None, :, None, None] * shape[None, None]
    footprint = np.repeat(blob[None], n, axis=0).astype(np.float32)
    neighbour = np.zeros((n, s, s), dtype=bool)
    neighbour[:, :3, :3] = True
    valid = np.ones((n, k), dtype=bool)
    return clips.astype(np.float32), footprint, neighbour, valid


def synthetic_cells(
    n: int = 160, *, seed: int = 0, n_animals: int = 4, clips: bool = True, shift: float = 0.0,
    cohort: str = "syn",
) -> CellData:
    """Labelled cells whose features and clips separate good from bad."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(np.int8)
    table = pd.DataFrame({c: rng.normal(0, 1, n) for c in FEATURE_COLUMNS})
    table["spatial_corr"] = np.where(y == 1, 0.4, 0.05) + rng.normal(0, 0.1, n) + shift
    table["peak_to_noise"] = np.where(y == 1, 12, 4) + rng.normal(0, 2, n) + shift
    table["compactness"] = np.clip(np.where(y == 1, 0.95, 0.6) + rng.normal(0, 0.1, n), 0, 1)
    table["area_px"] = rng.uniform(40, 120, n) * (1 + shift)
    table["noise_sd"] = rng.uniform(2, 4, n)
    table["n_transients"] = np.where(y == 1, 8, 1) + rng.integers(0, 3, n)
    table["cohort"] = cohort
    table["animal"] = [f"m{i % n_animals:02d}" for i in range(n)]
    table["session"] = "d1"
    table["unit_id"] = np.arange(n)
    table["pipeline_version"] = "1.0.0"
    reasons = np.where(
        y == 0, np.where(table["compactness"] < 0.6, "irregular_shape", "no_transients"), None
    ).astype(object)
    clip_arrays = None
    if clips:
        raw, fp, nb, valid = _raw_clips(y == 1, rng)
        clip_arrays = prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=16, pool=2)
    return CellData(table=table, clips=clip_arrays, y=y, reasons=reasons, fps=20.0)


def _balanced_accuracy(y: np.ndarray, p: np.ndarray, thr: float = 0.5) -> float:
    pred = p >= thr
    return 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))


@pytest.fixture(scope="module")
def train_test() -> tuple[CellData, CellData]:
    return synthetic_cells(120, seed=1), synthetic_cells(60, seed=2, cohort="syn2")


@pytest.fixture(scope="module")
def ensemble(train_test) -> EnsembleClassifier:
    train, _ = train_test
    cfg = EnsembleConfig(features=FeatureModelConfig(max_iter=40), clips=TINY_CLIPS, n_folds=2)
    return EnsembleClassifier(cfg).fit(train)


# ---------------------------------------------------------------------------
# feature model


def test_feature_model_learns_separable_problem(train_test):
    train, test = train_test
    model = FeatureClassifier(FeatureModelConfig(max_iter=40)).fit(train, valid=test)
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1))
    assert _balanced_accuracy(test.y, p) > 0.9
    reasons = model.predict_reason(test)
    bad = test.y == 0
    named = np.array([r is not None for r in reasons[bad]])
    assert named.mean() > 0.8 and set(reasons[bad][named]) <= set(REASONS)
    assert model.feature_importance().index[0] in ("spatial_corr", "peak_to_noise", "compactness", "n_transients")


def test_tree_export_matches_sklearn_with_missing_values():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    X[::5, 2] = np.nan
    y = (X[:, 0] + np.nan_to_num(X[:, 2]) > 0).astype(int)
    for target in (y, rng.integers(0, 3, 300)):
        sk = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(X, target)
        ours = TreeEnsemble.from_sklearn(sk)
        Xt = rng.normal(size=(50, 5))
        Xt[::3, 1] = np.nan
        Xt[::4, 2] = np.nan
        np.testing.assert_allclose(ours.predict_proba(Xt), sk.predict_proba(Xt), atol=1e-9)


def test_feature_matrix_derives_session_relative_columns():
    data = synthetic_cells(20, clips=False)
    X = feature_matrix(data.table)
    assert X.shape == (20, len(MODEL_FEATURES))
    j = MODEL_FEATURES.index("area_rel")
    assert np.nanmedian(X[:, j]) == pytest.approx(1.0)
    with pytest.raises(InputFormatError, match="lacks column"):
        feature_matrix(data.table.drop(columns=["spatial_corr"]))


# ---------------------------------------------------------------------------
# clips


def test_prepare_clips_is_invariant_to_brightness():
    rng = np.random.default_rng(3)
    raw, fp, nb, valid = _raw_clips(np.array([True, False, True]), rng)
    a = prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=16, pool=2)
    b = prepare_clips(raw * 3.0 + 500.0, fp * 7.0, nb, valid, n_before=10, model_crop=16, pool=2)
    assert a.dynamic.shape == (3, 2, 21, 8, 8) and a.static.shape == (3, 2, 3, 8, 8)
    assert a.dynamic.dtype == np.float16
    np.testing.assert_allclose(a.dynamic.astype(np.float32), b.dynamic.astype(np.float32), atol=0.05)
    np.testing.assert_allclose(a.static.astype(np.float32), b.static.astype(np.float32), atol=0.02)
    # the peak is bright in units of noise SD, the baseline is ~0
    assert a.dynamic[0, 0, 10:12, 3:5, 3:5].mean() > 3 and abs(a.dynamic[0, 0, :5].mean()) < 0.5
    with pytest.raises(InputFormatError, match="model_crop"):
        prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=20, pool=2)


def test_clip_model_learns_separable_problem(train_test):
    train, test = train_test
    model = ClipClassifier(TINY_CLIPS).fit(train)
    p = model.predict_proba(test)
    assert _balanced_accuracy(test.y, p) > 0.9
    assert model.history and "valid_loss" in model.history[0]
    assert model.best_epoch is not None and model.best_epoch <= len(model.history)
    assert model.card is not None and model.card.clip_frames == 21 and model.card.uses_clips


def test_clip_model_refuses_data_without_clips(train_test):
    train, _ = train_test
    with pytest.raises(InputFormatError, match="clips"):
        ClipClassifier(TINY_CLIPS).fit(replace(train, clips=None))


def test_backbone_is_read_from_a_local_file_only(tmp_path):
    import torch
    import torchvision

    with pytest.raises(InputFormatError, match="local weights file"):
        ClipModelConfig(backbone="resnet18")
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = replace(TINY_CLIPS, backbone="resnet18", backbone_weights=str(weights), backbone_input=32)
    from cellsift.pipeline.classify.clip_model import _build_network

    net = _build_network(cfg)
    logit, reason = net(torch.zeros(2, 21, 8, 8), torch.zeros(2, 3, 8, 8))
    assert logit.shape == (2,) and reason.shape == (2, len(REASONS))
    assert not any(p.requires_grad for p in net.encoder.net.parameters())  # frozen backbone
    missing = replace(cfg, backbone_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(InputFormatError, match="not found"):
        _build_network(missing)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InputFormatError):
        _build_network(replace(cfg, backbone_weights=str(wrong)))


# ---------------------------------------------------------------------------
# ensemble, persistence, cards


def test_ensemble_is_accurate_calibrated_and_names_reasons(ensemble, train_test):
    _, test = train_test
    p = ensemble.predict_proba(test)
    assert np.all((p > 0) & (p < 1))
    assert _balanced_accuracy(test.y, p, ensemble.decision_threshold) > 0.9
    parts = ensemble.predict_parts(test)
    assert list(parts.columns) == ["p_features", "p_clips", "p_good"]
    oof = ensemble.oof
    assert oof is not None and oof["fold"].min() >= 0 and len(oof) == 120
    # calibration: mean predicted probability close to the observed rate of good cells
    assert abs(oof["p_good"].mean() - oof["y"].mean()) < 0.08
    reasons = ensemble.predict_reason(test)
    assert set(r for r in reasons if r is not None) <= set(REASONS)
    card = ensemble.card
    assert card is not None and card.kind == "ensemble" and card.ood["threshold"] > 0
    assert card.training["n_cells"] == 120 and card.training["n_animals"] == 4
    assert len(card.training["data_sha256"]) == 64


def test_ensemble_scores_sessions_without_a_movie_with_its_table_only_model(ensemble, train_test, tmp_path):
    from dataclasses import replace as dc_replace

    from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES
    from cellsift.pipeline.classify.store import load_model

    _, test = train_test
    assert ensemble.features.uses_clips and set(CLIP_SUMMARY_FEATURES) <= set(ensemble.features.columns)
    table_only = ensemble.table_only
    assert table_only is not None and not table_only.uses_clips
    assert "spatial_corr" not in table_only.columns and ensemble.can_score_without_clips
    no_movie = dc_replace(test, clips=None, table=test.table.assign(spatial_corr=np.nan))
    p, reasons = ensemble.predict(no_movie)
    np.testing.assert_allclose(p, table_only.predict_proba(no_movie))
    assert _balanced_accuracy(test.y, p) > 0.8 and reasons is not None
    parts = ensemble.predict_parts(no_movie)
    assert parts["p_clips"].isna().all()
    loaded = load_model(ensemble.save(tmp_path / "ens"))
    np.testing.assert_allclose(loaded.predict_proba(no_movie), p, atol=1e-6)


@pytest.mark.parametrize("kind", ["features", "clips", "ensemble"])
def test_save_load_roundtrip_and_tamper_detection(kind, ensemble, train_test, tmp_path):
    from cellsift.pipeline.classify.store import load_model

    train, test = train_test
    if kind == "ensemble":
        model = ensemble
    elif kind == "features":
        model = FeatureClassifier(FeatureModelConfig(max_iter=30)).fit(train)
    else:
        model = ClipClassifier(replace(TINY_CLIPS, epochs=2, min_epochs=1)).fit(train)
    folder = model.save(tmp_path / kind)
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == kind and card["feature_version"] == FEATURE_VERSION
    assert set(card["files"]) == {p.name for p in folder.iterdir() if p.name != "card.json"}
    assert card["package_versions"]["torch"] and card["training"]["data_sha256"]
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.predict_proba(test), model.predict_proba(test), atol=1e-6)
    assert loaded.decision_threshold == pytest.approx(model.decision_threshold, abs=1e-4)
    s1, f1 = model.ood_scores(test)
    s2, f2 = loaded.ood_scores(test)
    np.testing.assert_allclose(s1, s2)
    # a changed weight file is refused
    weight = next(p for p in folder.iterdir() if p.name != "card.json")
    weight.write_bytes(weight.read_bytes() + b"x")
    with pytest.raises(ModelMismatchError, match="changed since training"):
        load_model(folder)


def test_card_json_roundtrip_and_mismatch_messages(ensemble):
    card = ensemble.card
    assert card is not None
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card and again.card_hash() == card.card_hash()
    ok = card.check_compatible(pipeline_version=card.pipeline_version, columns=list(card.feature_columns),
                               clip_frames=21, clip_n_before=10, clip_crop_px=card.clip_crop_px, fps=20.0)
    assert ok == []
    with pytest.raises(ModelMismatchError) as exc:
        card.check_compatible(clip_frames=31)
    msg = str(exc.value)
    assert "clip_frames" in msg and "21" in msg and "31" in msg and "Fix:" in msg
    with pytest.raises(ModelMismatchError, match="30 Hz"):
        card.check_compatible(fps=30.0)
    with pytest.raises(ModelMismatchError, match="lack feature column"):
        card.check_compatible(columns=["area_px"])
    with pytest.raises(ModelMismatchError, match="pipeline 2.0.0"):
        card.check_compatible(pipeline_version="2.0.0")
    with pytest.raises(ModelMismatchError, match="feature set"):
        card.check_compatible(feature_version="9.9+deadbeef")
    warnings = card.check_compatible(pipeline_version="1.9.0", fps=30.0, strict=False)
    assert len(warnings) == 2 and any("30 Hz" in w for w in warnings)
    with pytest.raises(ModelMismatchError, match="not a cellsift model card"):
        ModelCard.from_dict({"schema": "something-else"})


def test_labels_to_int():
    assert labels_to_int(["good", "bad", "Accepted", "rejected", 1, 0, True, "?", None]).tolist() == [
        1, 0, 1, 0, 1, 0, 1, -1, -1]


# ---------------------------------------------------------------------------
# out of distribution


def test_ood_flags_shifted_features_not_training_like_ones():
    train = synthetic_cells(300, seed=5, clips=False)
    det = OODDetector.fit(feature_matrix(train.table), quantile=0.99)
    same = synthetic_cells(300, seed=6, clips=False)
    shifted = synthetic_cells(300, seed=7, clips=False, shift=8.0)
    assert det.flag(feature_matrix(same.table)).mean() < 0.08
    assert det.flag(feature_matrix(shifted.table)).mean() > 0.9
    assert np.median(det.score(feature_matrix(shifted.table))) > 2 * det.threshold
    cells = pd.concat([same.table.assign(session="a"), shifted.table.assign(session="b")], ignore_index=True)
    X = feature_matrix(cells)
    summary = session_ood(cells.assign(ood_score=det.score(X), ood_flag=det.flag(X)))
    assert summary.set_index("session")["ood_flag"].to_dict() == {"a": False, "b": True}


def test_clips_are_resampled_in_time_to_the_model_rate():
    from cellsift.pipeline.classify.clip_model import resample_time

    t20 = np.arange(21) - 10  # frames of a 20 Hz clip around its peak
    t10 = (np.arange(21) - 10) * 2  # the same event seen at 10 Hz: twice the time per frame
    rise_decay = lambda t: np.where(t >= 0, np.exp(-t / 8.0), 0.0)  # noqa: E731
    clip20 = rise_decay(t20).astype(np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    clip10 = rise_decay(t10).astype(np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    out = resample_time(clip10, n_before=10, time_step=0.5)  # 10 Hz data, 20 Hz model
    assert out.shape == clip10.shape
    np.testing.assert_allclose(out[11:, 0, 0], clip20[11:, 0, 0], atol=0.02)
    assert out[10, 0, 0] == pytest.approx(1.0) and np.all(out[:9, 0, 0] == 0)
    np.testing.assert_array_equal(resample_time(clip20, n_before=10, time_step=1.0), clip20)
