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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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

#: Per-cell columns a card shows besides the quality features.
_ROW_COLUMNS: Final = (
    "p_good",
    "label",
    "reason",
    "model_id",
    "ood_flag",
    "ood_score",
    "overlap_flag",
    "overlap_partner",
)


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
    read_ahead
        Cells after the one shown whose sessions are loaded in the background.
    """

    lake: Path
    reviewer: str
    model: str | None = None
    suggest: SuggestParams = field(default_factory=SuggestParams)
    cache_bytes: int = 1 << 30
    read_ahead: int = 12


@dataclass
class _State:
    cells: pd.DataFrame
    index: CellIndex
    reader: CardReader
    order: np.ndarray  # rows of ``cells`` in queue order
    position: np.ndarray  # each row's place in the queue
    why: list[str]  # per queue position
    sessions: dict[str, dict[str, np.ndarray]]  # per session id: its rows, unit ids, centroids
    keys: list[tuple[str, str, str]]  # per session code
    session_code: np.ndarray  # per row: index into ``keys``
    columns: dict[str, np.ndarray]  # the columns a card shows, one array each
    queue: dict[str, list[Any]]  # the queue's columns that labelling does not change


def _labels_by_cell(labels: pd.DataFrame) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Review labels per session id and unit id, as the card lists them."""
    out: dict[str, dict[int, list[dict[str, Any]]]] = {}
    cols = ["cohort", "animal", "session", "unit_id", "reviewer", "label", "reason", "labelled_at"]
    for c, a, s, u, reviewer, label, reason, at in labels[cols].itertuples(index=False, name=None):
        entry = {
            "reviewer": str(reviewer),
            "label": str(label),
            "reason": _str(reason),
            "labelled_at": str(at),
        }
        out.setdefault(session_id(c, a, s), {}).setdefault(int(u), []).append(entry)
    return out


