"""Fine-tuning on few labels: the adapter corrects a trained ensemble for a new domain, and is saved with it."""

from __future__ import annotations

import numpy as np
import pytest

from cellsift.pipeline.classify.adapter import LabelAdapter
from cellsift.pipeline.classify.ensemble import EnsembleClassifier
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, feature_matrix
from cellsift.schemas.errors import InputFormatError
from tests.pipeline.classify.synthetic import balanced_accuracy, synthetic_cells


def test_adapter_learns_a_shift_the_base_model_never_saw():
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.6).astype(int)
    x = rng.normal(0, 1, (n, 3))
    x[:, 0] += np.where(y == 1, 1.5, -1.5)  # in the new domain, input 0 tells the classes apart
    p_base = np.full(n, 0.7)  # a base model that cannot tell them apart here
    fit = LabelAdapter.fit(p_base[:80], x[:80], y[:80], columns=("a", "b", "c"))
    p = fit.apply(p_base[80:], x[80:])
    assert balanced_accuracy(y[80:], p) > 0.85
    assert abs(fit.coef[0]) > 5 * max(abs(fit.coef[1]), abs(fit.coef[2]))


def test_adapter_without_evidence_stays_close_to_the_base_model():
    rng = np.random.default_rng(1)
    n = 60
    p_base = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < p_base).astype(int)  # labels drawn from the base model itself
    fit = LabelAdapter.fit(p_base, rng.normal(0, 1, (n, 4)), y, columns=tuple("abcd"))
    assert np.corrcoef(fit.apply(p_base, rng.normal(0, 1, (n, 4))), p_base)[0, 1] > 0.8
    with pytest.raises(InputFormatError, match="at least 2 good and 2 bad"):
        LabelAdapter.fit(p_base[:5], np.zeros((5, 4)), np.ones(5), columns=tuple("abcd"))


def test_fine_tuned_ensemble_improves_on_a_shifted_domain_and_round_trips(ensemble, tmp_path):
    target = synthetic_cells(200, seed=9, shift=1.2, cohort="lab")
    labelled, rest = target.take(np.arange(40)), target.take(np.arange(40, 200))
    before = balanced_accuracy(rest.y, ensemble.predict_proba(rest), ensemble.decision_threshold)
    tuned = ensemble.fine_tune(labelled, seed=0)
    assert tuned.adapter is not None and ensemble.adapter is None  # the base model is untouched
    after = balanced_accuracy(rest.y, tuned.predict_proba(rest), tuned.decision_threshold)
    assert after >= before - 0.02
    oof = dict(tuned.card.metrics)["out_of_fold"]["p_good"]  # the adapter's own out-of-fold estimate
    assert oof["n"] == 40 and 0.0 <= oof["balanced_accuracy"] <= 1.0
    folder = tuned.save(tmp_path / "tuned")
    assert (folder / "adapter.npz").is_file()
    again = EnsembleClassifier.load(folder)
    np.testing.assert_allclose(again.predict_proba(rest), tuned.predict_proba(rest), rtol=1e-6)
    assert feature_matrix(rest.table, MODEL_FEATURES).shape[1] == len(again.adapter.columns)
