"""Parquet schemas of the analysis tables (``cellsift analyze``): traces, events, trial
responses, cell summary, behaviour and the cross-session cell registry.

Same conventions as :mod:`cellsift.schemas.tables`: hive-partitioned by
``cohort/animal/session`` below ``LAKE/tables/<name>/``, partition columns stored in
each file, schema version under ``cellsift.schema_version`` and the table name under
``cellsift.table`` in the Parquet key-value metadata. Methods and units:
``docs/analysis.md``.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from cellsift.schemas.tables import KEY_FIELDS, with_table_meta

__all__ = [
    "ANALYSIS_KEY",
    "TRACES_SCHEMA",
    "EVENTS_SCHEMA",
    "TRIAL_RESPONSES_SCHEMA",
    "CELL_SUMMARY_SCHEMA",
    "BEHAVIOUR_SCHEMA",
    "CELL_REGISTRY_SCHEMA",
    "ANALYSIS_TABLES",
]

#: Parquet metadata key holding the hash of everything a session's analysis tables
#: were computed from (inputs, cells run, labels, parameters, code version).
ANALYSIS_KEY: Final = b"cellsift.analysis_key"

_STAGE: Final = [pa.field("stage", pa.string()), pa.field("day", pa.int32())]

TRACES_SCHEMA: Final = with_table_meta(
    "traces",
    [
        *KEY_FIELDS,
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("frame", pa.int64(), nullable=False),
        pa.field("time_s", pa.float64()),  # frame time from the Miniscope timestamps (s)
        pa.field("dff", pa.float32()),  # (C_raw - F0(t)) / F_ref, see docs/analysis.md
        pa.field("deconvolved", pa.float32()),  # CNMF-E S (spike-rate proxy, extraction units)
    ],
)

EVENTS_SCHEMA: Final = with_table_meta(
    "events",
    [
        *KEY_FIELDS,
        *_STAGE,
        pa.field("event_index", pa.int32(), nullable=False),  # row order within the session
        pa.field("event", pa.string()),  # CS+ | CS- | shock | freezing
        pa.field("trial", pa.int32()),  # 1-based per tone type; 0 for other events
        pa.field("onset_s_source", pa.float64()),  # as logged (behaviour clock, s)
        pa.field("offset_s_source", pa.float64()),
        pa.field("onset_s", pa.float64()),  # on the imaging clock (s since the first frame)
        pa.field("offset_s", pa.float64()),
        pa.field("onset_frame", pa.int64()),  # first frame at or after the onset
        pa.field("offset_frame", pa.int64()),  # first frame at or after the offset (exclusive end)
        pa.field("onset_frame_time_s", pa.float64()),  # timestamp of onset_frame (s)
        pa.field("onset_lag_s", pa.float64()),  # onset_frame_time_s - onset_s (s)
        pa.field("n_frames", pa.int32()),  # recorded frames in [onset_frame, offset_frame)
        pa.field("n_dropped", pa.int32()),  # frames missing inside the event (timestamp gaps)
        pa.field("freezing_pct", pa.float64()),  # % of the event spent freezing; null without freezing data
        pa.field("clock_method", pa.string()),  # sync | ttl_start | offset | none
        pa.field("clock_offset_s", pa.float64()),  # behaviour-clock time of the first frame (s)
        pa.field("clock_scale", pa.float64()),  # imaging-clock s per behaviour-clock s
        pa.field("events_file", pa.string()),
    ],
)

TRIAL_RESPONSES_SCHEMA: Final = with_table_meta(
    "trial_responses",
    [
        *KEY_FIELDS,
        *_STAGE,
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("trial_type", pa.string()),  # CS+ | CS-
        pa.field("trial", pa.int32()),  # 1-based within the trial type
        pa.field("event_index", pa.int32()),  # row of the tone in the events table
        pa.field("onset_frame", pa.int64()),
        pa.field("onset_s", pa.float64()),  # imaging clock (s)
        pa.field("n_baseline_frames", pa.int32()),
        pa.field("n_response_frames", pa.int32()),
        pa.field("baseline_mean", pa.float64()),  # mean dF/F of the pre-tone baseline window
        pa.field("response_mean", pa.float64()),  # mean dF/F of the response window
        pa.field("delta", pa.float64()),  # response_mean - baseline_mean (dF/F)
        pa.field("baseline_sd", pa.float64()),  # SD of baseline frames (dF/F)
        pa.field("zscore", pa.float64()),  # delta / max(baseline_sd, noise SD)
        pa.field("auc", pa.float64()),  # integral of dF/F - baseline over the response window (dF/F*s)
        pa.field("peak", pa.float64()),  # max of dF/F - baseline in the response window
        pa.field("p_value", pa.float64()),  # two-sided Mann-Whitney U, response vs baseline frames
    ],
)

CELL_SUMMARY_SCHEMA: Final = with_table_meta(
    "cell_summary",
    [
        *KEY_FIELDS,
        *_STAGE,
        pa.field("unit_id", pa.int64(), nullable=False),
        # curation: which cells analyses use by default
        pa.field("is_good", pa.bool_()),  # the default analysis set (rule in good_rule)
        pa.field("good_rule", pa.string()),  # "classifier" | "not_overlap_flagged"
        pa.field("curation_label", pa.string()),  # classifier label good/bad; null if no classifier ran
        pa.field("label_source", pa.string()),  # "classifier" (model_id in model_id) or null
        pa.field("p_good", pa.float64()),
        pa.field("model_id", pa.string()),
        pa.field("overlap_flag", pa.bool_()),
        pa.field("truth_label", pa.string()),  # labels table (ground truth / manual); evaluation only
        pa.field("truth_source", pa.string()),
        pa.field("centroid_y", pa.float64()),  # px
        pa.field("centroid_x", pa.float64()),  # px
        # dF/F
        pa.field("dff_method", pa.string()),  # movie_p10 | max_proj | c_raw_range
        pa.field("dff_f_ref", pa.float64()),  # denominator of dF/F (C units)
        pa.field("dff_noise_sd", pa.float64()),  # robust noise SD of dF/F
        # tone responses (mean over trials); p from the circular-shift permutation test
        pa.field("cs_plus_response", pa.float64()),  # mean delta dF/F
        pa.field("cs_plus_zscore", pa.float64()),
        pa.field("cs_plus_auc", pa.float64()),  # dF/F*s
        pa.field("cs_plus_p", pa.float64()),
        pa.field("cs_plus_q", pa.float64()),  # Benjamini-Hochberg within session
        pa.field("cs_plus_responsive", pa.bool_()),  # q < alpha and >= 2 responding trials
        pa.field("cs_plus_n_trials", pa.int32()),
        pa.field(
            "cs_plus_n_trials_sig", pa.int32()
        ),  # trials with Mann-Whitney p < 0.05, same sign as the response
        pa.field("cs_minus_response", pa.float64()),
        pa.field("cs_minus_zscore", pa.float64()),
        pa.field("cs_minus_auc", pa.float64()),
        pa.field("cs_minus_p", pa.float64()),
        pa.field("cs_minus_q", pa.float64()),
        pa.field("cs_minus_responsive", pa.bool_()),
        pa.field("cs_minus_n_trials", pa.int32()),
        pa.field("cs_minus_n_trials_sig", pa.int32()),
        pa.field("discrimination_index", pa.float64()),  # (R+ - R-) / (|R+| + |R-|)
        pa.field("cs_plus_selective", pa.bool_()),
        pa.field("cs_minus_selective", pa.bool_()),
        pa.field("selectivity", pa.string()),  # CS+ | CS- | both | none
        pa.field("cells_run_id", pa.string()),  # run of the cells table this was joined with
        pa.field("analysis_version", pa.string()),
    ],
)

BEHAVIOUR_SCHEMA: Final = with_table_meta(
    "behaviour",
    [
        *KEY_FIELDS,
        *_STAGE,
        pa.field("trial_type", pa.string()),  # CS+ | CS- | pre_tone | iti
        pa.field("n_trials", pa.int32()),  # tones of that type (1 for pre_tone / iti)
        pa.field("freezing_pct", pa.float64()),  # mean over trials of % time freezing
        pa.field("freezing_pct_sd", pa.float64()),  # SD over trials (null for < 2 trials)
        pa.field("freezing_s", pa.float64()),  # total time frozen in those periods (s)
        pa.field("duration_s", pa.float64()),  # total time of those periods (s)
        pa.field("source", pa.string()),  # trace | epochs
        pa.field("freezing_file", pa.string()),
    ],
)

CELL_REGISTRY_SCHEMA: Final = with_table_meta(
    "cell_registry",
    [
        *KEY_FIELDS,
        *_STAGE,
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("cell_key", pa.string()),  # the same neuron across an animal's sessions, e.g. "m01/c0007"
        pa.field("first_session", pa.string()),  # session where this cell_key first appeared
        pa.field("reference_session", pa.string()),  # the animal's session all others are aligned to
        pa.field("shift_y_px", pa.float64()),  # field-of-view shift of this session vs the reference (px)
        pa.field("shift_x_px", pa.float64()),
        pa.field("match_distance_px", pa.float64()),  # centroid distance to the matched cell; null if new
        pa.field(
            "footprint_similarity", pa.float64()
        ),  # cosine similarity of aligned footprints; null if new
    ],
)

ANALYSIS_TABLES: Final[dict[str, pa.Schema]] = {
    "traces": TRACES_SCHEMA,
    "events": EVENTS_SCHEMA,
    "trial_responses": TRIAL_RESPONSES_SCHEMA,
    "cell_summary": CELL_SUMMARY_SCHEMA,
    "behaviour": BEHAVIOUR_SCHEMA,
    "cell_registry": CELL_REGISTRY_SCHEMA,
}
