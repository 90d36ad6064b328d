"""Model kinds: the class behind each ``kind`` name, and untrained models of a kind.

``features`` (gradient-boosted trees on the quality features), ``clips`` (CNN + LSTM
over peak clips) and ``ensemble`` (both, calibrated). A model folder's card names its
kind; :func:`model_class` finds the class that loads it.
"""

from __future__ import annotations

from os import PathLike
from typing import Final

from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.ensemble import EnsembleClassifier, EnsembleConfig
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.schemas import ModelMismatchError, ParameterError

__all__ = ["MODEL_KINDS", "make_model", "model_class"]

#: Every model kind and its class.
MODEL_KINDS: Final[dict[str, type[CellClassifier]]] = {
    "features": FeatureClassifier,
    "clips": ClipClassifier,
    "ensemble": EnsembleClassifier,
}


def model_class(kind: str, path: str | PathLike[str] | None = None) -> type[CellClassifier]:
    """The class of model ``kind`` (as a card names it).

    Raises
    ------
    ModelMismatchError
        Unknown kind (the model folder at ``path`` was written by a newer cellsift).
    """
    if kind not in MODEL_KINDS:
        raise ModelMismatchError(
            f"unknown model kind {kind!r}",
            path=path,
            field="kind",
            fix="this model was written by a newer cellsift; upgrade cellsift",
        )
    return MODEL_KINDS[kind]


def make_model(
    kind: str,
    *,
    seed: int = 0,
    clip_config: ClipModelConfig | None = None,
    feature_config: FeatureModelConfig | None = None,
    n_folds: int = 3,
) -> CellClassifier:
    """Return an untrained model of ``kind`` (``features``, ``clips`` or ``ensemble``).

    Parameters
    ----------
    kind
        Model kind.
    seed
        Random seed (of the default configurations).
    clip_config, feature_config
        Base-model settings (default: the defaults with ``seed``).
    n_folds
        Out-of-fold folds of an ensemble's calibration.

    Raises
    ------
    ParameterError
        Unknown kind.
    """
    fcfg = feature_config or FeatureModelConfig(seed=seed)
    ccfg = clip_config or ClipModelConfig(seed=seed)
    if kind == "features":
        return FeatureClassifier(fcfg)
    if kind == "clips":
        return ClipClassifier(ccfg)
    if kind == "ensemble":
        return EnsembleClassifier(EnsembleConfig(features=fcfg, clips=ccfg, n_folds=n_folds, seed=seed))
    raise ParameterError(f"unknown model kind {kind!r}", field="kind", fix="use features, clips or ensemble")
