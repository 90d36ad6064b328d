"""The review page's back end, without HTTP: queue, overview, cards, labels and retraining.

:class:`ReviewService` holds one lake's cells, their suggestion order and the review
labels in memory and answers the web app's requests with JSON-ready dictionaries. Every
cell or session the browser names is looked up in that memory (:class:`CellIndex`);
nothing the browser sends becomes a path. It is thread-safe: the web server calls it
from its worker threads while the retrain job runs in another.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellsift.catalog import open_lake
from cellsift.pipeline.review.agreement import model_agreement, reviewer_agreement, session_progress
from cellsift.pipeline.review.card import CARD_FEATURES, CardReader
from cellsift.pipeline.review.keys import CellIndex, cell_id, session_id
from cellsift.pipeline.review.labels import LabelStore
from cellsift.pipeline.review.retrain import RetrainJob, RetrainParams
from cellsift.pipeline.review.suggest import SuggestParams, human_labelled, rank_cells

logger = logging.getLogger(__name__)

__all__ = ["ReviewConfig", "ReviewService"]


@dataclass(frozen=True)
class ReviewConfig:
    """A review session.

    Attributes
    ----------
    lake
        The lake folder.
    reviewer
        Name recorded with every label.
    model
        Base model of "Retrain" (default: the model that scored most cells, else ``default``).
    suggest
        Queue order parameters (as ``cellsift review suggest``).
    cache_bytes
        Memory for per-session card arrays.
    """

    lake: Path
    reviewer: str
    model: str | None = None
    suggest: SuggestParams = field(default_factory=SuggestParams)
    cache_bytes: int = 1 << 30


@dataclass
class _State:
    cells: pd.DataFrame
    index: CellIndex
    reader: CardReader
    order: np.ndarray
    why: list[str]
    by_session: dict[str, np.ndarray]


class ReviewService:
    """Answer the review page (see the module docstring).

    Parameters
    ----------
    config
        Lake, reviewer and options.
    """

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self.root = Path(config.lake)
        self.store = LabelStore(self.root)
        self._lock = threading.RLock()
        self._labels = self.store.read_all()
        self._state = self._build()
        base = config.model or self._scoring_model() or "default"
        self.retrain = RetrainJob(self.root, RetrainParams(base=base), on_done=lambda _m: self.reload())

    # -- loading --------------------------------------------------------------
    def _build(self) -> _State:
        lake = open_lake(self.root)
        cells = lake.cells.reset_index(drop=True)
        for col, default in (
            ("p_good", np.nan),
            ("label", None),
            ("reason", None),
            ("ood_flag", False),
            ("model_id", None),
        ):
            if col not in cells:
                cells[col] = default
        human = human_labelled(cells, lake.labels)
        order, why = rank_cells(cells, human, self.config.suggest)
        rest = np.setdiff1d(np.arange(len(cells)), order, assume_unique=False)
        flagged = cells["overlap_flag"].fillna(False).to_numpy(dtype=bool)
        why = [*why, *("labelled" if human[i] else "overlap-flagged" if flagged[i] else "" for i in rest)]
        sids = [
            session_id(c, a, s)
            for c, a, s in zip(cells["cohort"], cells["animal"], cells["session"], strict=True)
        ]
        by_session = {sid: np.flatnonzero(np.asarray(sids) == sid) for sid in dict.fromkeys(sids)}
        return _State(
            cells=cells,
            index=CellIndex(cells),
            reader=CardReader(self.root, lake.sessions, cache_bytes=self.config.cache_bytes),
            order=np.concatenate([order, rest]).astype(np.int64),
            why=why,
            by_session=by_session,
        )

    def reload(self) -> None:
        """Re-read cells (new scores), labels and the queue order from the lake."""
        state = self._build()
        labels = self.store.read_all()
        with self._lock:
            self._state, self._labels = state, labels
        logger.info("review: reloaded %d cells", len(state.cells))

    def _scoring_model(self) -> str | None:
        ids = self._state.cells["model_id"].dropna().astype(str)
        return None if ids.empty else str(ids.value_counts().index[0])

    # -- queue and overview ---------------------------------------------------
    def queue(self) -> dict[str, Any]:
        """Every cell in suggestion order, as columns (the page filters them)."""
        with self._lock:
            st, labels = self._state, self._labels
        c = st.cells.iloc[st.order]
        mine = self._mine(labels)
        cids = [cell_id(*k) for k in zip(c["cohort"], c["animal"], c["session"], c["unit_id"], strict=True)]
        p = pd.to_numeric(c["p_good"], errors="coerce").round(3)
        return {
            "cid": cids,
            "animal": c["animal"].astype(str).tolist(),
            "session": c["session"].astype(str).tolist(),
            "unit_id": c["unit_id"].astype(int).tolist(),
            "p_good": [None if pd.isna(v) else float(v) for v in p],
            "label": [None if pd.isna(v) else str(v) for v in c["label"]],
            "reason": [None if pd.isna(v) else str(v) for v in c["reason"]],
            "ood": c["ood_flag"].fillna(False).astype(bool).tolist(),
            "overlap": c["overlap_flag"].fillna(False).astype(bool).tolist(),
            "why": list(st.why),
            "mine": [mine.get(cid, (None, None))[0] for cid in cids],
            "mine_reason": [mine.get(cid, (None, None))[1] for cid in cids],
        }

    def _mine(self, labels: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
        own = labels[labels["reviewer"] == self.config.reviewer]
        return {
            cell_id(r.cohort, r.animal, r.session, r.unit_id): (
                str(r.label),
                None if pd.isna(r.reason) else str(r.reason),
            )
            for r in own.itertuples(index=False)
        }

    def overview(self) -> dict[str, Any]:
        """Progress per session, agreement (model, reviewers), current model, retrain state."""
        with self._lock:
            st, labels = self._state, self._labels
        models = st.cells["model_id"].dropna().astype(str).value_counts()
        retrain = self.retrain.status()
        return {
            "reviewer": self.config.reviewer,
            "lake": self.root.name,
            "n_cells": int(len(st.cells)),
            "n_labelled": int(len(labels.drop_duplicates(["cohort", "animal", "session", "unit_id"]))),
            "n_mine": int((labels["reviewer"] == self.config.reviewer).sum()),
            "models": {str(k): int(v) for k, v in models.items()},
            "base_model": self.retrain.params.base,
            "sessions": session_progress(st.cells, labels, reviewer=self.config.reviewer),
            "model_agreement": model_agreement(st.cells, labels),
            "reviewer_agreement": reviewer_agreement(labels),
            "retrain": {k: retrain[k] for k in ("state", "model_id", "error")},
            "history": retrain["history"],
        }

    # -- cards ----------------------------------------------------------------
    def field(self, sid: str) -> dict[str, Any]:
        """The whole field of view of a session with every cell's centroid."""
        with self._lock:
            st = self._state
        key = st.index.session(sid)
        rows = st.by_session[session_id(*key)]
        return {"sid": session_id(*key), **st.reader.field(key, st.cells.iloc[rows])}

    def card(self, cid: str) -> dict[str, Any]:
        """Everything the page shows of one cell."""
        with self._lock:
            st, labels = self._state, self._labels
        ref = st.index.cell(cid)
        row = st.cells.iloc[ref.row]
        session_cells = st.cells.iloc[st.by_session[ref.sid]]
        payload = st.reader.card((ref.cohort, ref.animal, ref.session), row, session_cells)
        crop = payload.get("crop", {}).get("size", 32)
        near = session_cells[
            ((session_cells["centroid_y"] - row["centroid_y"]).abs() < crop / 2)
            & ((session_cells["centroid_x"] - row["centroid_x"]).abs() < crop / 2)
            & (session_cells["unit_id"] != ref.unit_id)
        ]
        mine = labels[
            (labels["cohort"] == ref.cohort)
            & (labels["animal"] == ref.animal)
            & (labels["session"] == ref.session)
            & (labels["unit_id"] == ref.unit_id)
        ]
        return {
            "cid": ref.cid,
            "sid": ref.sid,
            "cohort": ref.cohort,
            "animal": ref.animal,
            "session": ref.session,
            "unit_id": ref.unit_id,
            "p_good": _num(row.get("p_good")),
            "label": _str(row.get("label")),
            "reason": _str(row.get("reason")),
            "model_id": _str(row.get("model_id")),
            "ood_flag": bool(row.get("ood_flag")) if not pd.isna(row.get("ood_flag")) else False,
            "ood_score": _num(row.get("ood_score")),
            "overlap_flag": bool(row.get("overlap_flag")) if not pd.isna(row.get("overlap_flag")) else False,
            "overlap_partner": None if pd.isna(row.get("overlap_partner")) else int(row["overlap_partner"]),
            "centroid": [float(row["centroid_y"]), float(row["centroid_x"])],
            "features": {f: _num(row.get(f)) for f in CARD_FEATURES if f in row},
            "why": st.why[int(np.flatnonzero(st.order == ref.row)[0])],
            "neighbours": [
                {
                    "unit_id": int(n.unit_id),
                    "cid": cell_id(n.cohort, n.animal, n.session, n.unit_id),
                    "label": _str(n.label),
                    "p_good": _num(n.p_good),
                }
                for n in near.itertuples(index=False)
            ],
            "labels": [
                {
                    "reviewer": str(r.reviewer),
                    "label": str(r.label),
                    "reason": _str(r.reason),
                    "labelled_at": str(r.labelled_at),
                }
                for r in mine.itertuples(index=False)
            ],
            **payload,
        }

    # -- labels and retraining ------------------------------------------------
    def set_label(self, cid: str, label: str | None, reason: str | None = None) -> dict[str, Any]:
        """Write this reviewer's label of a cell (``label=None`` removes it); return the cell's labels."""
        with self._lock:
            st = self._state
        ref = st.index.cell(cid)
        key = {"cohort": ref.cohort, "animal": ref.animal, "session": ref.session, "unit_id": ref.unit_id}
        if label is None:
            self.store.clear_label(**key, reviewer=self.config.reviewer)
        else:
            self.store.set_label(**key, label=label, reason=reason, reviewer=self.config.reviewer)
        fresh = self.store.read_session(ref.cohort, ref.animal, ref.session)
        with self._lock:
            other = self._labels[
                ~(
                    (self._labels["cohort"] == ref.cohort)
                    & (self._labels["animal"] == ref.animal)
                    & (self._labels["session"] == ref.session)
                )
            ]
            self._labels = pd.concat([other, fresh], ignore_index=True) if len(fresh) else other
            mine = self._mine(self._labels).get(ref.cid, (None, None))
        return {"cid": ref.cid, "mine": mine[0], "mine_reason": mine[1]}

    def start_retrain(self) -> dict[str, Any]:
        """Start a background retrain (see :class:`RetrainJob`); return its status."""
        started = self.retrain.start()
        return {"started": started, **self.retrain.status()}


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(out) else round(out, 4)


def _str(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
