"""Out-of-distribution warnings: how far a cell's features lie from the training data.

Each feature is passed through a signed ``log1p`` (taming heavy tails such as areas and
peak-to-noise ratios), standardised with the training median and robust SD, missing
values are set to the training median, and the score is the Mahalanobis distance
under a Ledoit-Wolf shrunk covariance of the training cells. A cell is flagged when its
score exceeds a high quantile (default 0.99) of the training cells' scores; a session
is flagged when more than ``max_fraction`` of its cells are (about 1 % are expected).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.inputs import ROBUST_SD_PER_MAD
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["OODDetector", "session_ood"]


def _transform(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.sign(X) * np.log1p(np.abs(X))


@dataclass(frozen=True)
class OODDetector:
    """Mahalanobis-distance novelty detector on standardised features.

    Attributes
    ----------
    center, scale
        ``(F,)`` training median and robust SD of the transformed features.
    precision
        ``(F, F)`` inverse of the shrunk covariance of the standardised features.
    threshold
        Score above which a cell is out of distribution.
    quantile
        Training quantile the threshold was taken at.
    n_train
        Training cells.
    """

    center: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    n_train: int

    _FIELDS: ClassVar[tuple[str, ...]] = ("center", "scale", "precision", "threshold", "quantile", "n_train")

    @classmethod
    def fit(cls, X: np.ndarray, *, quantile: float = 0.99) -> OODDetector:
        """Fit on training features ``X`` (``(n, F)``, NaN allowed).

        Raises
        ------
        InputFormatError
            Fewer than 3 rows.
        ParameterError
            ``quantile`` outside (0, 1).
        """
        from sklearn.covariance import LedoitWolf

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 3:
            raise InputFormatError(
                f"OOD detector needs >= 3 training rows, got shape {X.shape}", field="features"
            )
        if not 0 < quantile < 1:
            raise ParameterError(
                f"quantile must be in (0, 1), got {quantile}", field="quantile", fix="use e.g. 0.99"
            )
        T = _transform(X)
        center = np.nanmedian(T, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        mad = ROBUST_SD_PER_MAD * np.nanmedian(np.abs(T - center), axis=0)
        sd = np.nanstd(T, axis=0)
        scale = np.where(mad > 1e-9, mad, np.where(sd > 1e-9, sd, 1.0))
        Z = cls._standardise(T, center, scale)
        cov = LedoitWolf().fit(Z).covariance_
        precision = np.linalg.pinv(cov)
        d = cls._distance(Z, precision)
        threshold = float(np.quantile(d, quantile))
        return cls(center, scale, precision, threshold, float(quantile), int(X.shape[0]))

    @staticmethod
    def _standardise(T: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        Z = (T - center) / scale
        Z[~np.isfinite(Z)] = 0.0  # missing -> training median
        return np.clip(Z, -1e3, 1e3)

    @staticmethod
    def _distance(Z: np.ndarray, precision: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", Z, precision, Z), 0.0))

    def score(self, X: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row from the training data (dimensionless)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.center.size:
            raise InputFormatError(
                f"OOD detector expects {self.center.size} features, got shape {X.shape}", field="features"
            )
        if X.shape[0] == 0:
            return np.zeros(0)
        return self._distance(self._standardise(_transform(X), self.center, self.scale), self.precision)

    def flag(self, X: np.ndarray) -> np.ndarray:
        """True where a row's score exceeds the threshold."""
        return self.score(X) > self.threshold

    def summary(self) -> dict[str, Any]:
        """JSON-able description for the model card."""
        return {
            "method": "mahalanobis (signed log1p, robust standardisation, Ledoit-Wolf)",
            "threshold": round(self.threshold, 4),
            "quantile": self.quantile,
            "n_train": self.n_train,
            "n_features": int(self.center.size),
        }

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``numpy.savez`` (no pickles)."""
        return {prefix + f: np.asarray(getattr(self, f)) for f in self._FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> OODDetector:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            center=np.asarray(arrays[prefix + "center"], dtype=np.float64),
            scale=np.asarray(arrays[prefix + "scale"], dtype=np.float64),
            precision=np.asarray(arrays[prefix + "precision"], dtype=np.float64),
            threshold=float(arrays[prefix + "threshold"]),
            quantile=float(arrays[prefix + "quantile"]),
            n_train=int(arrays[prefix + "n_train"]),
        )


def session_ood(cells: pd.DataFrame, *, max_fraction: float = 0.2, log: bool = True) -> pd.DataFrame:
    """Summarise cell OOD flags per session.

    Parameters
    ----------
    cells
        Rows with ``cohort``, ``animal``, ``session`` (those present), ``ood_score`` and
        ``ood_flag``.
    max_fraction
        A session is flagged when more than this fraction of its cells are.
    log
        Log a warning per flagged session.

    Returns
    -------
    pandas.DataFrame
        Per session: ``n_cells``, ``median_ood_score``, ``frac_ood``, ``ood_flag``.
    """
    keys = [c for c in ("cohort", "animal", "session") if c in cells.columns]
    if not keys:
        keys = ["_all"]
        cells = cells.assign(_all="all")
    g = cells.groupby(keys, sort=True)
    out = pd.DataFrame(
        {
            "n_cells": g.size(),
            "median_ood_score": g["ood_score"].median(),
            "frac_ood": g["ood_flag"].mean(),
        }
    ).reset_index()
    out["ood_flag"] = out["frac_ood"] > max_fraction
    for row in out[out["ood_flag"]].itertuples() if log else ():
        logger.warning(
            "session %s: %.0f%% of cells lie outside the model's training data; check its "
            "labels or fine-tune the model on this lab's data",
            "/".join(str(getattr(row, k)) for k in keys),
            100 * row.frac_ood,
        )
    return out
