"""Fear-learning analysis of a lake (``cellsift analyze``, ``cellsift report``).

From the pipeline's ``cells`` table and each session's events and freezing files, build
the analysis tables — ``traces`` (ΔF/F), ``events``, ``trial_responses``,
``cell_summary`` (tone responses and CS+/CS- selectivity per cell), ``behaviour``
(freezing) and ``cell_registry`` (the same neuron across days) — and the lab-meeting
report drawn from them.

Modules: :mod:`.clock` (frame clock and behaviour-to-imaging clock map), :mod:`.events`
(events files, alignment to frames), :mod:`.behaviour` (freezing), :mod:`.dff` (ΔF/F),
:mod:`.responses` (trial windows and statistics), :mod:`.selectivity` (circular-shift
test, q-values, selectivity), :mod:`.params` (parameters, version), :mod:`.store`
(reading the pipeline's tables, building the analysis tables), :mod:`.session` (one
session), :mod:`.registration` (cross-day cell registry), :mod:`.tables` (a lake:
:func:`build_analysis_tables`), :mod:`.figures` and :mod:`.report` (the report).
"""

from cellsift.pipeline.analysis.clock import AlignParams, ClockMap, fit_clock
from cellsift.pipeline.analysis.dff import DffParams, compute_dff
from cellsift.pipeline.analysis.events import TONE_EVENTS, align_events, read_events, read_freezing
from cellsift.pipeline.analysis.params import ANALYSIS_VERSION, AnalysisParams, RegistrationParams
from cellsift.pipeline.analysis.registration import estimate_shift, register_animal
from cellsift.pipeline.analysis.report import CROSS_DAY_QUERY, README_QUERY, render_report
from cellsift.pipeline.analysis.responses import ResponseParams
from cellsift.pipeline.analysis.session import SessionInputs, analyse_session, session_inputs
from cellsift.pipeline.analysis.tables import AnalysisSummary, build_analysis_tables

__all__ = [
    "ANALYSIS_VERSION",
    "CROSS_DAY_QUERY",
    "README_QUERY",
    "TONE_EVENTS",
    "AlignParams",
    "AnalysisParams",
    "AnalysisSummary",
    "ClockMap",
    "DffParams",
    "RegistrationParams",
    "ResponseParams",
    "SessionInputs",
    "align_events",
    "analyse_session",
    "build_analysis_tables",
    "compute_dff",
    "estimate_shift",
    "fit_clock",
    "read_events",
    "read_freezing",
    "register_animal",
    "render_report",
    "session_inputs",
]
