"""The capstone protocol: the capstone's Table 2 replayed with cellsift's models.

Train on 50, 150, 300 and 377 balanced labelled cells, test on 56 held-out cells
(28 good / 28 bad) from animals never trained on, side by side with the capstone's
numbers (:data:`CAPSTONE_TABLE2`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "CAPSTONE_TABLE2",
    "CapstoneTrial",
    "capstone_on_lake",
    "capstone_protocol",
    "capstone_trials",
    "format_capstone_table",
    "parse_sizes",
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
    capstone_n_train: int | None = None  # the capstone's size this row stands in for (None: n_train)


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
            fix=f"pass smaller training sizes, at most {2 * min(len(bad), len(good))} cells "
            "(cellsift evaluate --sizes N1,N2,...)",
        )
    if order is None:
        return np.concatenate(
            [rng.choice(bad, n_bad, replace=False), rng.choice(good, n_good, replace=False)]
        )
    ob = order[np.isin(order, bad)][:n_bad]
    og = order[np.isin(order, good)][:n_good]
    return np.concatenate([ob, og])


def parse_sizes(text: str) -> tuple[int, ...]:
    """Training sizes from a comma-separated list (``"377,300,150,50"``), largest first.

    Raises
    ------
    ParameterError
        Not 1-4 whole numbers of at least 4 cells.
    """
    try:
        sizes = tuple(sorted({int(v) for v in text.split(",") if v.strip()}, reverse=True))
    except ValueError:
        sizes = ()
    if not 1 <= len(sizes) <= len(CAPSTONE_TABLE2) or min(sizes) < 4:
        raise ParameterError(
            f"bad training sizes {text!r}",
            field="--sizes",
            fix="give 1-4 comma-separated cell counts of at least 4, e.g. --sizes 377,300,150,50",
        )
    return sizes


def _trial(rank: int, n: int) -> CapstoneTrial:
    """The capstone trial of rank ``rank`` (largest first), trained on ``n`` balanced cells instead."""
    ref = CAPSTONE_TABLE2[rank]
    if n == ref.n_train:
        return ref
    return replace(ref, n_train=n, n_bad=n // 2, n_good=n - n // 2, capstone_n_train=ref.n_train)


def capstone_trials(
    n_bad: int, n_good: int, sizes: Sequence[int] | None = None
) -> tuple[tuple[CapstoneTrial, ...], str | None]:
    """The trials to run on a training pool of ``n_bad`` bad and ``n_good`` good cells.

    Parameters
    ----------
    n_bad, n_good
        Labelled cells of each class in the training pool.
    sizes
        Training-set sizes (cells, balanced), at most one per capstone trial; the i-th
        largest stands in for the capstone's i-th trial. Default: the capstone's
        377/300/150/50, scaled down (in proportion) when the pool is too small.

    Returns
    -------
    trials, note
        The trials, and a one-line note when the sizes were scaled to the pool (else None).

    Raises
    ------
    ParameterError
        Explicit ``sizes`` larger than the pool allows, or a pool with fewer than 2
        cells of a class.
    """
    most = 2 * min(n_bad, n_good)  # the largest balanced training set
    if most < 4:
        raise ParameterError(
            f"the training pool has {n_bad} bad and {n_good} good labelled cells: too few "
            "for the capstone protocol (at least 2 of each)",
            field="label",
            fix="label more cells, or use --protocol cv",
        )
    if sizes is not None:
        wanted = sorted(set(sizes), reverse=True)
        if len(wanted) > len(CAPSTONE_TABLE2):
            raise ParameterError(
                f"{len(wanted)} training sizes given", field="--sizes", fix="give at most 4 sizes"
            )
        if wanted[0] > most:
            raise ParameterError(
                f"training size {wanted[0]} needs {wanted[0] // 2} bad and {wanted[0] - wanted[0] // 2} "
                f"good cells, the pool has {n_bad} and {n_good}",
                field="--sizes",
                fix=f"pass sizes of at most {most} cells, e.g. --sizes {_scaled_text(most)}",
            )
        return tuple(_trial(i, n) for i, n in enumerate(wanted)), None
    default = [t.n_train for t in CAPSTONE_TABLE2]
    if all(t.n_bad <= n_bad and t.n_good <= n_good for t in CAPSTONE_TABLE2):
        return CAPSTONE_TABLE2, None
    scaled = _scaled(most)
    note = (
        f"the training pool has {n_bad} bad / {n_good} good labelled cells, too few for the capstone's "
        f"balanced training sets of {'/'.join(map(str, default))} cells: using "
        f"{'/'.join(map(str, scaled))} (choose with --sizes)"
    )
    return tuple(_trial(i, n) for i, n in enumerate(scaled)), note


def _scaled(most: int) -> list[int]:
    """The capstone's sizes scaled so the largest is ``most`` (even, >= 4, distinct, largest first)."""
    top = CAPSTONE_TABLE2[0].n_train
    out: list[int] = []
    for t in CAPSTONE_TABLE2:
        n = most if t.n_train == top else max(4, 2 * int(t.n_train * most / top / 2))
        if n not in out:
            out.append(n)
    return out


