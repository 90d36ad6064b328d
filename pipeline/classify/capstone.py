"""The capstone protocol: the capstone's Table 2 replayed with cellsift's models.

Train on 50, 150, 300 and 377 balanced labelled cells, test on 56 held-out cells
(28 good / 28 bad) from animals never trained on, side by side with the capstone's
numbers (:data:`CAPSTONE_TABLE2`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.evaluation import write_report
from cellsift.pipeline.classify.kinds import make_model
from cellsift.pipeline.classify.labels import LabelSpec
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.pipeline.classify.metrics import binary_metrics
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "CAPSTONE_TABLE2",
    "CapstoneTrial",
    "capstone_on_lake",
    "capstone_protocol",
    "format_capstone_table",
]


@dataclass(frozen=True)
class CapstoneTrial:
    """One row of the capstone's Table 2 (accuracies in %)."""

    trial: int
    n_train: int
    n_bad: int
    n_good: int
    train_accuracy: float
    test_accuracy: float
    test_bad_accuracy: float
    test_good_accuracy: float


#: The capstone's Table 2: 56 test cells (28 bad / 28 good) in every trial.
CAPSTONE_TABLE2: Final = (
    CapstoneTrial(1, 377, 187, 190, 73.68, 64.3, 64.3, 64.3),
    CapstoneTrial(2, 300, 150, 150, 66.67, 69.7, 46.4, 92.9),
    CapstoneTrial(3, 150, 75, 75, 80.00, 59.0, 64.3, 53.6),
    CapstoneTrial(4, 50, 25, 25, 100.00, 71.5, 78.6, 64.3),
)


def _balanced_sample(
    y: np.ndarray, n_bad: int, n_good: int, rng: np.random.Generator, order: np.ndarray | None = None
) -> np.ndarray:
    """Indices of ``n_bad`` bad and ``n_good`` good cells (the first ones of ``order``)."""
    bad, good = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if len(bad) < n_bad or len(good) < n_good:
        raise InputFormatError(
            f"need {n_bad} bad and {n_good} good cells, the pool has {len(bad)} and {len(good)}",
            field="label",
            fix="use a larger training pool or smaller training sizes",
        )
    if order is None:
        return np.concatenate(
            [rng.choice(bad, n_bad, replace=False), rng.choice(good, n_good, replace=False)]
        )
    ob = order[np.isin(order, bad)][:n_bad]
    og = order[np.isin(order, good)][:n_good]
    return np.concatenate([ob, og])


def _labels(data: CellData) -> np.ndarray:
    return data.y if data.y is not None else np.full(len(data), -1, dtype=np.int8)


def _trial_row(
    trial: CapstoneTrial, name: str, factory: Callable[[], CellClassifier], train: CellData, test: CellData
) -> dict[str, Any]:
    """Train a fresh model of ``factory`` on ``train``; its accuracies (%) next to the capstone's."""
    t0 = time.perf_counter()
    model = factory()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    thr = model.decision_threshold
    p_tr = model.predict_proba(train)
    p_te = model.predict_proba(test)
    m_te = binary_metrics(_labels(test), p_te, threshold=thr)
    m_tr = binary_metrics(_labels(train), p_tr, threshold=thr)
    return {
        "trial": trial.trial,
        "n_train": trial.n_train,
        "n_bad": trial.n_bad,
        "n_good": trial.n_good,
        "model": name,
        "train_accuracy": 100 * (m_tr["accuracy"] or 0.0),
        "test_accuracy": 100 * (m_te["accuracy"] or 0.0),
        "test_bad_accuracy": 100 * (m_te["bad"]["recall"] or 0.0),
        "test_good_accuracy": 100 * (m_te["good"]["recall"] or 0.0),
        "test_balanced_accuracy": 100 * (m_te["balanced_accuracy"] or 0.0),
        "test_roc_auc": m_te["roc_auc"],
        "fit_seconds": round(fit_s, 1),
        "capstone_train_accuracy": trial.train_accuracy,
        "capstone_test_accuracy": trial.test_accuracy,
        "capstone_test_bad_accuracy": trial.test_bad_accuracy,
        "capstone_test_good_accuracy": trial.test_good_accuracy,
    }