class ReviewService:
    """Answer the review page (see the module docstring).

    The queue order, the card columns and each session's cells are computed once (and
    again after a retrain re-scores the lake, :meth:`reload`); a label updates only
    the labels of its session. Card images come from :class:`CardReader`'s per-session
    cache, which reads ahead the sessions of the next ``config.read_ahead`` cells of the
    queue while the reviewer looks at a card.

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
        self._cell_labels = _labels_by_cell(self._labels)
        self._state = self._build()
        self._read_ahead(self._state, -1)
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
        order = np.concatenate([order, rest]).astype(np.int64)
        position = np.empty(len(cells), dtype=np.int64)
        position[order] = np.arange(len(order))
        columns = {
            c: cells[c].to_numpy()
            for c in (*_ROW_COLUMNS, *CARD_FEATURES)
            if c in cells  # strings as objects, missing values as None/NaN/NA
        }
        columns["unit_id"] = cells["unit_id"].to_numpy(dtype=np.int64)
        for c in ("centroid_y", "centroid_x"):
            columns[c] = cells[c].to_numpy(dtype=np.float64, na_value=np.nan)
        frame = cells[["cohort", "animal", "session"]].astype(str)
        code, uniques = pd.MultiIndex.from_frame(frame).factorize()
        keys = [(str(c), str(a), str(s)) for c, a, s in uniques]
        sessions: dict[str, dict[str, np.ndarray]] = {}
        counts = np.bincount(code, minlength=len(keys))
        groups = np.split(np.argsort(code, kind="stable"), np.cumsum(counts)[:-1]) if keys else []
        for key, rows in zip(keys, groups, strict=True):
            sessions[session_id(*key)] = {
                "rows": rows,
                **{c: columns[c][rows] for c in ("unit_id", "centroid_y", "centroid_x")},
            }
        return _State(
            cells=cells,
            index=CellIndex(cells),
            reader=CardReader(self.root, lake.sessions, cache_bytes=self.config.cache_bytes),
            order=order,
            position=position,
            why=why,
            sessions=sessions,
            keys=keys,
            session_code=np.asarray(code, dtype=np.int64),
            columns=columns,
            queue=_queue_columns(cells.iloc[order], why),
        )

    def reload(self) -> None:
        """Re-read cells (new scores), labels and the queue order from the lake."""
        state = self._build()
        state.reader.adopt(self._state.reader)  # images and clips are unchanged by a re-score
        labels = self.store.read_all()
        with self._lock:
            self._state, self._labels = state, labels
            self._cell_labels = _labels_by_cell(labels)
        self._read_ahead(state, -1)
        logger.info("review: reloaded %d cells", len(state.cells))

    def _read_ahead(self, st: _State, row: int, ahead: Sequence[str] | None = None) -> None:
        """Load, in the background, the sessions of the cells ``ahead``, else of those after ``row``
        in the queue (-1: the first)."""
        n = self.config.read_ahead
        if ahead is not None:
            found = (st.index.find(cid) for cid in ahead)
            rows = np.asarray([ref.row for ref in found if ref is not None][:n], dtype=np.int64)
        else:
            start = 0 if row < 0 else int(st.position[row]) + 1
            rows = st.order[start : start + n]
        st.reader.warm(st.keys[c] for c in st.session_code[rows])

    def _scoring_model(self) -> str | None:
        ids = self._state.cells["model_id"].dropna().astype(str)
        return None if ids.empty else str(ids.value_counts().index[0])

    # -- queue and overview ---------------------------------------------------
    def queue(self) -> dict[str, Any]:
        """Every cell in suggestion order, as columns (the page filters them)."""
        with self._lock:
            st, labels = self._state, self._labels
        mine = self._mine(labels)
        cids = st.queue["cid"]
        return {
            **st.queue,
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
        sid = session_id(*key)
        return {"sid": sid, **st.reader.field(key, st.sessions[sid])}

    def card(self, cid: str, ahead: Sequence[str] | None = None) -> dict[str, Any]:
        """Everything the page shows of one cell.

        Parameters
        ----------
        cid
            The cell (``cohort:animal:session:unit_id``).
        ahead
            The cells the page shows next (its filtered view); their sessions are read
            ahead in the background. Default: the cells after this one in the queue.
            Names that are no cell of the lake are ignored.
        """
        with self._lock:
            st, cell_labels = self._state, self._cell_labels
        ref = st.index.cell(cid)
        row = {c: values[ref.row] for c, values in st.columns.items()}
        here = st.sessions[ref.sid]
        payload = st.reader.card((ref.cohort, ref.animal, ref.session), row, here)
        self._read_ahead(st, ref.row, ahead)
        half = payload.get("crop", {}).get("size", 32) / 2
        near = here["rows"][
            (np.abs(here["centroid_y"] - row["centroid_y"]) < half)
            & (np.abs(here["centroid_x"] - row["centroid_x"]) < half)
            & (here["unit_id"] != ref.unit_id)
        ]
        cols = st.columns
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
            "ood_flag": _flag(row.get("ood_flag")),
            "ood_score": _num(row.get("ood_score")),
            "overlap_flag": _flag(row.get("overlap_flag")),
            "overlap_partner": None if pd.isna(row.get("overlap_partner")) else int(row["overlap_partner"]),
            "centroid": [float(row["centroid_y"]), float(row["centroid_x"])],
            "features": {f: _num(row[f]) for f in CARD_FEATURES if f in row},
            "why": st.why[int(st.position[ref.row])],
            "neighbours": [
                {
                    "unit_id": int(cols["unit_id"][r]),
                    "cid": cell_id(ref.cohort, ref.animal, ref.session, int(cols["unit_id"][r])),
                    "label": _str(cols["label"][r]),
                    "p_good": _num(cols["p_good"][r]),
                }
                for r in near
            ],
            "labels": list(cell_labels.get(ref.sid, {}).get(ref.unit_id, [])),
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
            self._cell_labels = {**self._cell_labels, ref.sid: _labels_by_cell(fresh).get(ref.sid, {})}
            mine = self._mine(fresh).get(ref.cid, (None, None))
        return {"cid": ref.cid, "mine": mine[0], "mine_reason": mine[1]}

    def start_retrain(self) -> dict[str, Any]:
        """Start a background retrain (see :class:`RetrainJob`); return its status."""
        started = self.retrain.start()
        return {"started": started, **self.retrain.status()}


def _queue_columns(c: pd.DataFrame, why: list[str]) -> dict[str, list[Any]]:
    """The queue's columns (cells ``c`` in queue order) that a label does not change."""
    p = pd.to_numeric(c["p_good"], errors="coerce").round(3)
    return {
        "cid": [cell_id(*k) for k in zip(c["cohort"], c["animal"], c["session"], c["unit_id"], strict=True)],
        "animal": c["animal"].astype(str).tolist(),
        "session": c["session"].astype(str).tolist(),
        "unit_id": c["unit_id"].astype(int).tolist(),
        "p_good": [None if pd.isna(v) else float(v) for v in p],
        "label": [None if pd.isna(v) else str(v) for v in c["label"]],
        "reason": [None if pd.isna(v) else str(v) for v in c["reason"]],
        "ood": c["ood_flag"].fillna(False).astype(bool).tolist(),
        "overlap": c["overlap_flag"].fillna(False).astype(bool).tolist(),
        "why": list(why),
    }


def _flag(value: Any) -> bool:
    return False if value is None or pd.isna(value) else bool(value)


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(out) else round(out, 4)


def _str(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