def _scaled_text(most: int) -> str:
    return ",".join(map(str, _scaled(most)))


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
        "capstone_n_train": trial.capstone_n_train or trial.n_train,
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
            rows.append(
                {**_trial_row(trial, name, factory, train, test), "n_test_per_class": n_test_per_class}
            )
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
    """Render :func:`capstone_protocol`'s result side by side with the capstone, as text.

    When the training sizes differ from the capstone's (a small pool, or ``--sizes``),
    the ``capstone`` column names the capstone size each row stands in for, and a last
    line says so.
    """
    n_test = int(table["n_test_per_class"].iloc[0]) if "n_test_per_class" in table and len(table) else 28
    cap_n = table["capstone_n_train"] if "capstone_n_train" in table else table["n_train"]
    lines = [
        f"Capstone protocol (Table 2): {2 * n_test} test cells ({n_test} bad / {n_test} good) "
        "from animals never trained on",
        f"{'trial':>5} {'train cells':>17} {'model':>9} | {'capstone (cells)':>16} {'test':>6} {'bad':>6} "
        f"{'good':>6} | {'cellsift test':>13} {'bad':>6} {'good':>6} {'AUC':>6} {'fit s':>6}",
    ]
    for r, capstone_n in zip(table.itertuples(), cap_n, strict=True):
        auc = (
            "  n/a "
            if r.test_roc_auc is None or not np.isfinite(r.test_roc_auc)
            else f"{r.test_roc_auc:6.3f}"
        )
        lines.append(
            f"{r.trial:>5} {f'{r.n_train} ({r.n_bad}/{r.n_good})':>17} {r.model:>9} | "
            f"{f'({capstone_n})':>16} {r.capstone_test_accuracy:5.1f}% {r.capstone_test_bad_accuracy:5.1f}% "
            f"{r.capstone_test_good_accuracy:5.1f}% | "
            f"{r.test_accuracy:12.1f}% {r.test_bad_accuracy:5.1f}% {r.test_good_accuracy:5.1f}% {auc} {r.fit_seconds:6.1f}"
        )
    if (np.asarray(cap_n) != table["n_train"].to_numpy()).any() or n_test != 28:
        lines.append(
            "note: training/test sizes differ from the capstone's (377/300/150/50 training, 28 + 28 test "
            "cells), compare with care"
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
    sizes: Sequence[int] | None = None,
    report_dir: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """The capstone protocol (:func:`capstone_protocol`) on a lake's labelled cells.

    A lake with fewer labelled cells than the capstone's training sets (377 balanced)
    or test set (28 + 28) gets smaller ones (:func:`capstone_trials`); one warning says so.

    Parameters
    ----------
    lake
        The lake.
    test_cohort
        Draw the test cells from this cohort (train on the others); default: hold out
        ``test_fraction`` of the animals (chosen with ``seed``).
    test_fraction
        Share of animals held out when ``test_cohort`` is not given.
    models
        Model kinds to train in each trial (``ensemble``, ``clips``, ``features``).
    labels
        :class:`~cellsift.pipeline.classify.labels.LabelSpec` (default: the lake's labels).
    seed
        Sampling and training seed.
    sizes
        Training-set sizes (cells, balanced; default: the capstone's, scaled to the pool).
    report_dir
        Where ``report.json``, ``capstone.png`` and ``learning_curves.png`` go.

    Returns
    -------
    pandas.DataFrame
        As :func:`capstone_protocol`; also logged side by side with the capstone.
    """
    data = load_cell_data(lake, labels=labels or LabelSpec(), clips=any(m != "features" for m in models))
    test_mask = _test_mask(data, lake, test_cohort, test_fraction, seed)
    train_pool, test_pool = data.take(~test_mask), data.take(test_mask)
    y_tr, y_te = _labels(train_pool), _labels(test_pool)
    trials, note = capstone_trials(int((y_tr == 0).sum()), int((y_tr == 1).sum()), sizes)
    n_test = min(28, int((y_te == 0).sum()), int((y_te == 1).sum()))
    if n_test < 2:
        raise InputFormatError(
            f"the test animals have {int((y_te == 0).sum())} bad and {int((y_te == 1).sum())} good "
            "labelled cells: too few to test on (at least 2 of each)",
            path=lake,
            field="label",
            fix="label more cells, or use --protocol cv",
        )
    if n_test < 28:
        test_note = f"testing on {n_test} bad + {n_test} good cells (the capstone: 28 + 28)"
        note = (
            f"{note}; {test_note}" if note else f"the test animals have too few labelled cells: {test_note}"
        )
    if note:
        logger.warning("%s", note)
    factories = {name: (lambda name=name: make_model(name, seed=seed)) for name in models}
    table = capstone_protocol(
        train_pool, test_pool, factories, n_test_per_class=n_test, trials=trials, seed=seed
    )
    logger.info("\n%s", format_capstone_table(table))
    if report_dir is not None:
        write_report(report_dir, metrics={"protocol": "capstone", "note": note}, capstone=table)
    return table


def _test_mask(
    data: CellData, lake: str | PathLike[str], test_cohort: str | None, test_fraction: float, seed: int
) -> np.ndarray:
    """Which labelled cells form the test pool: a cohort's, or ``test_fraction`` of the animals'."""
    if test_cohort is None:
        groups = data.groups
        animals = np.array(sorted(set(groups)))
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(test_fraction * len(animals))))
        return np.isin(groups, rng.choice(animals, n_test, replace=False))
    cohorts = data.table["cohort"].astype(str).to_numpy()
    known = sorted(set(cohorts))
    mask = cohorts == test_cohort
    if not mask.any():
        raise InputFormatError(
            f"no labelled cells of cohort {test_cohort!r} (the lake's labelled cohorts: {', '.join(known)})",
            path=lake,
            field="--test-cohort",
            fix="ingest the test cohort into this lake (cellsift ingest RAW --lake LAKE), pass one of "
            "its cohorts, or leave --test-cohort out to hold out a quarter of the animals",
        )
    if mask.all():
        raise InputFormatError(
            f"cohort {test_cohort!r} is the lake's only labelled cohort: nothing is left to train on",
            path=lake,
            field="--test-cohort",
            fix="ingest a second cohort into the lake, or leave --test-cohort out to hold out animals",
        )
    return mask
