"""Review in the browser: the active-learning queue, cell cards, review labels and retraining.

The layer above classification and analysis and below the command line:

* ``keys`` (:class:`CellIndex`: the page's cell and session names, looked up, never paths);
* ``suggest`` (:func:`suggest`, :func:`rank_cells`: uncertainty plus diversity across
  animals, sessions and feature space; ``cellsift review suggest``);
* ``labels`` (:class:`LabelStore`: review labels in the lake's ``labels`` table,
  ``source = "review"``, one atomic file per session, locked across processes);
* ``agreement`` (reviewers with each other and with the model; progress per session);
* ``card`` (:class:`CardReader`: footprint crops, images, clips, trace, transients,
  events, with a per-session cache that reads the queue's next sessions ahead);
* ``retrain`` (:class:`RetrainJob`: fine-tune on review labels in the background,
  register, re-score);
* ``service`` (:class:`ReviewService`: what the web app in :mod:`cellsift.cli.web` calls).
"""

from cellsift.pipeline.review.agreement import (
    cohen_kappa,
    model_agreement,
    reviewer_agreement,
    session_progress,
)
from cellsift.pipeline.review.card import CARD_FEATURES, MAX_TRACE_POINTS, CardReader, to_uint8
from cellsift.pipeline.review.keys import CellIndex, CellRef, cell_id, session_id
from cellsift.pipeline.review.labels import (
    REVIEW_FILE,
    REVIEW_LABELS_SCHEMA,
    REVIEW_SOURCE,
    LabelStore,
    check_label,
)
from cellsift.pipeline.review.retrain import HISTORY_FILE, RetrainJob, RetrainParams, read_history
from cellsift.pipeline.review.service import ReviewConfig, ReviewService
from cellsift.pipeline.review.suggest import (
    GROUND_TRUTH_SOURCES,
    QUEUE_COLUMNS,
    SuggestParams,
    human_labelled,
    rank_cells,
    suggest,
    suggest_on_lake,
)

__all__ = [
    "CARD_FEATURES",
    "GROUND_TRUTH_SOURCES",
    "HISTORY_FILE",
    "MAX_TRACE_POINTS",
    "QUEUE_COLUMNS",
    "REVIEW_FILE",
    "REVIEW_LABELS_SCHEMA",
    "REVIEW_SOURCE",
    "CardReader",
    "CellIndex",
    "CellRef",
    "LabelStore",
    "RetrainJob",
    "RetrainParams",
    "ReviewConfig",
    "ReviewService",
    "SuggestParams",
    "cell_id",
    "check_label",
    "cohen_kappa",
    "human_labelled",
    "model_agreement",
    "rank_cells",
    "read_history",
    "reviewer_agreement",
    "session_id",
    "session_progress",
    "suggest",
    "suggest_on_lake",
    "to_uint8",
]
