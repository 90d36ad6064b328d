"""Cell classification: models that tell real cells from artifacts, their training, evaluation and use.

Every model follows one interface (:class:`CellClassifier`: ``fit``, ``predict_proba``,
``predict_reason``, ``save``/``load``) and carries a :class:`ModelCard` recording what
it was trained on; a card that does not match the data refuses to score it.

Modules, from the bottom up:

* ``data`` (:class:`CellData`, :class:`ClipArrays`, :data:`REASONS`), ``card``
  (:class:`ModelCard`), ``inputs`` (the table features models read), ``metrics``,
  ``splits`` (grouped-by-animal folds), ``ood`` (out-of-distribution detector),
  ``clip_prep`` / ``clip_summary`` (clips as model input and their summaries);
* ``base`` (:class:`CellClassifier`) and the models: ``feature_model`` (boosted trees
  on quality features), ``clip_net`` / ``clip_model`` (CNN + LSTM over peak clips),
  ``ensemble`` (both, calibrated); ``kinds`` (kind name -> class);
* ``store`` (model folders in a lake and the shipped ``default``), ``labels`` and
  ``lake_data`` (labelled cells of a lake), ``training``, ``default_recipe`` (the
  shipped model's rebuild), ``evaluation`` / ``capstone`` / ``figures`` (reports) and
  ``apply`` (:func:`classify_lake`: scoring every session of a lake).

torch is imported only inside the functions that need it.
"""

from cellsift.pipeline.classify.apply import (
    OUTPUT_COLUMNS,
    classify_lake,
    classify_session,
    gpu_resources,
    write_predictions,
)
from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.capstone import (
    CAPSTONE_TABLE2,
    CapstoneTrial,
    capstone_on_lake,
    capstone_protocol,
    capstone_trials,
    format_capstone_table,
    parse_sizes,
)
from cellsift.pipeline.classify.card import FEATURE_VERSION, ModelCard, check_card_for_cells
from cellsift.pipeline.classify.card_build import new_card, training_summary
from cellsift.pipeline.classify.clip_model import ClipClassifier
from cellsift.pipeline.classify.clip_net import ClipModelConfig
from cellsift.pipeline.classify.clip_prep import prepare_clips, read_clip_store
from cellsift.pipeline.classify.clip_summary import CLIP_SUMMARY_FEATURES, clip_summary_features
from cellsift.pipeline.classify.data import (
    ID_COLUMNS,
    REASONS,
    CellData,
    ClipArrays,
    group_keys,
    labels_to_int,
)
from cellsift.pipeline.classify.default_recipe import (
    DEFAULT_RECIPE,
    CohortSpec,
    DefaultModelRecipe,
    build_simulated_lake,
    train_default_model,
)
from cellsift.pipeline.classify.ensemble import EnsembleClassifier, EnsembleConfig
from cellsift.pipeline.classify.evaluation import (
    classified_montage,
    cross_validate_on_lake,
    evaluate,
    evaluate_on_lake,
    per_animal,
    predict_frame,
    training_cells_mask,
    write_report,
)
from cellsift.pipeline.classify.feature_model import FeatureClassifier, FeatureModelConfig
from cellsift.pipeline.classify.inputs import MODEL_FEATURES, add_session_relative, feature_matrix
from cellsift.pipeline.classify.kinds import MODEL_KINDS, make_model
from cellsift.pipeline.classify.labels import LabelSpec, load_labels, read_labels_csv
from cellsift.pipeline.classify.lake_data import load_cell_data
from cellsift.pipeline.classify.metrics import balanced_threshold, binary_metrics, reason_metrics
from cellsift.pipeline.classify.ood import OODDetector, session_ood
from cellsift.pipeline.classify.progress import PROGRESS_LOGGER, report_progress
from cellsift.pipeline.classify.splits import grouped_folds
from cellsift.pipeline.classify.store import (
    DEFAULT_MODEL_DIR,
    DEFAULT_NAME,
    check_model_id,
    list_models,
    load_model,
    register_model,
    remove_model,
    resolve_model,
)
from cellsift.pipeline.classify.training import (
    check_free_model_id,
    cross_validate,
    fine_tune,
    fine_tune_on_lake,
    train_model,
    train_on_lake,
)

__all__ = [
    "CAPSTONE_TABLE2",
    "CLIP_SUMMARY_FEATURES",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_NAME",
    "DEFAULT_RECIPE",
    "FEATURE_VERSION",
    "ID_COLUMNS",
    "MODEL_FEATURES",
    "MODEL_KINDS",
    "OUTPUT_COLUMNS",
    "PROGRESS_LOGGER",
    "REASONS",
    "CapstoneTrial",
    "CellClassifier",
    "CellData",
    "ClipArrays",
    "ClipClassifier",
    "ClipModelConfig",
    "CohortSpec",
    "DefaultModelRecipe",
    "EnsembleClassifier",
    "EnsembleConfig",
    "FeatureClassifier",
    "FeatureModelConfig",
    "LabelSpec",
    "ModelCard",
    "OODDetector",
    "add_session_relative",
    "balanced_threshold",
    "binary_metrics",
    "build_simulated_lake",
    "capstone_on_lake",
    "capstone_protocol",
    "capstone_trials",
    "check_free_model_id",
    "check_card_for_cells",
    "check_model_id",
    "classified_montage",
    "classify_lake",
    "classify_session",
    "clip_summary_features",
    "cross_validate",
    "cross_validate_on_lake",
    "evaluate",
    "evaluate_on_lake",
    "feature_matrix",
    "fine_tune",
    "fine_tune_on_lake",
    "format_capstone_table",
    "gpu_resources",
    "group_keys",
    "grouped_folds",
    "labels_to_int",
    "list_models",
    "load_cell_data",
    "load_labels",
    "load_model",
    "make_model",
    "new_card",
    "parse_sizes",
    "per_animal",
    "predict_frame",
    "prepare_clips",
    "read_clip_store",
    "read_labels_csv",
    "reason_metrics",
    "register_model",
    "remove_model",
    "report_progress",
    "resolve_model",
    "session_ood",
    "train_default_model",
    "train_model",
    "train_on_lake",
    "training_cells_mask",
    "training_summary",
    "write_predictions",
    "write_report",
]
