"""Calibration of the ensemble: base models' log-odds to a calibrated ``p_good``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

__all__ = ["Calibrator", "logit", "sigmoid"]

_EPS: Final = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of ``p`` (clipped to ``[1e-6, 1 - 1e-6]``)."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`logit`."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass(frozen=True)
class Calibrator:
    """Maps the base models' log-odds to a calibrated ``p_good``.

    Attributes
    ----------
    method
        ``"platt"``: ``p = sigmoid(intercept + coef . [logit_f, logit_c])``.
        ``"isotonic"``: ``p = interp(mean(logit_f, logit_c), x, y)``.
    coef, intercept
        Platt parameters (``coef`` has 2 entries).
    x, y
        Isotonic knots.
    """

    method: str
    coef: np.ndarray
    intercept: float
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def fit(cls, lf: np.ndarray, lc: np.ndarray, y: np.ndarray, *, method: str) -> Calibrator:
        """Fit on out-of-fold log-odds ``lf`` (features), ``lc`` (clips) and labels ``y``."""
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            X = np.column_stack([lf, lc])
            lr = LogisticRegression(C=1.0).fit(X, y)
            return cls(
                "platt",
                lr.coef_.ravel().astype(np.float64),
                float(lr.intercept_[0]),
                np.zeros(0),
                np.zeros(0),
            )
        from sklearn.isotonic import IsotonicRegression

        z = (lf + lc) / 2
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.001, y_max=0.999).fit(z, y)
        return cls(
            "isotonic",
            np.zeros(2),
            0.0,
            np.asarray(iso.X_thresholds_, dtype=np.float64),
            np.asarray(iso.y_thresholds_, dtype=np.float64),
        )

    def __call__(self, lf: np.ndarray, lc: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            return sigmoid(self.intercept + self.coef[0] * lf + self.coef[1] * lc)
        return np.interp((lf + lc) / 2, self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for the model card."""
        if self.method == "platt":
            return {
                "method": "platt",
                "coef_features": float(self.coef[0]),
                "coef_clips": float(self.coef[1]),
                "intercept": self.intercept,
            }
        return {"method": "isotonic", "n_knots": int(self.x.size)}
