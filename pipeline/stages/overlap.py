"""Pairwise footprint overlap from sparse binary masks, and neighbour trace correlation.

The intersection counts of all pairs come from one sparse product ``M @ M.T`` of the
``(K, H*W)`` boolean masks: its non-zeros are exactly the touching pairs, so the work
and memory scale with the number of touching pairs, never with ``K**2 * H * W``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.stages.footprints import binarize
from cellsift.schemas import InputFormatError, ParameterError, SchemaError

logger = logging.getLogger(__name__)

__all__ = ["OverlapParams", "OverlapResult", "compute_overlap", "neighbour_trace_corr"]


@dataclass(frozen=True)
class OverlapParams:
    """Parameters of :func:`compute_overlap`.

    Attributes
    ----------
    rel_threshold
        Binarisation level (fraction of each unit's max weight) used when
        :func:`compute_overlap` is given weighted footprints instead of masks.
    flag_above
        A unit is flagged when its largest overlap fraction is strictly above this.
    """

    rel_threshold: float = 0.2
    flag_above: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rel_threshold", "flag_above"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ParameterError(f"{name} must be in [0, 1], got {value}", field=name)


@dataclass(frozen=True)
class OverlapResult:
    """Overlap of every unit with its touching neighbours.

    Attributes
    ----------
    max_overlap_frac
        ``(K,)`` float64, largest ``|i & j| / min(|i|, |j|)`` over touching units j;
        0 if none.
    partner_index
        ``(K,)`` int64, row index of the unit giving that maximum (ties: lowest index);
        -1 if none.
    n_neighbours
        ``(K,)`` int64, units sharing at least one mask pixel.
    flagged
        ``(K,)`` bool, ``max_overlap_frac > flag_above``; both units of a pair are flagged.
    pairs
        ``(P, 3)`` float64 rows ``[i, j, frac]`` for every touching pair with ``i < j``,
        sorted by ``(i, j)``.
    """

    max_overlap_frac: np.ndarray
    partner_index: np.ndarray
    n_neighbours: np.ndarray
    flagged: np.ndarray
    pairs: np.ndarray


def compute_overlap(masks: sp.spmatrix, *, params: OverlapParams = OverlapParams()) -> OverlapResult:
    """Pairwise overlap fractions of footprint masks.

    Parameters
    ----------
    masks
        ``(K, H*W)`` boolean CSR masks (from :func:`~cellsift.pipeline.stages.footprints.binarize`).
        A non-boolean (weighted) matrix is binarised with ``params.rel_threshold`` first.
    params
        Overlap parameters.

    Returns
    -------
    OverlapResult
    """
    if not sp.issparse(masks) or masks.ndim != 2:
        raise InputFormatError(
            f"masks must be a 2-D scipy.sparse matrix, got {type(masks).__name__}",
            field="A",
            fix="binarize sparse footprints with footprints.binarize",
        )
    if masks.dtype != np.bool_:
        masks = binarize(masks, rel_threshold=params.rel_threshold)
    M = sp.csr_matrix(masks, dtype=np.int32)
    M.eliminate_zeros()
    M.data[:] = 1
    k = M.shape[0]
    area = np.diff(M.indptr).astype(np.int64)
    inter = sp.triu(M @ M.T, k=1, format="coo")
    keep = inter.data > 0
    i = inter.row[keep].astype(np.int64)
    j = inter.col[keep].astype(np.int64)
    n_inter = inter.data[keep].astype(np.float64)
    denom = np.minimum(area[i], area[j]).astype(np.float64)
    frac = np.divide(n_inter, denom, out=np.zeros_like(n_inter), where=denom > 0)
    order = np.lexsort((j, i))
    i, j, frac = i[order], j[order], frac[order]
    pairs = np.column_stack([i, j, frac]).astype(np.float64) if i.size else np.zeros((0, 3))

    # Per unit: both directions, best partner = highest frac, ties -> lowest index.
    a = np.concatenate([i, j])
    b = np.concatenate([j, i])
    f = np.concatenate([frac, frac])
    n_neighbours = np.bincount(a, minlength=k).astype(np.int64)
    max_frac = np.zeros(k, dtype=np.float64)
    partner = np.full(k, -1, dtype=np.int64)
    if a.size:
        o = np.lexsort((b, -f, a))
        a_s, b_s, f_s = a[o], b[o], f[o]
        first = np.ones(a_s.size, dtype=bool)
        first[1:] = a_s[1:] != a_s[:-1]
        max_frac[a_s[first]] = f_s[first]
        partner[a_s[first]] = b_s[first]
    flagged = max_frac > params.flag_above
    logger.debug("overlap: %d units, %d touching pairs, %d flagged", k, pairs.shape[0], int(flagged.sum()))
    return OverlapResult(
        max_overlap_frac=max_frac,
        partner_index=partner,
        n_neighbours=n_neighbours,
        flagged=flagged,
        pairs=pairs,
    )


def neighbour_trace_corr(C_raw: np.ndarray, pairs: np.ndarray, *, batch_pairs: int = 256) -> np.ndarray:
    """Largest Pearson correlation of each unit's trace with any touching unit's trace.

    Parameters
    ----------
    C_raw
        Noisy traces ``(K, frame)``.
    pairs
        ``(P, 3)`` rows ``[i, j, frac]`` (``OverlapResult.pairs``); only ``i, j`` are used.
    batch_pairs
        Pairs correlated per step (memory ``~2 * batch_pairs * frame * 8`` bytes).

    Returns
    -------
    numpy.ndarray
        ``(K,)`` float64 in ``[-1, 1]``; 0 for units without neighbours. A constant
        trace correlates 0 with anything.
    """
    C = np.asarray(C_raw)
    if C.ndim != 2:
        raise InputFormatError(f"C_raw must be 2-D (unit_id, frame), got shape {C.shape}", field="C_raw")
    k, t = C.shape
    pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 3) if np.size(pairs) else np.zeros((0, 3))
    out = np.zeros(k, dtype=np.float64)
    if pairs.shape[0] == 0 or t < 2:
        return out
    i = pairs[:, 0].astype(np.int64)
    j = pairs[:, 1].astype(np.int64)
    if i.min() < 0 or max(i.max(), j.max()) >= k:
        raise SchemaError(
            f"pairs reference unit indices outside 0..{k - 1}",
            field="pairs",
            fix="compute overlap and traces for the same units",
        )
    involved = np.unique(np.concatenate([i, j]))
    # Unit-norm, zero-mean rows for the units that have neighbours only.
    X = C[involved].astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise InputFormatError(
            "traces contain NaN or Inf", field="C_raw", fix="re-run ingest; traces must be finite"
        )
    X -= X.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("kt,kt->k", X, X))
    Z = np.divide(X, norm[:, None], out=np.zeros_like(X), where=norm[:, None] > 0)
    del X
    zi = np.searchsorted(involved, i)
    zj = np.searchsorted(involved, j)
    corr = np.empty(i.size, dtype=np.float64)
    for s in range(0, i.size, batch_pairs):
        e = s + batch_pairs
        corr[s:e] = np.einsum("pt,pt->p", Z[zi[s:e]], Z[zj[s:e]])
    corr = np.clip(corr, -1.0, 1.0)
    best = np.full(k, -np.inf)
    np.maximum.at(best, i, corr)
    np.maximum.at(best, j, corr)
    has = np.isfinite(best)
    out[has] = best[has]
    return out
