"""Which cells to label next: uncertainty plus diversity across animals, sessions and features.

:func:`rank_cells` orders candidate cells greedily. Each pick takes the cell with the
highest score

``score = w_u * uncertainty + w_ood * ood_flag + w_d * sum_G clip((share_G - frac_G) / share_G, -1, 1) / 3``

where ``uncertainty = 1 - |2 p_good - 1|`` (1 for a cell the model has not scored),
and for each grouping ``G`` (animal, session, feature-space cluster) ``share_G`` is the
group's share of all cells and ``frac_G`` its share of the cells labelled or picked so
far. Over-sampled groups lose, unseen ones win, so the first picks spread over every
animal, session and kind of cell while the uncertain cells still come first within
them. Feature-space clusters are k-means (k-means++ start, seeded) over robustly
standardised model inputs. After ``greedy_limit`` picks the rest follow by
``uncertainty + ood`` only (the greedy step costs one pass over the candidates).

Cells with a label from a person (any ``source`` but the simulator's ground truth) are
not candidates; overlap-flagged cells only with ``include_overlap``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify import MODEL_FEATURES
from cellsift.schemas import ParameterError

__all__ = [
    "GROUND_TRUTH_SOURCES",
    "QUEUE_COLUMNS",
    "SuggestParams",
    "human_labelled",
    "rank_cells",
    "suggest",
]

#: Label sources that are a simulation's truth, not a person's call (do not remove a cell from the queue).
GROUND_TRUTH_SOURCES: Final = ("simulator",)
#: Columns of a suggestion queue (``cellsift review suggest --output``).
QUEUE_COLUMNS: Final = ("cohort", "animal", "session", "unit_id", "p_good", "why")


@dataclass(frozen=True)
class SuggestParams:
    """How :func:`rank_cells` weighs uncertainty and diversity.

    Attributes
    ----------
    include_overlap
        Also suggest overlap-flagged cells.
    uncertainty_weight, diversity_weight, ood_weight
        Weights of the score's terms (see the module docstring).
    n_clusters
        Feature-space clusters (at most one per candidate).
    greedy_limit
        Picks made greedily; later cells follow by uncertainty alone.
    seed
        Seed of the k-means start.
    """

    include_overlap: bool = False
    uncertainty_weight: float = 1.0
    diversity_weight: float = 2.0
    ood_weight: float = 0.25
    n_clusters: int = 12
    greedy_limit: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_clusters < 1 or self.greedy_limit < 0:
            raise ParameterError("n_clusters must be >= 1 and greedy_limit >= 0", field="SuggestParams")


def human_labelled(cells: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Boolean per row of ``cells``: has a label from a person (not :data:`GROUND_TRUTH_SOURCES`)."""
    if len(labels) == 0 or len(cells) == 0:
        return np.zeros(len(cells), dtype=bool)
    human = labels[~labels["source"].astype(str).isin(GROUND_TRUTH_SOURCES)]
    keys = ["cohort", "animal", "session", "unit_id"]
    marks = human[keys].drop_duplicates().assign(_hit=True)
    joined = cells[keys].merge(marks, on=keys, how="left")
    return joined["_hit"].fillna(False).to_numpy(dtype=bool)