def capstone_protocol(
    train_pool: CellData,
    test_pool: CellData,
    make: Mapping[str, Callable[[], CellClassifier]],
    *,
    n_test_per_class: int = 28,
    trials: Sequence[CapstoneTrial] = CAPSTONE_TABLE2,
    seed: int = 0,
) -> pd.DataFrame:
    """Replay the capstone's Table 2 with cellsift's models.

    Parameters
    ----------
    train_pool
        Labelled cells to draw training sets from (balanced as in the capstone: 377 =
        187 bad + 190 good, 300 = 150 + 150, 150 = 75 + 75, 50 = 25 + 25; smaller sets
        are subsets of larger ones).
    test_pool
        Labelled cells of *other* animals; 28 good and 28 bad are drawn once and used
        for every trial.
    make
        ``{model name: factory of an untrained model}``, e.g. ensemble and clips.
    n_test_per_class
        Test cells per class.
    trials
        Trials to run (default: the capstone's four).
    seed
        Sampling seed.

    Returns
    -------
    pandas.DataFrame
        One row per (trial, model): ``trial, n_train, n_bad, n_good, model,
        train_accuracy, test_accuracy, test_bad_accuracy, test_good_accuracy,
        test_balanced_accuracy, test_roc_auc, fit_seconds`` (accuracies in %), and the
        capstone's numbers in ``capstone_*`` columns.

    Raises
    ------
    InputFormatError
        If the pools share an animal or are too small.
    """
    shared = set(train_pool.groups) & set(test_pool.groups)
    if shared:
        raise InputFormatError(
            f"train and test pools share animals {sorted(shared)[:3]}",
            field="animal",
            fix="draw the test cells from animals not used for training",
        )
    rng = np.random.default_rng(seed)
    y_tr = train_pool.require_labels(what="the capstone protocol")
    y_te = test_pool.require_labels(what="the capstone protocol")
    test_idx = _balanced_sample(y_te, n_test_per_class, n_test_per_class, rng)
    test = test_pool.take(np.sort(test_idx))
    order = rng.permutation(len(train_pool))
    rows = []
    for trial in trials:
        idx = _balanced_sample(y_tr, trial.n_bad, trial.n_good, rng, order=order)
        train = train_pool.take(np.sort(idx))
        for name, factory in make.items():
            rows.append(_trial_row(trial, name, factory, train, test))
            logger.info(
                "capstone trial %d (%d cells) %s: test accuracy %.1f%% (capstone %.1f%%)",
                trial.trial,
                trial.n_train,
                name,
                rows[-1]["test_accuracy"],
                trial.test_accuracy,
            )
    return pd.DataFrame(rows)


def format_capstone_table(table: pd.DataFrame) -> str:
    """Render :func:`capstone_protocol`'s result side by side with the capstone, as text."""
    lines = [
        "Capstone protocol (Table 2): 56 test cells (28 bad / 28 good) from animals never trained on",
        f"{'trial':>5} {'train cells':>17} {'model':>9} | {'capstone test':>13} {'bad':>6} {'good':>6} | "
        f"{'cellsift test':>13} {'bad':>6} {'good':>6} {'AUC':>6} {'fit s':>6}",
    ]
    for r in table.itertuples():
        auc = (
            "  n/a "
            if r.test_roc_auc is None or not np.isfinite(r.test_roc_auc)
            else f"{r.test_roc_auc:6.3f}"
        )
        lines.append(
            f"{r.trial:>5} {f'{r.n_train} ({r.n_bad}/{r.n_good})':>17} {r.model:>9} | "
            f"{r.capstone_test_accuracy:12.1f}% {r.capstone_test_bad_accuracy:5.1f}% {r.capstone_test_good_accuracy:5.1f}% | "
            f"{r.test_accuracy:12.1f}% {r.test_bad_accuracy:5.1f}% {r.test_good_accuracy:5.1f}% {auc} {r.fit_seconds:6.1f}"
        )
    return "\n".join(lines)


def capstone_on_lake(
    lake: str | PathLike[str],
    *,
    test_cohort: str | None = None,
    test_fraction: float = 0.25,
    models: Sequence[str] = ("ensemble", "clips"),
    labels: LabelSpec | None = None,
    seed: int = 0,
    report_dir: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """The capstone protocol (:func:`capstone_protocol`) on a lake's labelled cells.

    Parameters
    ----------
    lake
        The lake.
    test_cohort
        Draw the 56 test cells from this cohort (train on the others); default: hold out
        ``test_fraction`` of the animals (chosen with ``seed``).
    test_fraction
        Share of animals held out when ``test_cohort`` is not given.
    models
        Model kinds to train in each trial (``ensemble``, ``clips``, ``features``).
    labels
        :class:`~cellsift.pipeline.classify.labels.LabelSpec` (default: the lake's labels).
    seed
        Sampling and training seed.
    report_dir
        Where ``report.json`` and ``capstone.png`` go.

    Returns
    -------
    pandas.DataFrame
        As :func:`capstone_protocol`; also logged side by side with the capstone.
    """
    data = load_cell_data(lake, labels=labels or LabelSpec(), clips=any(m != "features" for m in models))
    groups = data.groups
    if test_cohort is not None:
        test_mask = data.table["cohort"].astype(str).to_numpy() == test_cohort
        if not test_mask.any():
            raise InputFormatError(f"no labelled cells of cohort {test_cohort!r}", path=lake, field="cohort")
    else:
        animals = np.array(sorted(set(groups)))
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(test_fraction * len(animals))))
        test_mask = np.isin(groups, rng.choice(animals, n_test, replace=False))
    train_pool, test_pool = data.take(~test_mask), data.take(test_mask)
    factories = {name: (lambda name=name: make_model(name, seed=seed)) for name in models}
    table = capstone_protocol(train_pool, test_pool, factories, seed=seed)
    logger.info("\n%s", format_capstone_table(table))
    if report_dir is not None:
        write_report(report_dir, metrics={"protocol": "capstone"}, capstone=table)
    return table
