"""The feature model: boosted trees on the quality features, exported to plain arrays."""

from __future__ import annotations

import numpy as np

from cellsift.pipeline.classify.data import REASONS
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig, TreeEnsemble
from tests.pipeline.classify.synthetic import balanced_accuracy


def test_feature_model_learns_separable_problem(train_test):
    train, test = train_test
    model = FeatureClassifier(FeatureModelConfig(max_iter=40)).fit(train, valid=test)
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1))
    assert balanced_accuracy(test.y, p) > 0.9
    reasons = model.predict_reason(test)
    bad = test.y == 0
    named = np.array([r is not None for r in reasons[bad]])
    assert named.mean() > 0.8 and set(reasons[bad][named]) <= set(REASONS)
    top = model.feature_importance().index[0]  # one of the inputs the synthetic classes differ in
    assert top in ("spatial_corr", "peak_to_noise", "pnr_rel", "compactness") or top.startswith("clip_mf")


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