def _kmeans(x: np.ndarray, k: int, seed: int, iters: int = 15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(x)
    k = max(1, min(k, n))
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        pick = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centres.append(x[pick])
        d2 = np.minimum(d2, ((x - x[pick]) ** 2).sum(axis=1))
    c = np.asarray(centres)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
        assign = dist.argmin(axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return assign


def _feature_clusters(cells: pd.DataFrame, params: SuggestParams) -> np.ndarray:
    """k-means clusters of the cells table's model inputs (the derived, session-relative ones left out)."""
    cols = [c for c in MODEL_FEATURES if c in cells.columns]
    if not cols or len(cells) == 0:
        return np.zeros(len(cells), dtype=np.int64)
    x = cells[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # an all-missing column is fine
        warnings.simplefilter("ignore", category=RuntimeWarning)
        med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
        z = (x - med) / np.where(iqr > 0, iqr / 1.349, 1.0)
    z = np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -5, 5)
    return _kmeans(z, params.n_clusters, params.seed)


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values.astype(str))
    return codes.astype(np.int64), len(uniques)


def rank_cells(
    cells: pd.DataFrame, labelled: np.ndarray, params: SuggestParams = SuggestParams()
) -> tuple[np.ndarray, list[str]]:
    """Order the candidate cells of ``cells`` for labelling.

    Parameters
    ----------
    cells
        The cells table (``cohort, animal, session, unit_id``, features; ``p_good`` and
        ``ood_flag`` when classified, ``overlap_flag``).
    labelled
        Boolean per row: already labelled by a person (not a candidate, but counts
        towards its groups' coverage).
    params
        Weights and limits.

    Returns
    -------
    order, why
        Row positions of the candidates, best first, and for each a short reason.
    """
    n = len(cells)
    labelled = np.asarray(labelled, dtype=bool)
    p = pd.to_numeric(cells.get("p_good", pd.Series(np.nan, index=cells.index)), errors="coerce").to_numpy()
    unc = np.where(np.isfinite(p), 1.0 - np.abs(2.0 * np.nan_to_num(p, nan=0.5) - 1.0), 1.0)
    ood = cells.get("ood_flag", pd.Series(False, index=cells.index)).fillna(False).to_numpy(dtype=bool)
    flagged = (
        cells.get("overlap_flag", pd.Series(False, index=cells.index)).fillna(False).to_numpy(dtype=bool)
    )
    candidate = ~labelled & (params.include_overlap | ~flagged)
    groups = [
        ("animal", *_codes(cells["cohort"].astype(str) + ":" + cells["animal"].astype(str))),
        (
            "session",
            *_codes(
                cells["cohort"].astype(str)
                + ":"
                + cells["animal"].astype(str)
                + ":"
                + cells["session"].astype(str)
            ),
        ),
        ("feature region", _feature_clusters(cells, params), params.n_clusters),
    ]
    base = params.uncertainty_weight * unc + params.ood_weight * ood
    shares = [np.bincount(codes, minlength=k) / max(n, 1) for _, codes, k in groups]
    counts = [np.bincount(codes[labelled], minlength=k).astype(np.float64) for _, codes, k in groups]
    total = float(labelled.sum())
    cand = np.flatnonzero(candidate)
    order: list[int] = []
    why: list[str] = []
    alive = np.ones(len(cand), dtype=bool)
    for _ in range(min(params.greedy_limit, len(cand))):
        div = np.zeros(len(cand))
        for (_, codes, _k), share, count in zip(groups, shares, counts, strict=True):
            frac = count / total if total > 0 else np.zeros_like(count)
            term = np.clip((share - frac) / np.maximum(share, 1e-12), -1.0, 1.0)
            div += term[codes[cand]]
        score = np.where(alive, base[cand] + params.diversity_weight * div / len(groups), -np.inf)
        j = int(np.argmax(score))
        i = int(cand[j])
        why.append(
            _why(
                p[i],
                bool(ood[i]),
                [
                    (name, count[codes[i]] == 0)
                    for (name, codes, _k), count in zip(groups, counts, strict=True)
                ],
            )
        )
        order.append(i)
        alive[j] = False
        for (_, codes, _k), count in zip(groups, counts, strict=True):
            count[codes[i]] += 1
        total += 1
    rest = cand[alive]
    rest = rest[np.argsort(-base[rest], kind="stable")]
    order.extend(int(i) for i in rest)
    why.extend(_why(p[i], bool(ood[i]), []) for i in rest)
    return np.asarray(order, dtype=np.int64), why


def _why(p: float, ood: bool, firsts: list[tuple[str, bool]]) -> str:
    parts = (
        [f"uncertain (p_good {p:.2f})" if abs(p - 0.5) < 0.25 else f"p_good {p:.2f}"]
        if np.isfinite(p)
        else ["not scored"]
    )
    if ood:
        parts.append("out of the training data")
    new = [name for name, first in firsts if first]
    if new:
        parts.append("first of its " + "/".join(new))
    return "; ".join(parts)


def suggest(
    cells: pd.DataFrame, labels: pd.DataFrame, *, n: int, params: SuggestParams = SuggestParams()
) -> pd.DataFrame:
    """The ``n`` cells whose labels would help the model most.

    Parameters
    ----------
    cells
        The lake's cells table.
    labels
        The lake's labels table (cells a person labelled are left out).
    n
        How many cells (fewer if fewer are candidates).
    params
        Weights and limits.

    Returns
    -------
    pandas.DataFrame
        :data:`QUEUE_COLUMNS`, best first.
    """
    if n < 1:
        raise ParameterError(f"n must be >= 1, got {n}", field="--n", fix="ask for at least one cell")
    cells = cells.reset_index(drop=True)
    limited = SuggestParams(**{**params.__dict__, "greedy_limit": min(params.greedy_limit, n)})
    order, why = rank_cells(cells, human_labelled(cells, labels), limited)
    out = cells.iloc[order[:n]][list(QUEUE_COLUMNS[:4])].copy()
    out["p_good"] = (
        pd.to_numeric(cells["p_good"], errors="coerce").iloc[order[:n]].round(4).to_numpy()
        if "p_good" in cells
        else np.nan
    )
    out["why"] = why[:n]
    return out.reset_index(drop=True)


def suggest_on_lake(
    lake: str | Path, *, n: int, model: str | None = None, params: SuggestParams = SuggestParams()
) -> pd.DataFrame:
    """:func:`suggest` on a lake, with ``model``'s probabilities.

    Parameters
    ----------
    lake
        The lake folder.
    n
        How many cells.
    model
        Model whose uncertainty counts (``default``, a registered id or a folder); cells it
        did not score are scored in memory (nothing is written). ``None``: the ``p_good``
        stored in the ``cells`` table.
    params
        Weights and limits.
    """
    from cellsift.catalog import open_lake
    from cellsift.pipeline.classify import ModelCard, classify_lake, resolve_model

    lk = open_lake(lake)
    cells = lk.cells
    if model is not None:
        card_id = ModelCard.read(resolve_model(model, lake=lk.root)).model_id
        stored = cells.get("model_id", pd.Series(dtype=object)).astype(str)
        if not (stored == card_id).all():
            scored = classify_lake(lk.root, model, client=None, write=False)
            keys = ["cohort", "animal", "session", "unit_id"]
            new = scored[[*keys, "p_good", "ood_flag"]]
            cells = cells.drop(columns=["p_good", "ood_flag"], errors="ignore").merge(
                new, on=keys, how="left"
            )
    return suggest(cells, lk.labels, n=n, params=params)
