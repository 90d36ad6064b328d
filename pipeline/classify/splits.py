"""Splits of labelled cells: grouped-by-animal folds and early-stopping splits.

Cross-validation and out-of-fold calibration are grouped by animal (``cohort/animal``):
no fold is ever scored on an animal it trained on (:func:`grouped_folds` checks this).
Early stopping only needs a fair estimate of the epoch or round to stop at, so its
split (:func:`split_valid`) is grouped only when there are many animals.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cellsift.pipeline.classify.data import CellData
from cellsift.schemas import InputFormatError

__all__ = ["early_split", "grouped_folds", "split_valid"]


def grouped_folds(
    groups: np.ndarray, y: np.ndarray, *, n_folds: int = 5, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_idx, test_idx)`` with every animal in exactly one test fold.

    Uses ``StratifiedGroupKFold`` (classes balanced across folds as far as animals allow)
    with ``min(n_folds, n_animals)`` folds.

    Parameters
    ----------
    groups
        ``(n,)`` animal key per cell.
    y
        ``(n,)`` labels (1 good, 0 bad).
    n_folds
        Folds wanted (at most the number of animals are made).
    seed
        Shuffling seed.

    Raises
    ------
    InputFormatError
        Fewer than two animals (no grouped split is possible).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise InputFormatError(
            f"cross-validation grouped by animal needs at least 2 animals, got {n_groups}",
            field="animal",
            fix="add labelled cells of more animals",
        )
    k = min(n_folds, n_groups)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in splitter.split(np.zeros(len(groups)), y, groups):
        shared = set(groups[tr]) & set(groups[te])
        if shared:  # never happens with StratifiedGroupKFold; guard the contract anyway
            raise RuntimeError(f"grouped split shares animals {sorted(shared)}")
        yield tr, te


def split_valid(data: CellData, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): grouped by animal when >= 10 animals, else stratified.

    With few animals a grouped split would hold out a large share of the data (whole
    animals); early stopping only needs a fair estimate of the epoch to stop at.

    Parameters
    ----------
    data
        Labelled cells.
    fraction
        Share of cells (or animals) held out for validation.
    seed
        Split seed.

    Returns
    -------
    train, valid
        Row positions; ``valid`` is empty when a class has fewer than 2 cells.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    y = data.require_labels(what="the early-stopping split")
    groups = data.groups
    idx = np.arange(len(data))
    if len(set(groups)) >= 10:
        splitter = GroupShuffleSplit(n_splits=8, test_size=fraction, random_state=seed)
        for tr, va in splitter.split(idx, y, groups):
            if len(np.unique(y[va])) == 2 and len(np.unique(y[tr])) == 2:
                return tr, va
    n_min = np.bincount(y, minlength=2).min()
    if n_min < 2:
        return idx, idx[:0]
    splitter2 = StratifiedShuffleSplit(n_splits=1, test_size=max(fraction, 2 / len(y)), random_state=seed)
    tr, va = next(splitter2.split(idx, y))
    return tr, va


def early_split(data: CellData, fraction: float, seed: int) -> tuple[CellData, CellData | None]:
    """``(fit cells, validation cells)`` of :func:`split_valid`; ``None`` when no split is possible."""
    tr, va = split_valid(data, fraction, seed)
    if len(va) == 0:
        return data, None
    return data.take(tr), data.take(va)
