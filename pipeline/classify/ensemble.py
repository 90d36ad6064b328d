"""The ensemble: feature model + clip model, stacked and calibrated on out-of-fold predictions.

Training (:meth:`EnsembleClassifier.fit`):

1. Out-of-fold predictions of both base models, folds grouped by animal (each fold's
   models never see the animals they predict; early stopping uses a split of the
   fold's training animals).
2. A calibrator on those predictions: Platt scaling (logistic regression on the two
   base models' log-odds, the default) or isotonic regression on their mean log-odds.
   Because it is fitted on out-of-fold predictions with the true class balance,
   ``p_good`` is a calibrated probability.
3. Both base models re-fitted on all training cells, and an out-of-distribution
   detector (:mod:`cellsift.pipeline.classify.ood`) fitted on their features.

A third, table-only feature model (no movie-based features) is trained on all cells
for sessions that come without a movie (no clip store): there ``p_good`` is its
class-balanced probability and a warning is logged.

The reason of an artifact is the average of the two base models' reason probabilities.
Saved as ``features.npz`` + ``clips.pt`` + ``ensemble.npz`` (calibrator and OOD detector,
no pickles) + ``card.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.classify.adapter import ADAPTER_MAX_LABELS, LabelAdapter
from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.calibration import Calibrator, logit, sigmoid
from cellsift.pipeline.classify.card_build import new_card
from cellsift.pipeline.classify.clip_model import ClipClassifier, config_from_params
from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.data import ID_COLUMNS, REASONS, CellData
from cellsift.pipeline.classify.feature_model import FEATURES_FILE, FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, feature_matrix, table_columns_for
from cellsift.pipeline.classify.metrics import balanced_threshold, binary_metrics
from cellsift.pipeline.classify.progress import report_progress
from cellsift.pipeline.classify.splits import early_split, grouped_folds
from cellsift.schemas import InputFormatError, ModelMismatchError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["ENSEMBLE_FILE", "EnsembleClassifier", "EnsembleConfig"]

#: Calibrator file of an ensemble inside a model folder.
ENSEMBLE_FILE: Final = "ensemble.npz"
#: Prefix of the table-only feature model's weight file.
TABLE_ONLY_PREFIX: Final = "table_only_"
#: File of the fine-tuning adapter (:mod:`~cellsift.pipeline.classify.adapter`), when there is one.
ADAPTER_FILE: Final = "adapter.npz"


@dataclass(frozen=True)
class EnsembleConfig:
    """Settings of :class:`EnsembleClassifier`.

    Attributes
    ----------
    features, clips
        Base-model settings.
    n_folds
        Out-of-fold folds (grouped by animal; at most the number of animals).
    calibration
        ``"platt"`` (logistic regression on both log-odds) or ``"isotonic"``.
    early_stopping_fraction
        Fraction of training cells (whole animals when possible) held out for early stopping.
    ood_quantile
        Quantile of training OOD scores used as the OOD threshold.
    seed
        Random seed.
    """

    features: FeatureModelConfig = field(default_factory=FeatureModelConfig)
    clips: ClipModelConfig = field(default_factory=ClipModelConfig)
    n_folds: int = 3
    calibration: str = "platt"
    early_stopping_fraction: float = 0.2
    ood_quantile: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        if self.calibration not in ("platt", "isotonic"):
            raise ParameterError(
                f"unknown calibration {self.calibration!r}", field="calibration", fix="use platt or isotonic"
            )
        if self.n_folds < 2:
            raise ParameterError(f"n_folds must be >= 2, got {self.n_folds}", field="n_folds")


def _adapter_oof(p_base: np.ndarray, X: np.ndarray, y: np.ndarray, *, seed: int) -> np.ndarray | None:
    """Out-of-fold ``p_good`` of the adapter on its own labels (``None`` with too few per class)."""
    from sklearn.model_selection import StratifiedKFold

    k = int(min(5, np.bincount(np.asarray(y, dtype=int), minlength=2).min() // 2))
    if k < 2:
        return None
    out = np.full(len(y), np.nan)
    for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y):
        fold = LabelAdapter.fit(p_base[tr], X[tr], y[tr], columns=MODEL_FEATURES)
        out[te] = fold.apply(p_base[te], X[te])
    return out


class EnsembleClassifier(CellClassifier):
    """Feature model + clip model with a calibrated combination (see the module docstring).

    Parameters
    ----------
    config
        Ensemble settings.
    """

    kind: ClassVar[str] = "ensemble"
    uses_clips: ClassVar[bool] = True

    def __init__(self, config: EnsembleConfig = EnsembleConfig()) -> None:
        self.config = config
        self.features = FeatureClassifier(config.features)
        self.clips = ClipClassifier(config.clips)
        self.table_only: FeatureClassifier | None = None
        self.calibrator: Calibrator | None = None
        self.adapter: LabelAdapter | None = None
        self.oof: pd.DataFrame | None = None
        self.fit_seconds: float | None = None
        self.card = None

    # -- training ---------------------------------------------------------------
    def _folds(self, data: CellData) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import StratifiedKFold

        y = data.require_labels(what="the ensemble")
        if len(set(data.groups)) >= 2:
            return list(grouped_folds(data.groups, y, n_folds=self.config.n_folds, seed=self.config.seed))
        logger.warning("only one animal: out-of-fold calibration uses stratified (not grouped) folds")
        k = int(min(self.config.n_folds, np.bincount(y, minlength=2).min()))
        if k < 2:
            raise InputFormatError(
                "the ensemble needs at least 2 cells of each class",
                field="label",
                fix="label more cells, or train the feature model alone",
            )
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.config.seed)
        return list(skf.split(np.zeros(len(y)), y))

    def _split(self, data: CellData, seed: int) -> tuple[CellData, CellData | None]:
        return early_split(data, self.config.early_stopping_fraction, seed)

    def _fit_bases(
        self, data: CellData, seed: int, *, init: EnsembleClassifier | None = None
    ) -> tuple[FeatureClassifier, ClipClassifier]:
        return self._fit_bases_on(*self._split(data, seed), seed, init=init)

    def _fit_bases_on(
        self, fit_data: CellData, val: CellData | None, seed: int, *, init: EnsembleClassifier | None = None
    ) -> tuple[FeatureClassifier, ClipClassifier]:
        report_progress("  fitting features model...")
        fm = FeatureClassifier(replace(self.config.features, seed=seed)).fit(fit_data, valid=val)
        report_progress("  fitting clips model...")
        cm = ClipClassifier(replace(self.config.clips, seed=seed))
        if init is not None:
            cm.fit_from(init.clips, fit_data, valid=val)
        else:
            cm.fit(fit_data, valid=val)
        return fm, cm

    def fit(
        self, train: CellData, *, valid: CellData | None = None, init: EnsembleClassifier | None = None
    ) -> EnsembleClassifier:
        """Train both base models, the calibrator (out of fold) and the OOD detector.

        Parameters
        ----------
        train
            Labelled cells with clips (at least 2 cells per class).
        valid
            Ignored: early stopping and calibration use splits of ``train`` grouped by animal.
        init
            Start the clip networks from this ensemble's weights (fine-tuning).
        """
        t0 = time.perf_counter()
        y = train.require_labels(what="the ensemble")
        if valid is not None:
            logger.info("ensemble: the validation set is not used (out-of-fold splits of train are)")
        lf = np.zeros(len(train))
        lc = np.zeros(len(train))
        fold_of = np.full(len(train), -1)
        folds = self._folds(train)
        for k, (tr, te) in enumerate(folds):
            report_progress(
                "ensemble fold %d/%d (out-of-fold predictions for calibration)", k + 1, len(folds)
            )
            fm, cm = self._fit_bases(train.take(tr), self.config.seed + 17 * (k + 1), init=init)
            test = train.take(te)
            lf[te] = logit(fm.predict_proba(test))
            lc[te] = cm.predict_logit(test)[0]
            fold_of[te] = k
            logger.info("ensemble fold %d: %d train / %d calibration cells", k, len(tr), len(te))
        report_progress("calibration (%s, on %d out-of-fold predictions)", self.config.calibration, len(y))
        self.calibrator = Calibrator.fit(lf, lc, y, method=self.config.calibration)
        fit_data, val = self._split(train, self.config.seed)
        report_progress("final models on all %d cells", len(train))
        self.features, self.clips = self._fit_bases_on(fit_data, val, self.config.seed, init=init)
        self.table_only = FeatureClassifier(
            replace(self.config.features, seed=self.config.seed, clip_features=False, movie_features=False)
        ).fit(fit_data, valid=val)
        self.fit_ood(train, quantile=self.config.ood_quantile)
        oof = train.table[list(ID_COLUMNS)].copy()
        oof["fold"], oof["y"] = fold_of, y
        oof["p_features"], oof["p_clips"] = sigmoid(lf), sigmoid(lc)
        oof["p_good"], oof["threshold"] = self._cross_fitted(lf, lc, y, fold_of)
        self.oof = oof
        self._threshold = balanced_threshold(y, self.calibrator(lf, lc))
        self.fit_seconds = time.perf_counter() - t0
        self.card = new_card(
            self,
            train,
            params=self.params(),
            feature_columns=table_columns_for(MODEL_FEATURES),
            model_crop=self.config.clips.model_crop,
        )
        self.card = self._card_with_ood(self.card)
        logger.info(
            "ensemble trained on %d cells in %.0f s; calibrator %s",
            len(train),
            self.fit_seconds,
            self.calibrator.to_dict(),
        )
        return self

    def _cross_fitted(
        self, lf: np.ndarray, lc: np.ndarray, y: np.ndarray, fold_of: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-sample ``p_good`` and decision threshold of every cell.

        For each fold, the calibrator and the threshold are fitted on the other folds'
        out-of-fold predictions only, so the metrics reported on them are truly out of
        sample (the final calibrator, fitted on all of them, is not evaluated on itself).
        """
        p = np.full(len(y), np.nan)
        thr = np.full(len(y), np.nan)
        for k in np.unique(fold_of[fold_of >= 0]):
            te, tr = fold_of == k, (fold_of != k) & (fold_of >= 0)
            if len(np.unique(y[tr])) < 2:
                continue
            cal = Calibrator.fit(lf[tr], lc[tr], y[tr], method=self.config.calibration)
            p[te] = cal(lf[te], lc[te])
            thr[te] = balanced_threshold(y[tr], cal(lf[tr], lc[tr]))
        return p, thr

    def fine_tune(self, train: CellData, *, seed: int = 0) -> EnsembleClassifier:
        """Return a new ensemble adapted to ``train``'s labels.

        Up to ``ADAPTER_MAX_LABELS`` labels: this ensemble with a fitted
        :class:`~cellsift.pipeline.classify.adapter.LabelAdapter` (seconds; what it learnt
        from its own training cells is kept). More: a new ensemble trained on ``train``,
        its clip networks starting from this one's weights.
        """
        y = train.require_labels(what="fine-tuning")
        if len(y) <= ADAPTER_MAX_LABELS:
            return self._adapted(train, y)
        clips_cfg = replace(
            self.config.clips,
            lr=self.config.clips.lr / 4,
            epochs=max(10, self.config.clips.epochs // 2),
            min_epochs=3,
            seed=seed,
        )
        new = EnsembleClassifier(replace(self.config, clips=clips_cfg, seed=seed))
        return new.fit(train, init=self)

    def _adapted(self, train: CellData, y: np.ndarray) -> EnsembleClassifier:
        """A copy of this ensemble whose ``p_good`` is corrected by an adapter fitted on ``train``."""
        import copy

        report_progress("fitting the adapter on %d labels", len(y))
        p_base = self.predict_proba(train)
        X = feature_matrix(train.table, MODEL_FEATURES)
        new = copy.copy(self)
        new.adapter = LabelAdapter.fit(p_base, X, y, columns=MODEL_FEATURES)
        new._threshold = 0.5  # the adapter is fitted class-balanced
        new.oof = None
        card = self.require_card()
        metrics: dict[str, Any] = {"parent_metrics": dict(card.metrics)}
        oof = _adapter_oof(p_base, X, y, seed=self.config.seed)
        if oof is not None:
            metrics["out_of_fold"] = {"p_good": binary_metrics(y, oof, threshold=0.5)}
            metrics["out_of_fold_protocol"] = "adapter re-fitted 5-fold (stratified) on the lab's labels"
        new.card = replace(card, params=new.params(), metrics=metrics)
        logger.info("adapter fitted on %d labels: %s", len(y), new.adapter.summary())
        return new

    # -- prediction -------------------------------------------------------------------
    def _check(self) -> Calibrator:
        if self.calibrator is None:
            raise ModelMismatchError("the ensemble is not trained", fix="call fit() or load a saved model")
        return self.calibrator

    def predict_parts(self, data: CellData) -> pd.DataFrame:
        """Per cell: ``p_features``, ``p_clips`` (base models) and calibrated ``p_good``."""
        return self.predict_detailed(data)[0]

    @property
    def can_score_without_clips(self) -> bool:
        """True when the ensemble carries its table-only model (sessions without a movie)."""
        return self.table_only is not None

    def _split_by_clips(self, data: CellData) -> tuple[np.ndarray, np.ndarray]:
        """Indices of cells with at least one valid clip, and of cells without."""
        if data.clips is None:
            return np.zeros(0, dtype=np.int64), np.arange(len(data))
        has = np.asarray(data.clips.valid, dtype=bool).any(axis=1)
        return np.nonzero(has)[0], np.nonzero(~has)[0]

    def _predict_mixed(self, data: CellData) -> tuple[pd.DataFrame, np.ndarray | None]:
        """Ensemble on cells with clips, the table-only model on cells without (no movie)."""
        cal = self._check()
        n = len(data)
        with_c, without = self._split_by_clips(data)
        table_only = self.table_only
        if len(without) and table_only is None:
            if data.clips is None:
                raise ModelMismatchError(
                    f"ensemble '{self.model_id}' needs clips and has no table-only model",
                    fix="process the session with its movie, or re-train the ensemble with this cellsift",
                )
            with_c, without = np.arange(n), np.zeros(0, dtype=np.int64)  # score all-invalid clips as they are
        pf = np.full(n, np.nan)
        pc = np.full(n, np.nan)
        pg = np.full(n, np.nan)
        reasons = np.full((n, len(REASONS)), np.nan)
        have_reasons = False
        if len(with_c):
            sub = data.take(with_c) if len(with_c) < n else data
            p_f, rf = self.features.predict(sub)
            lf = logit(p_f)
            lc, rc = self.clips.predict_logit(sub)
            pf[with_c], pc[with_c], pg[with_c] = sigmoid(lf), sigmoid(lc), cal(lf, lc)
            parts = [p for p in (rf, rc) if p is not None]
            if parts:
                reasons[with_c] = np.mean(parts, axis=0)
                have_reasons = True
        if len(without) and table_only is not None:
            sub = data.take(without) if len(without) < n else data
            logger.warning(
                "%d cell(s) without clips (no movie): scored by the table-only feature model of '%s'",
                len(without),
                self.model_id,
            )
            p, r = table_only.predict(sub)
            pf[without], pg[without] = p, p
            if r is not None:
                reasons[without] = r
                have_reasons = True
        if self.adapter is not None:
            pg = self.adapter.apply(pg, feature_matrix(data.table, self.adapter.columns))
        frame = pd.DataFrame({"p_features": pf, "p_clips": pc, "p_good": pg})
        return frame, (np.nan_to_num(reasons, nan=0.0) if have_reasons else None)

    def predict_detailed(self, data: CellData) -> tuple[pd.DataFrame, np.ndarray | None]:
        """:meth:`predict_parts` and the reason probabilities, with one pass of each base model.

        Cells without a valid clip (sessions without a movie) are scored by the table-only
        model (``p_clips`` NaN there).
        """
        self._check()
        if len(data) == 0:
            empty = pd.DataFrame({"p_features": np.zeros(0), "p_clips": np.zeros(0), "p_good": np.zeros(0)})
            return empty, np.zeros((0, len(REASONS)))
        return self._predict_mixed(data)

    def predict_proba(self, data: CellData) -> np.ndarray:
        """Return calibrated ``p_good`` per cell."""
        return self.predict_detailed(data)[0]["p_good"].to_numpy()

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(calibrated p_good, mean reason probabilities)`` with one pass of each base model."""
        frame, reasons = self.predict_detailed(data)
        return frame["p_good"].to_numpy(), reasons

    def reason_proba(self, data: CellData) -> np.ndarray | None:
        """Mean of the base models' reason probabilities (those that have one)."""
        return self.predict_detailed(data)[1]

    def params(self) -> dict[str, Any]:
        """Configuration for the card."""
        return {
            "features": self.features.params(),
            "clips": self.clips.params(),
            "n_folds": self.config.n_folds,
            "calibration": self.calibrator.to_dict()
            if self.calibrator
            else {"method": self.config.calibration},
            "early_stopping_fraction": self.config.early_stopping_fraction,
            "ood_quantile": self.config.ood_quantile,
            "decision_threshold": round(self.decision_threshold, 4),
            "seed": self.config.seed,
            "fit_seconds": None if self.fit_seconds is None else round(self.fit_seconds, 1),
            "adapter": None if self.adapter is None else self.adapter.summary(),
        }

    # -- persistence ----------------------------------------------------------------------
    def save(self, folder: str | PathLike[str]) -> Path:
        """Write ``features.npz``, ``clips.pt``, ``ensemble.npz`` and ``card.json``."""
        cal = self._check()
        card = self.require_card()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            **self.features.save_weights(folder),
            **self.clips.save_weights(folder),
            **self._save_ood(folder),
        }
        if self.table_only is not None:
            files.update(self.table_only.save_weights(folder, prefix=TABLE_ONLY_PREFIX))
        np.savez_compressed(
            folder / ENSEMBLE_FILE,
            cal_method=np.asarray(cal.method),
            cal_coef=cal.coef,
            cal_intercept=np.asarray(cal.intercept),
            cal_x=cal.x,
            cal_y=cal.y,
        )
        files[ENSEMBLE_FILE] = file_sha256(folder / ENSEMBLE_FILE)
        if self.adapter is not None:
            np.savez_compressed(folder / ADAPTER_FILE, **self.adapter.to_arrays())
            files[ADAPTER_FILE] = file_sha256(folder / ADAPTER_FILE)
        saved = replace(card, files=files, params=self.params())
        saved.write(folder)
        self.card = saved
        return folder

    @classmethod
    def load(cls, folder: str | PathLike[str]) -> EnsembleClassifier:
        """Load an ensemble folder (verifying its card's file hashes)."""
        folder = Path(folder)
        card = cls._checked_card(folder)
        params = dict(card.params)
        fparams = {
            k: v
            for k, v in dict(params.get("features", {})).items()
            if k in FeatureModelConfig.__dataclass_fields__
        }
        cfg = EnsembleConfig(
            features=FeatureModelConfig(**fparams),
            clips=config_from_params(params.get("clips", {})),
            n_folds=int(params.get("n_folds", 3)),
            calibration=str(dict(params.get("calibration", {})).get("method", "platt")),
            seed=int(params.get("seed", 0)),
        )
        model = cls(cfg)
        model.features.load_weights(folder)
        model.clips.load_weights(folder)
        if (folder / (TABLE_ONLY_PREFIX + FEATURES_FILE)).is_file():
            model.table_only = FeatureClassifier(
                replace(cfg.features, clip_features=False, movie_features=False)
            )
            model.table_only.load_weights(folder, prefix=TABLE_ONLY_PREFIX)
            model.table_only.card = card
        path = folder / ENSEMBLE_FILE
        try:
            with np.load(path, allow_pickle=False) as a:
                model.calibrator = Calibrator(
                    method=str(a["cal_method"]),
                    coef=np.asarray(a["cal_coef"]),
                    intercept=float(a["cal_intercept"]),
                    x=np.asarray(a["cal_x"]),
                    y=np.asarray(a["cal_y"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"ensemble file cannot be read ({type(exc).__name__}: {exc})",
                path=path,
                fix="restore the model folder or re-train",
            ) from None
        model._load_ood(folder)
        if ADAPTER_FILE in dict(card.files):
            try:
                with np.load(folder / ADAPTER_FILE, allow_pickle=False) as a:
                    model.adapter = LabelAdapter.from_arrays(a)
            except (OSError, KeyError, ValueError) as exc:
                raise ModelMismatchError(
                    f"adapter file cannot be read ({type(exc).__name__}: {exc})",
                    path=folder / ADAPTER_FILE,
                    fix="restore the model folder or fine-tune again",
                ) from None
        model._threshold = float(params.get("decision_threshold", 0.5))
        model.card = card
        model.features.card = card
        model.clips.card = card
        return model
