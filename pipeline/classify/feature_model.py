"""The fast model: gradient-boosted trees on the interpretable quality features.

Inputs are the ``cells`` table's quality features with the unit-dependent ones made
relative to their session (:data:`~cellsift.pipeline.classify.inputs.MODEL_FEATURES`),
plus, when trained with clips, the clip summaries of
:mod:`~cellsift.pipeline.classify.clip_summary`. Missing values (NaN) are allowed.

Training uses scikit-learn's ``HistGradientBoostingClassifier`` with balanced class
weights; the number of boosting rounds is chosen on the validation split (early
stopping). A second, multiclass booster on the artifacts learns the artifact reason.

Saved models hold no pickles: the fitted trees are exported to plain arrays
(:class:`TreeEnsemble`, stored in ``.npz`` loaded with ``allow_pickle=False``) and
evaluated in numpy, so scoring needs neither scikit-learn's private classes nor
``pickle``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card_build import new_card
from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES, clip_summary_features
from cellsift.pipeline.classify.data import REASONS, CellData
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, feature_matrix, table_columns_for
from cellsift.pipeline.stages import SPATIAL_FEATURE_NAMES
from cellsift.schemas import InputFormatError, ModelMismatchError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["FEATURES_FILE", "FeatureClassifier", "FeatureModelConfig", "TreeEnsemble"]

#: Weight file of the feature model inside a model folder.
FEATURES_FILE: Final = "features.npz"


# ---------------------------------------------------------------------------
# trees as plain arrays


@dataclass(frozen=True)
class TreeEnsemble:
    """A fitted ``HistGradientBoostingClassifier`` as plain arrays, evaluated in numpy.

    Attributes
    ----------
    feature, threshold, missing_left, left, right, is_leaf, value
        Node arrays of all trees concatenated (``left``/``right`` are global indices).
    roots
        ``(n_iter, n_outputs)`` index of each tree's root node.
    baseline
        ``(n_outputs,)`` raw-score baseline.
    classes
        Class labels (int), ``len == 2`` for binary (one output) or ``n_outputs``.
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: np.ndarray
    classes: np.ndarray

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "feature",
        "threshold",
        "missing_left",
        "left",
        "right",
        "is_leaf",
        "value",
        "roots",
        "baseline",
        "classes",
    )

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """Export a fitted ``HistGradientBoostingClassifier`` (numerical features only)."""
        if np.any(getattr(model, "is_categorical_", None) or False):
            raise InputFormatError("categorical features are not supported", field="features")
        feats, thr, miss, left, right, leaf, val = [], [], [], [], [], [], []
        roots = np.zeros((len(model._predictors), model.n_trees_per_iteration_), dtype=np.int64)
        offset = 0
        for it, trees in enumerate(model._predictors):
            for k, tree in enumerate(trees):
                nodes = tree.nodes
                roots[it, k] = offset
                feats.append(nodes["feature_idx"].astype(np.int64))
                thr.append(nodes["num_threshold"].astype(np.float64))
                miss.append(nodes["missing_go_to_left"].astype(bool))
                left.append(nodes["left"].astype(np.int64) + offset)
                right.append(nodes["right"].astype(np.int64) + offset)
                leaf.append(nodes["is_leaf"].astype(bool))
                val.append(nodes["value"].astype(np.float64))
                offset += len(nodes)
        cat = np.concatenate
        return cls(
            feature=cat(feats),
            threshold=cat(thr),
            missing_left=cat(miss),
            left=cat(left),
            right=cat(right),
            is_leaf=cat(leaf),
            value=cat(val),
            roots=roots,
            baseline=np.asarray(model._baseline_prediction, dtype=np.float64).ravel(),
            classes=np.asarray(model.classes_).astype(np.int64),
        )

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Return ``(n, n_outputs)`` raw scores (log-odds / per-class logits)."""
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        n_out = self.roots.shape[1]
        out = np.tile(self.baseline, (n, 1))
        rows = np.arange(n)
        for k in range(n_out):
            for root in self.roots[:, k]:
                node = np.full(n, root, dtype=np.int64)
                active = ~self.is_leaf[node]
                while active.any():
                    idx = node[active]
                    x = X[rows[active], self.feature[idx]]
                    go_left = np.where(np.isnan(x), self.missing_left[idx], x <= self.threshold[idx])
                    node[active] = np.where(go_left, self.left[idx], self.right[idx])
                    active = ~self.is_leaf[node]
                out[:, k] += self.value[node]
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return ``(n, n_classes)`` class probabilities (columns follow ``classes``)."""
        raw = self.raw_score(X)
        if raw.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 0], -500, 500)))
            return np.column_stack([1.0 - p1, p1])
        raw = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(raw)
        return e / e.sum(axis=1, keepdims=True)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Return ``{prefix + field: array}`` for ``numpy.savez``."""
        return {prefix + f: getattr(self, f) for f in self._FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> TreeEnsemble:
        """Inverse of :meth:`to_arrays`."""
        return cls(**{f: np.asarray(arrays[prefix + f]) for f in cls._FIELDS})


# ---------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class FeatureModelConfig:
    """Settings of :class:`FeatureClassifier`.

    Attributes
    ----------
    max_iter
        Maximum boosting rounds; early stopping picks the best round on the validation
        split (if one is given) and the model is refit with that many.
    learning_rate
        Shrinkage of each round.
    max_leaf_nodes
        Leaves per tree.
    min_samples_leaf
        Minimum cells per leaf (reduced automatically for tiny training sets).
    l2_regularization
        L2 penalty on leaf values.
    reason_min_cells
        Minimum labelled artifacts with a known reason before a reason model is trained.
    clip_features
        Also use the clip summaries of :mod:`~cellsift.pipeline.classify.clip_summary` when the
        training cells come with clips (the model then reads the clip store when scoring).
    movie_features
        Use the movie-based table features (``spatial_corr``, ``spatial_corr_min``,
        ``peak_contrast``); ``False`` gives a model for sessions without a movie.
    seed
        Random seed.
    """

    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 10
    l2_regularization: float = 1.0
    reason_min_cells: int = 10
    seed: int = 0
    clip_features: bool = True
    movie_features: bool = True

    def __post_init__(self) -> None:
        if self.max_iter < 1 or not 0 < self.learning_rate <= 1 or self.max_leaf_nodes < 2:
            raise ParameterError(
                "max_iter >= 1, 0 < learning_rate <= 1 and max_leaf_nodes >= 2 are required "
                f"(got {self.max_iter}, {self.learning_rate}, {self.max_leaf_nodes})",
                field="FeatureModelConfig",
            )


def _hgb(config: FeatureModelConfig, n: int, *, max_iter: int, balanced: bool) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=int(max(2, min(config.min_samples_leaf, n // 10))),
        l2_regularization=config.l2_regularization,
        class_weight="balanced" if balanced else None,
        early_stopping=False,
        random_state=config.seed,
    )


def _best_iteration(model: Any, X: np.ndarray, y: np.ndarray) -> int:
    """Boosting round with the lowest class-balanced log-loss on ``(X, y)`` (1-based)."""
    w = np.where(y == 1, 0.5 / max((y == 1).mean(), 1e-9), 0.5 / max((y == 0).mean(), 1e-9))
    best, best_loss = 1, np.inf
    for i, proba in enumerate(model.staged_predict_proba(X), start=1):
        p = np.clip(proba[:, 1], 1e-6, 1 - 1e-6)
        loss = float(-np.mean(w * (y * np.log(p) + (1 - y) * np.log(1 - p))))
        if loss < best_loss - 1e-6:
            best, best_loss = i, loss
    return best


def _reason_matrix(trees: TreeEnsemble, X: np.ndarray) -> np.ndarray:
    """``(n, len(REASONS))`` reason probabilities from the reason booster."""
    out = np.zeros((len(X), len(REASONS)))
    if len(X):
        out[:, trees.classes] = trees.predict_proba(X)
    return out


class FeatureClassifier(CellClassifier):
    """Gradient-boosted trees on the quality features (see the module docstring).

    Parameters
    ----------
    config
        Model settings.
    """

    kind: ClassVar[str] = "features"

    def __init__(self, config: FeatureModelConfig = FeatureModelConfig()) -> None:
        self.config = config
        self.columns: tuple[str, ...] = MODEL_FEATURES
        self.trees: TreeEnsemble | None = None
        self.reason_trees: TreeEnsemble | None = None
        self.n_iter: int | None = None
        self.card = None

    @property
    def can_score_without_clips(self) -> bool:
        """Clip summaries, if used, are then missing (NaN): the trees still score."""
        return True

    @property
    def uses_clips(self) -> bool:
        """True when the model reads clip summaries (trained with clips)."""
        return any(c in CLIP_SUMMARY_FEATURES for c in self.columns)

    def _matrix(self, data: CellData) -> np.ndarray:
        """Input matrix: table features plus clip summaries (NaN where clips are missing)."""
        table = data.table
        wanted = [c for c in self.columns if c in CLIP_SUMMARY_FEATURES and c not in table.columns]
        if wanted:
            if data.clips is not None:
                summary = clip_summary_features(data.clips)
                table = table.assign(**{c: summary[c] for c in wanted})
            else:
                logger.warning(
                    "feature model '%s' uses clip summaries but the cells come without clips: "
                    "scored on the table features alone",
                    self.model_id,
                )
                table = table.assign(**{c: np.nan for c in wanted})
        return feature_matrix(table, self.columns)

    def fit(self, train: CellData, *, valid: CellData | None = None) -> FeatureClassifier:
        """Train the booster (and the reason booster) on labelled cells.

        Parameters
        ----------
        train
            Labelled cells (every ``y`` is 0 or 1, both classes present).
        valid
            Labelled cells for early stopping (rounds chosen by balanced log-loss);
            ``None``: ``min(max_iter, 150)`` rounds.
        """
        y = train.require_labels(what="the feature model")
        use_clips = self.config.clip_features and train.clips is not None
        base = (
            MODEL_FEATURES
            if self.config.movie_features
            else tuple(c for c in MODEL_FEATURES if c not in SPATIAL_FEATURE_NAMES)
        )
        self.columns = base + (CLIP_SUMMARY_FEATURES if use_clips else ())
        X = self._matrix(train)
        X[:, np.isnan(X).all(axis=0)] = 0.0  # sklearn cannot bin an all-missing column
        cfg = self.config
        n_iter = min(cfg.max_iter, 150)
        if (
            valid is not None
            and len(valid)
            and valid.y is not None
            and len(np.unique(valid.y[valid.y >= 0])) == 2
        ):
            keep = valid.y >= 0
            probe = _hgb(cfg, len(y), max_iter=cfg.max_iter, balanced=True).fit(X, y)
            n_iter = _best_iteration(probe, self._matrix(valid)[keep], valid.y[keep])
            n_iter = max(n_iter, 10)
        model = _hgb(cfg, len(y), max_iter=n_iter, balanced=True).fit(X, y)
        self.trees = TreeEnsemble.from_sklearn(model)
        self.n_iter = n_iter
        self.reason_trees = None
        if train.reasons is not None:
            bad = (y == 0) & np.isin(train.reasons, REASONS)
            codes = np.array([REASONS.index(r) for r in train.reasons[bad]], dtype=np.int64)
            if bad.sum() >= cfg.reason_min_cells and len(np.unique(codes)) >= 2:
                rmodel = _hgb(cfg, int(bad.sum()), max_iter=min(n_iter * 2, 200), balanced=False)
                rmodel.fit(X[bad], codes)
                self.reason_trees = TreeEnsemble.from_sklearn(rmodel)
        logger.info(
            "feature model: %d cells (%d good), %d rounds, reasons: %s",
            len(y),
            int(y.sum()),
            n_iter,
            self.reason_trees is not None,
        )
        self.fit_ood(train)
        base_columns = tuple(c for c in self.columns if c not in CLIP_SUMMARY_FEATURES)
        card = new_card(self, train, params=self.params(), feature_columns=table_columns_for(base_columns))
        self.card = self._card_with_ood(card)
        return self

    def _check_fitted(self) -> TreeEnsemble:
        if self.trees is None:
            raise ModelMismatchError(
                "the feature model is not trained", fix="call fit() or load a saved model"
            )
        return self.trees

    def predict_proba(self, data: CellData) -> np.ndarray:
        """Return ``p_good`` per cell (class-balanced, not calibrated)."""
        return self._p_good(self._matrix(data))

    def reason_proba(self, data: CellData) -> np.ndarray | None:
        """Return ``(n, len(REASONS))`` reason probabilities, ``None`` without a reason model."""
        self._check_fitted()
        return None if self.reason_trees is None else _reason_matrix(self.reason_trees, self._matrix(data))

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(p_good, reason probabilities)`` from one input matrix (clip summaries computed once)."""
        X = self._matrix(data)
        return self._p_good(X), (None if self.reason_trees is None else _reason_matrix(self.reason_trees, X))

    def _p_good(self, X: np.ndarray) -> np.ndarray:
        trees = self._check_fitted()
        if len(X) == 0:
            return np.zeros(0)
        return trees.predict_proba(X)[:, list(trees.classes).index(1)]

    def feature_importance(self) -> pd.Series:
        """Split counts per input column (how often the trees use each feature)."""
        trees = self._check_fitted()
        used = trees.feature[~trees.is_leaf]
        counts = np.bincount(used, minlength=len(self.columns))
        return pd.Series(counts, index=list(self.columns)).sort_values(ascending=False)

    # -- persistence ----------------------------------------------------------
    def save_weights(self, folder: Path, *, prefix: str = "") -> dict[str, str]:
        """Write the weight file into ``folder``; return ``{name: sha256}``."""
        trees = self._check_fitted()
        arrays: dict[str, Any] = trees.to_arrays("p_")
        if self.reason_trees is not None:
            arrays.update(self.reason_trees.to_arrays("r_"))
        arrays["columns"] = np.asarray(self.columns, dtype="U64")
        name = prefix + FEATURES_FILE
        np.savez_compressed(folder / name, **arrays)
        return {name: file_sha256(folder / name)}

    def load_weights(self, folder: Path, *, prefix: str = "") -> None:
        """Read the weight file written by :meth:`save_weights`."""
        path = folder / (prefix + FEATURES_FILE)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                self.columns = tuple(str(c) for c in arrays["columns"])
                self.trees = TreeEnsemble.from_arrays(arrays, "p_")
                has_reason = "r_feature" in arrays.files
                self.reason_trees = TreeEnsemble.from_arrays(arrays, "r_") if has_reason else None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"feature-model weights cannot be read ({type(exc).__name__}: {exc})",
                path=path,
                fix="restore the model folder or re-train",
            ) from None

    def save(self, folder: str | PathLike[str]) -> Path:
        """Write ``features.npz`` and ``card.json`` into ``folder``."""
        return self._save_base(folder, self.save_weights)

    @classmethod
    def load(cls, folder: str | PathLike[str]) -> FeatureClassifier:
        """Load a feature model folder (verifying its card's file hashes)."""
        folder = Path(folder)
        card = cls._checked_card(folder)
        params = {k: v for k, v in dict(card.params).items() if k in FeatureModelConfig.__dataclass_fields__}
        model = cls(FeatureModelConfig(**params))
        model.load_weights(folder)
        model._load_ood(folder)
        model.card = card
        return model

    def params(self) -> dict[str, Any]:
        """The configuration as JSON-able data (stored on the card)."""
        return {**asdict(self.config), "n_iter": self.n_iter}
