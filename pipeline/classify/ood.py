"""Out-of-distribution warnings: how far a cell, and its session, lie from the training data.

Two checks, one score (``ood_score``; a cell is flagged above 1):

- **the cell**: each unit-free model input (:data:`~cellsift.pipeline.classify.inputs.MODEL_FEATURES`)
  is passed through a signed ``log1p`` (taming heavy tails), standardised with the
  training median and robust SD, missing values are set to the training median, and the
  Mahalanobis distance under a Ledoit-Wolf shrunk covariance is divided by a threshold.
  The threshold is a high quantile (default 0.99) of distances of *held-out* training
  sessions (fitted on the other half of the sessions): a training set's own distances
  are optimistic, and a threshold set on them fires on every new session.
- **the session's domain**: the session's frame rate and median cell diameter (px, from
  the median footprint area) against the ranges the model was trained on (widened by
  10 %); outside them every cell of the session scores
  ``1 + |log(value / nearest bound)| / log(1.25)``.

A session is flagged when more than ``max_fraction`` of its cells are.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.inputs import ROBUST_SD_PER_MAD
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["DOMAIN_DESCRIPTORS", "OODDetector", "domain_descriptors", "session_ood"]


#: Session descriptors checked against the training ranges.
DOMAIN_DESCRIPTORS: Final = ("fps", "cell_diameter_px")

#: Training ranges are widened by this factor each way before a session counts as outside.
_RANGE_SLACK: Final = 1.1


def _transform(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.sign(X) * np.log1p(np.abs(X))


def domain_descriptors(table: pd.DataFrame) -> pd.DataFrame:
    """Per row, its session's frame rate (Hz) and median cell diameter (px).

    The diameter is that of a disc of the session's median footprint area
    (``2 * sqrt(median area_px / pi)``). Columns a table lacks are NaN (not checked).
    """
    keys = [c for c in ("cohort", "animal", "session") if c in table.columns]
    out = pd.DataFrame(index=table.index)
    out["fps"] = pd.to_numeric(table["fps"], errors="coerce") if "fps" in table else np.nan
    if "area_px" in table:
        area = pd.to_numeric(table["area_px"], errors="coerce")
        med = (
            area.groupby([table[k].astype(str) for k in keys]).transform("median") if keys else area.median()
        )
        out["cell_diameter_px"] = 2.0 * np.sqrt(np.asarray(med, dtype=np.float64) / np.pi)
    else:
        out["cell_diameter_px"] = np.nan
    return out


def _grouped_halves(n: int, groups: np.ndarray | None) -> np.ndarray:
    """A 0/1 half per row, whole groups (sessions) kept together, deterministic."""
    if groups is None:
        return np.arange(n) % 2
    _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return inverse % 2


@dataclass(frozen=True)
class OODDetector:
    """Mahalanobis-distance novelty detector on standardised features, plus domain ranges.

    Attributes
    ----------
    center, scale
        ``(F,)`` training median and robust SD of the transformed features.
    precision
        ``(F, F)`` inverse of the shrunk covariance of the standardised features.
    threshold
        Distance above which a cell is out of distribution.
    quantile
        Quantile of held-out training distances the threshold was taken at.
    n_train
        Training cells.
    domain_lo, domain_hi
        ``(len(DOMAIN_DESCRIPTORS),)`` training ranges of the session descriptors (NaN:
        not checked).
    """

    center: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    n_train: int
    domain_lo: np.ndarray | None = None
    domain_hi: np.ndarray | None = None

    _FIELDS: ClassVar[tuple[str, ...]] = ("center", "scale", "precision", "threshold", "quantile", "n_train")

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        *,
        quantile: float = 0.99,
        groups: np.ndarray | None = None,
        domain: pd.DataFrame | None = None,
    ) -> OODDetector:
        """Fit on training features ``X`` (``(n, F)``, NaN allowed).

        Parameters
        ----------
        X
            Training inputs.
        quantile
            Quantile of held-out distances taken as the threshold.
        groups
            Session of each row: the threshold comes from distances of one half of the
            sessions to a detector fitted on the other half (and vice versa).
        domain
            :func:`domain_descriptors` of the training rows: their ranges are kept.

        Raises
        ------
        InputFormatError
            Fewer than 3 rows.
        ParameterError
            ``quantile`` outside (0, 1).
        """
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
        center, scale, precision = cls._fit_moments(T)
        half = _grouped_halves(len(T), groups)
        held_out: list[np.ndarray] = []
        for h in (0, 1):
            a, b = T[half != h], T[half == h]
            if len(a) >= 3 and len(b):
                c2, s2, p2 = cls._fit_moments(a)
                held_out.append(cls._distance(cls._standardise(b, c2, s2), p2))
        d = (
            np.concatenate(held_out)
            if held_out
            else cls._distance(cls._standardise(T, center, scale), precision)
        )
        threshold = float(np.quantile(d, quantile))
        lo = hi = None
        if domain is not None:
            v = domain[list(DOMAIN_DESCRIPTORS)].to_numpy(dtype=np.float64)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                lo = np.nanmin(np.where(np.isfinite(v), v, np.nan), axis=0) / _RANGE_SLACK
                hi = np.nanmax(np.where(np.isfinite(v), v, np.nan), axis=0) * _RANGE_SLACK
        return cls(center, scale, precision, threshold, float(quantile), int(X.shape[0]), lo, hi)

    @classmethod
    def _fit_moments(cls, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.covariance import LedoitWolf

        with warnings.catch_warnings():  # a column with no value (e.g. no raw trace) is fine
            warnings.simplefilter("ignore", category=RuntimeWarning)
            center = np.nanmedian(T, axis=0)
            center = np.where(np.isfinite(center), center, 0.0)
            mad = ROBUST_SD_PER_MAD * np.nanmedian(np.abs(T - center), axis=0)
            sd = np.nanstd(T, axis=0)
        scale = np.where(mad > 1e-9, mad, np.where(sd > 1e-9, sd, 1.0))
        scale = np.where(np.isfinite(scale), scale, 1.0)
        Z = cls._standardise(T, center, scale)
        cov = LedoitWolf().fit(Z).covariance_
        return center, scale, np.linalg.pinv(cov)

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

    def domain_score(self, domain: pd.DataFrame) -> np.ndarray:
        """Per row, 0 inside the training ranges, else ``1 + |log(value / bound)| / log(1.25)``."""
        out = np.zeros(len(domain))
        if self.domain_lo is None or self.domain_hi is None or not len(domain):
            return out
        v = domain[list(DOMAIN_DESCRIPTORS)].to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            below = np.log(self.domain_lo / v)
            above = np.log(v / self.domain_hi)
            excess = np.fmax(below, above)
        excess = np.where(np.isfinite(excess) & (excess > 0), excess, 0.0).max(axis=1)
        return np.where(excess > 0, 1.0 + excess / np.log(1.25), 0.0)

    def combined_score(self, X: np.ndarray, domain: pd.DataFrame | None = None) -> np.ndarray:
        """``max(distance / threshold, domain score)``: above 1 is out of distribution."""
        cell = self.score(X) / max(self.threshold, 1e-12)
        if domain is None:
            return cell
        return np.maximum(cell, self.domain_score(domain))

    def flag(self, X: np.ndarray) -> np.ndarray:
        """True where a row's distance exceeds the threshold."""
        return self.score(X) > self.threshold

    def summary(self) -> dict[str, Any]:
        """JSON-able description for the model card."""
        out: dict[str, Any] = {
            "method": "mahalanobis (signed log1p, robust standardisation, Ledoit-Wolf), "
            "threshold from held-out sessions; session domain ranges",
            "threshold": round(self.threshold, 4),
            "quantile": self.quantile,
            "n_train": self.n_train,
            "n_features": int(self.center.size),
            "score": "max(distance / threshold, domain score); flagged above 1",
        }
        if self.domain_lo is not None and self.domain_hi is not None:
            out["domain_ranges"] = {
                name: [round(float(lo), 3), round(float(hi), 3)]
                for name, lo, hi in zip(DOMAIN_DESCRIPTORS, self.domain_lo, self.domain_hi, strict=True)
                if np.isfinite(lo) and np.isfinite(hi)
            }
        return out

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays for ``numpy.savez`` (no pickles)."""
        out = {prefix + f: np.asarray(getattr(self, f)) for f in self._FIELDS}
        if self.domain_lo is not None and self.domain_hi is not None:
            out[prefix + "domain_lo"] = np.asarray(self.domain_lo, dtype=np.float64)
            out[prefix + "domain_hi"] = np.asarray(self.domain_hi, dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> OODDetector:
        """Inverse of :meth:`to_arrays`."""
        files = set(getattr(arrays, "files", arrays))
        has_domain = prefix + "domain_lo" in files
        return cls(
            center=np.asarray(arrays[prefix + "center"], dtype=np.float64),
            scale=np.asarray(arrays[prefix + "scale"], dtype=np.float64),
            precision=np.asarray(arrays[prefix + "precision"], dtype=np.float64),
            threshold=float(arrays[prefix + "threshold"]),
            quantile=float(arrays[prefix + "quantile"]),
            n_train=int(arrays[prefix + "n_train"]),
            domain_lo=np.asarray(arrays[prefix + "domain_lo"], dtype=np.float64) if has_domain else None,
            domain_hi=np.asarray(arrays[prefix + "domain_hi"], dtype=np.float64) if has_domain else None,
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
