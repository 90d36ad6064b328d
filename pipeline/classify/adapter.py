"""Fine-tuning on a lab's few labels: a small, regularised correction of a trained model's log-odds.

A lab labels tens to a few hundred of its cells (``cellsift review suggest`` picks them).
Re-training a model on so few cells throws away what it learnt from thousands; the
adapter keeps the trained model and learns only how this lab's cells differ:

``logit p_new = (1 + a) * logit p_base + b + beta . z(x)``

where ``x`` are the unit-free model inputs (:data:`~cellsift.pipeline.classify.inputs.MODEL_FEATURES`,
standardised on the labelled cells, missing values 0) and ``a``, ``beta`` carry an L2
penalty (``b`` does not): with no evidence the adapter is the identity. Fitted by
L-BFGS on class-balanced log-loss, so ``p_new >= 0.5`` is the balanced decision on the
lab's labels. Fits in well under a second for hundreds of labels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from cellsift.pipeline.classify.calibration import logit
from cellsift.schemas import InputFormatError, ParameterError

__all__ = ["ADAPTER_MAX_LABELS", "LabelAdapter"]

#: Up to this many labels, fine-tuning fits an adapter; with more, the model is re-trained.
ADAPTER_MAX_LABELS: Final = 500


@dataclass(frozen=True)
class LabelAdapter:
    """A fitted correction of a model's log-odds (see the module docstring).

    Attributes
    ----------
    columns
        Model inputs the correction reads.
    center, scale
        ``(F,)`` standardisation of those inputs (on the labelled cells).
    slope
        ``a``: the change of the base log-odds' weight.
    coef
        ``(F,)`` ``beta``.
    intercept
        ``b``.
    n_labels
        Labelled cells it was fitted on.
    l2
        Penalty weight it was fitted with.
    """

    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    slope: float
    coef: np.ndarray
    intercept: float
    n_labels: int
    l2: float

    @classmethod
    def fit(
        cls,
        p_base: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        *,
        columns: tuple[str, ...],
        l2: float = 2.0,
    ) -> LabelAdapter:
        """Fit on the base model's ``p_good``, the inputs ``X`` ``(n, F)`` and labels ``y`` (0/1).

        Raises
        ------
        InputFormatError
            Fewer than 2 labels of either class.
        ParameterError
            ``l2 <= 0`` or shapes that do not match.
        """
        from scipy.optimize import minimize

        y = np.asarray(y, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if l2 <= 0:
            raise ParameterError(f"l2 must be > 0, got {l2}", field="l2")
        if X.ndim != 2 or X.shape != (len(y), len(columns)) or len(p_base) != len(y):
            raise ParameterError(f"inputs of shape {X.shape} for {len(y)} labels", field="X")
        n_good, n_bad = int((y == 1).sum()), int((y == 0).sum())
        if min(n_good, n_bad) < 2:
            raise InputFormatError(
                f"fine-tuning needs at least 2 good and 2 bad labels, got {n_good} good and {n_bad} bad",
                field="label",
                fix="label a few cells of each kind (cellsift review suggest picks informative ones)",
            )
        with warnings.catch_warnings():  # a column with no value (e.g. no raw trace) is fine
            warnings.simplefilter("ignore", category=RuntimeWarning)
            center = np.nanmedian(X, axis=0)
            scale = np.nanstd(X, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
        Z = np.nan_to_num((X - center) / scale, nan=0.0, posinf=0.0, neginf=0.0)
        Z = np.clip(Z, -5.0, 5.0)
        base = logit(p_base)
        w = np.where(y == 1, 0.5 / n_good, 0.5 / n_bad) * len(y)
        n, f = Z.shape

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b, beta = theta[0], theta[1], theta[2:]
            z = (1 + a) * base + b + Z @ beta
            p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
            value = float(np.sum(w * (np.logaddexp(0, z) - y * z)) + l2 * (a * a + beta @ beta))
            r = w * (p - y)
            grad = np.concatenate([[r @ base + 2 * l2 * a, r.sum()], Z.T @ r + 2 * l2 * beta])
            return value, grad

        res = minimize(loss, np.zeros(2 + f), jac=True, method="L-BFGS-B")
        theta = res.x
        return cls(
            columns=tuple(columns),
            center=center,
            scale=scale,
            slope=float(theta[0]),
            coef=np.asarray(theta[2:], dtype=np.float64),
            intercept=float(theta[1]),
            n_labels=int(n),
            l2=float(l2),
        )

    def apply(self, p_base: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The corrected ``p_good`` of cells with base ``p_good`` and inputs ``X``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.columns):
            raise InputFormatError(
                f"adapter expects {len(self.columns)} inputs, got shape {X.shape}", field="X"
            )
        Z = np.clip(np.nan_to_num((X - self.center) / self.scale, nan=0.0, posinf=0.0, neginf=0.0), -5.0, 5.0)
        z = (1 + self.slope) * logit(p_base) + self.intercept + Z @ self.coef
        return 1 / (1 + np.exp(-np.clip(z, -30, 30)))

    def summary(self) -> dict[str, Any]:
        """JSON-able description for the model card."""
        top = np.argsort(-np.abs(self.coef))[:5]
        return {
            "method": "log-odds correction (L2, class-balanced) on the lab's labels",
            "n_labels": self.n_labels,
            "l2": self.l2,
            "slope": round(self.slope, 4),
            "intercept": round(self.intercept, 4),
            "largest_terms": {self.columns[i]: round(float(self.coef[i]), 4) for i in top},
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``numpy.savez`` (no pickles)."""
        return {
            "columns": np.asarray(self.columns),
            "center": self.center,
            "scale": self.scale,
            "slope": np.asarray(self.slope),
            "coef": self.coef,
            "intercept": np.asarray(self.intercept),
            "n_labels": np.asarray(self.n_labels),
            "l2": np.asarray(self.l2),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> LabelAdapter:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            columns=tuple(str(c) for c in arrays["columns"]),
            center=np.asarray(arrays["center"], dtype=np.float64),
            scale=np.asarray(arrays["scale"], dtype=np.float64),
            slope=float(arrays["slope"]),
            coef=np.asarray(arrays["coef"], dtype=np.float64),
            intercept=float(arrays["intercept"]),
            n_labels=int(arrays["n_labels"]),
            l2=float(arrays["l2"]),
        )
