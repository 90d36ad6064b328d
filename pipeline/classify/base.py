"""The one interface every cell classifier follows.

A *cell classifier* turns cell candidates into ``p_good`` (the probability that a
candidate is a real cell) and, where it can tell, the most likely artifact reason
(:data:`~cellsift.pipeline.classify.data.REASONS`). Every classifier implements
:class:`CellClassifier`:

* ``fit(train, valid=None)`` on a :class:`~cellsift.pipeline.classify.data.CellData`
  with labels;
* ``predict_proba(data) -> p_good`` (float64, one per cell);
* ``predict_reason(data) -> reason`` (object array of reason names or ``None``);
* ``save(folder)`` / ``load(folder)``: weights in plain formats (``.npz`` without
  pickles, ``.json``, ``torch`` state dicts loaded with ``weights_only=True``) plus the
  JSON :class:`~cellsift.pipeline.classify.card.ModelCard`, whose file hashes are
  verified before anything is loaded.

Every model also carries an out-of-distribution detector
(:class:`~cellsift.pipeline.classify.ood.OODDetector`) fitted on its training cells'
quality features, saved as ``ood.npz``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import ClassVar, Final

import numpy as np

from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.classify.card import ModelCard
from cellsift.pipeline.classify.data import REASONS, CellData
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, feature_matrix
from cellsift.pipeline.classify.ood import OODDetector, domain_descriptors
from cellsift.schemas import InputFormatError, ModelMismatchError

logger = logging.getLogger(__name__)

__all__ = ["OOD_FILE", "CellClassifier"]

#: File of the out-of-distribution detector inside a model folder.
OOD_FILE: Final = "ood.npz"


class CellClassifier(ABC):
    """A model that scores cell candidates.

    Subclasses set :attr:`kind`, implement the abstract methods and keep ``card``
    (``None`` until trained or loaded).
    """

    kind: ClassVar[str] = ""
    #: Whether the model reads clips (``CellData.clips`` must then be loaded).
    uses_clips: ClassVar[bool] = False

    card: ModelCard | None = None
    #: Out-of-distribution detector fitted on the training cells' features (``None`` if
    #: the training table had no quality features).
    ood: OODDetector | None = None
    #: Decision threshold on ``p_good`` (see :attr:`decision_threshold`).
    _threshold: float = 0.5

    @abstractmethod
    def fit(self, train: CellData, *, valid: CellData | None = None) -> CellClassifier:
        """Train on labelled cells; ``valid`` (optional) drives early stopping.

        Returns ``self``.
        """

    @abstractmethod
    def predict_proba(self, data: CellData) -> np.ndarray:
        """Return ``p_good``, ``(n,)`` float64 in [0, 1]."""

    @abstractmethod
    def reason_proba(self, data: CellData) -> np.ndarray | None:
        """Return ``(n, len(REASONS))`` probabilities of each artifact reason given the cell
        is an artifact, or ``None`` if the model cannot tell reasons."""

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(p_good, reason probabilities)`` in one pass (models that share work override it)."""
        return self.predict_proba(data), self.reason_proba(data)

    def predict_reason(
        self, data: CellData, *, min_prob: float = 0.4, proba: np.ndarray | None = None
    ) -> np.ndarray:
        """Most likely artifact reason per cell, ``None`` where the model cannot tell.

        Parameters
        ----------
        data
            Cells to score.
        min_prob
            A reason is named only if its probability (given the cell is an artifact)
            is at least this.
        proba
            Reason probabilities already computed (from :meth:`predict`).

        Returns
        -------
        numpy.ndarray
            ``(n,)`` object array of reason names (:data:`REASONS`) or ``None``.
        """
        out = np.full(len(data), None, dtype=object)
        if proba is None:
            proba = self.reason_proba(data)
        if proba is None or len(data) == 0:
            return out
        best = np.argmax(proba, axis=1)
        ok = proba[np.arange(len(data)), best] >= min_prob
        names = np.asarray(REASONS, dtype=object)
        out[ok] = names[best[ok]]
        return out

    @abstractmethod
    def save(self, folder: str | PathLike[str]) -> Path:
        """Write weights and ``card.json`` into ``folder`` (created); return the folder."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | PathLike[str]) -> CellClassifier:
        """Read a model written by :meth:`save` (verifies the card's file hashes)."""

    def require_card(self) -> ModelCard:
        """The model's card; raises if the model is not trained (or loaded) yet.

        Raises
        ------
        ModelMismatchError
            The model has no card yet.
        """
        if self.card is None:
            raise ModelMismatchError(
                f"the {self.kind} model is not trained", fix="call fit() or load a saved model"
            )
        return self.card

    @classmethod
    def _checked_card(cls, folder: Path) -> ModelCard:
        """The card of ``folder``, refused if it is another kind or a weight file changed."""
        card = ModelCard.read(folder)
        if card.kind != cls.kind:
            raise ModelMismatchError(
                f"model '{card.model_id}' is a {card.kind} model, not a {cls.kind} model",
                path=folder,
                field="kind",
                fix="load it with load_model()",
            )
        card.verify_files(folder)
        return card

    def _save_base(self, folder: str | PathLike[str], weights: Callable[[Path], dict[str, str]]) -> Path:
        """Write ``weights(folder)``, the OOD detector and ``card.json`` (with file hashes)."""
        card = self.require_card()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {**weights(folder), **self._save_ood(folder)}
        self.card = replace(card, files=files)
        self.card.write(folder)
        return folder

    # -- out-of-distribution detector (shared by every model) ----------------------
    def fit_ood(self, train: CellData, *, quantile: float = 0.99) -> None:
        """Fit the OOD detector on the training cells' unit-free inputs and session domains."""
        self.ood = None
        try:
            X = feature_matrix(train.table, MODEL_FEATURES)
        except InputFormatError:
            logger.info("no quality features in the training table: no OOD detector")
            return
        if len(X) >= 3:
            self.ood = OODDetector.fit(
                X, quantile=quantile, groups=train.groups, domain=domain_descriptors(train.table)
            )

    def ood_scores(self, data: CellData) -> tuple[np.ndarray, np.ndarray]:
        """``(ood_score, ood_flag)`` per cell (flagged above 1); NaN/False without a detector."""
        if self.ood is None:
            return np.full(len(data), np.nan), np.zeros(len(data), dtype=bool)
        X = feature_matrix(data.table, MODEL_FEATURES)
        score = self.ood.combined_score(X, domain_descriptors(data.table))
        return score, score > 1.0

    def _save_ood(self, folder: Path) -> dict[str, str]:
        if self.ood is None:
            return {}
        np.savez_compressed(folder / OOD_FILE, **self.ood.to_arrays(""))
        return {OOD_FILE: file_sha256(folder / OOD_FILE)}

    def _load_ood(self, folder: Path) -> None:
        path = folder / OOD_FILE
        self.ood = None
        if not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as arrays:
                self.ood = OODDetector.from_arrays(arrays, "")
        except (OSError, KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"OOD detector cannot be read ({type(exc).__name__})",
                path=path,
                fix="restore the model folder or re-train",
            ) from None

    def _card_with_ood(self, card: ModelCard) -> ModelCard:
        return replace(card, ood=self.ood.summary() if self.ood is not None else {})

    @property
    def can_score_without_clips(self) -> bool:
        """True when the model can score a session that has no movie (no clip store)."""
        return not self.uses_clips

    @property
    def decision_threshold(self) -> float:
        """A cell is labelled good when ``p_good >= decision_threshold`` (0.5 unless the
        model chose one on out-of-fold predictions to balance the errors on both classes)."""
        return float(self._threshold)

    def predict_label(self, data: CellData) -> np.ndarray:
        """``"good"``/``"bad"`` per cell (``p_good`` against :attr:`decision_threshold`)."""
        return np.where(self.predict_proba(data) >= self.decision_threshold, "good", "bad").astype(object)

    @property
    def model_id(self) -> str:
        """The model's id (from its card), ``"untrained"`` before training."""
        return self.card.model_id if self.card is not None else "untrained"
