"""Lab-meeting report of a lake: PNG figures and an ``index.html`` linking them.

``cellsift report --lake LAKE --out DIR`` (:func:`render_report`) draws, from the
analysis tables (``cellsift analyze`` first; figures by :mod:`.figures`):

* per session, ``<session slug>_footprints.png``: every unit's footprint contour over
  the maximum projection, coloured by curation (good cells green; CS+-selective good
  cells magenta, CS--selective cyan; cells excluded from analysis red, dashed);
* per session, ``<session slug>_heatmaps.png``: trial-averaged ΔF/F (each trial minus
  its pre-tone baseline) of the good cells around CS+ and CS- onsets, rows in the same
  order in both panels (sorted by CS+ response), with the population mean below;
* per animal, ``<animal slug>_selectivity.png``: the fraction of good cells that are
  CS+-selective and CS--selective across stages (and freezing to CS+ / CS- when the
  ``behaviour`` table has it);
* ``cohort_summary.png``: the same for all animals together;
* ``index.html``: counts and freezing per animal and stage, the README query
  (:data:`README_QUERY`) with its cells, the last-day-versus-first-day table
  (:data:`CROSS_DAY_QUERY`, when the lake has a ``cell_registry``) and every figure.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any, Final

import pandas as pd

from cellsift.catalog import Lake, open_lake
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.analysis.figures import (
    animal_figure,
    cohort_figure,
    footprint_figure,
    heatmap_figure,
    selectivity_frame,
    stage_order,
)
from cellsift.schemas import ANALYSIS_TABLES, LakeError, SessionKey, animal_slug

logger = logging.getLogger(__name__)

__all__ = ["README_QUERY", "CROSS_DAY_QUERY", "render_report"]

#: The README's query: CS+-selective good cells per animal and stage.
README_QUERY: Final = """SELECT animal, stage, day, session, unit_id,
       cs_plus_response, cs_minus_response, discrimination_index, cs_plus_q
FROM cell_summary
WHERE is_good AND cs_plus_selective
ORDER BY animal, day, unit_id"""

#: The issue's question: CS+-selective good cells on ``{day}``, and were they on ``{earlier_day}``?
#: (``str.format`` the two days; cells are followed across days by ``cell_registry.cell_key``.)
CROSS_DAY_QUERY: Final = """WITH s AS (
  SELECT c.*, r.cell_key FROM cell_summary c JOIN cell_registry r USING (cohort, animal, session, unit_id)
)
SELECT late.cohort, late.animal, late.cell_key, late.session, late.unit_id, late.discrimination_index,
       early.session AS earlier_session, early.unit_id AS earlier_unit_id, early.is_good AS earlier_is_good,
       early.cs_plus_selective AS earlier_cs_plus_selective, early.selectivity AS earlier_selectivity
FROM s AS late
LEFT JOIN s AS early
  ON early.cohort = late.cohort AND early.animal = late.animal AND early.cell_key = late.cell_key
 AND early.day = {earlier_day}
WHERE late.day = {day} AND late.is_good AND late.cs_plus_selective
ORDER BY late.animal, late.unit_id"""


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="t", na_rep="–", float_format=lambda v: f"{v:.3g}")


def _session_figures(
    lk: Lake, summary: pd.DataFrame, events: pd.DataFrame, sessions: pd.DataFrame, out: Path
) -> dict[tuple[str, str, str], dict[str, str | None]]:
    """Footprint and heatmap figure of every session (``None`` where one cannot be drawn)."""
    import zarr

    catalog = lk.catalog.set_index(["cohort", "animal", "session"])
    figures: dict[tuple[str, str, str], dict[str, str | None]] = {}
    for row in sessions.itertuples(index=False):
        key = (row.cohort, row.animal, row.session)
        sm = summary[
            (summary["cohort"] == row.cohort)
            & (summary["animal"] == row.animal)
            & (summary["session"] == row.session)
        ]
        ev = (
            events[
                (events["cohort"] == row.cohort)
                & (events["animal"] == row.animal)
                & (events["session"] == row.session)
            ]
            if len(events)
            else events
        )
        title = f"{row.animal} {row.session} ({row.stage}, day {row.day})"
        stem = SessionKey(row.cohort, row.animal, row.session).slug
        entry: dict[str, str | None] = {"footprints": None, "heatmaps": None}
        try:
            group = zarr.open_group(str(lk.root / str(catalog.loc[key, "dataset_path"])), mode="r")
            entry["footprints"] = footprint_figure(group, sm, title, out / f"{stem}_footprints.png")
        except (KeyError, OSError, ValueError, FileNotFoundError) as exc:
            logger.warning("no footprint figure for %s: %s", title, exc)
        entry["heatmaps"] = heatmap_figure(
            lk.root, pd.Series(row._asdict()), sm, ev, title, out / f"{stem}_heatmaps.png"
        )
        figures[key] = entry
    return figures


def _animal_figures(
    summary: pd.DataFrame, sel: pd.DataFrame, behaviour: pd.DataFrame, stages: list[str], out: Path
) -> dict[tuple[str, str], str]:
    """The selectivity (and freezing) figure of every animal."""
    animal_figs: dict[tuple[str, str], str] = {}
    for (cohort, animal), sub in sel.groupby(["cohort", "animal"]):
        beh = (
            behaviour[(behaviour["cohort"] == cohort) & (behaviour["animal"] == animal)]
            if len(behaviour)
            else behaviour
        )
        animal_figs[(cohort, animal)] = animal_figure(
            animal, sub, beh, stages, out / f"{animal_slug(cohort, animal)}_selectivity.png"
        )
    return animal_figs


def _counts(sel: pd.DataFrame, behaviour: pd.DataFrame) -> pd.DataFrame:
    """Good and selective cells per animal and stage, with freezing when known."""
    counts = sel.rename(
        columns={
            "n_good": "good cells",
            "n_cs_plus": "CS+ selective",
            "n_cs_minus": "CS− selective",
            "frac_cs_plus": "fraction CS+",
            "frac_cs_minus": "fraction CS−",
        }
    )
    if len(behaviour):
        fr = behaviour.pivot_table(
            index=["cohort", "animal", "stage"], columns="trial_type", values="freezing_pct"
        ).reset_index()
        fr.columns = [c if c in ("cohort", "animal", "stage") else f"freezing % {c}" for c in fr.columns]
        counts = counts.merge(fr, on=["cohort", "animal", "stage"], how="left")
    return counts


def _head(lk: Lake, summary: pd.DataFrame, counts: pd.DataFrame, cohort_fig: str) -> list[str]:
    """The page head, the cohort figure and counts, and the README query with its cells."""
    query_rows = lk.sql(README_QUERY)
    return [
        "<!doctype html><html><head><meta charset='utf-8'><title>cellsift report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}img{max-width:100%;border:1px solid #ddd}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #eee}"
        "pre{background:#f6f6f6;padding:8px}.row{display:flex;gap:12px;flex-wrap:wrap}.row a{flex:1 1 45%}",
        "</style></head><body>",
        f"<h1>cellsift report</h1><p>Lake <code>{html.escape(str(lk.root.resolve()))}</code>, "
        f"generated {utc_now().strftime('%Y-%m-%d %H:%M UTC')}. Good cells: "
        f"{html.escape(', '.join(sorted(summary['good_rule'].dropna().unique())))} rule "
        "(classifier label when a classifier has run, otherwise cells not overlap-flagged). Methods: "
        "<code>docs/analysis.md</code>.</p>",
        f"<h2>Cohort</h2><a href='{cohort_fig}'><img src='{cohort_fig}' alt='cohort summary'></a>",
        _html_table(counts),
        "<h2>CS+-selective good cells (README query)</h2>",
        f"<pre>{html.escape(README_QUERY)}</pre>",
        f"<p>{len(query_rows)} cells.</p>",
        _html_table(query_rows) if len(query_rows) <= 200 else _html_table(query_rows.head(200)),
    ]


def _cross_day(lk: Lake, summary: pd.DataFrame) -> list[str]:
    """The last-day-versus-first-day section (none without two days and a ``cell_registry``)."""
    days = sorted(int(d) for d in summary["day"].dropna().unique())
    if not (len(days) >= 2 and lk.table_files("cell_registry")):
        return []
    late, early = days[-1], days[0]
    cross = lk.sql(CROSS_DAY_QUERY.format(day=late, earlier_day=early))
    n_before = int(cross["earlier_cs_plus_selective"].fillna(False).astype(bool).sum())
    n_found = int(cross["earlier_unit_id"].notna().sum())
    return [
        f"<h2>CS+-selective good cells on day {late} — and on day {early}?</h2>",
        f"<pre>{html.escape(CROSS_DAY_QUERY.format(day=late, earlier_day=early))}</pre>",
        f"<p>{len(cross)} cells on day {late}; {n_found} found on day {early} (cell registry), "
        f"{n_before} of them already CS+-selective then.</p>",
        _html_table(cross.drop(columns=["cohort"])),
    ]


def _animal_sections(
    animal_figs: dict[tuple[str, str], str],
    figures: dict[tuple[str, str, str], dict[str, Any]],
    sessions: pd.DataFrame,
) -> list[str]:
    """Per animal: its selectivity figure, then each session's figures."""
    parts = []
    for (cohort, animal), fig_name in animal_figs.items():
        parts.append(f"<h2 id='{html.escape(animal)}'>{html.escape(animal)}</h2>")
        parts.append(
            f"<a href='{fig_name}'><img src='{fig_name}' alt='{html.escape(animal)} selectivity'></a>"
        )
        for key, entry in figures.items():
            if key[0] != cohort or key[1] != animal:
                continue
            srow = sessions[
                (sessions["cohort"] == cohort)
                & (sessions["animal"] == animal)
                & (sessions["session"] == key[2])
            ].iloc[0]
            parts.append(
                f"<h3>{html.escape(key[2])} — {html.escape(str(srow['stage']))}, day {int(srow['day'])}</h3><div class='row'>"
            )
            for kind in ("footprints", "heatmaps"):
                name = entry.get(kind)
                if name:
                    parts.append(f"<a href='{name}'><img src='{name}' alt='{html.escape(kind)}'></a>")
            parts.append("</div>")
    return parts


def render_report(lake: Path, out_dir: Path) -> Path:
    """Draw the lab-meeting figures of a lake and an ``index.html`` linking them.

    Parameters
    ----------
    lake
        The lake (``cellsift analyze`` must have written ``cell_summary``, ``events`` and
        ``traces``).
    out_dir
        Output folder (created; existing figures of the same names are replaced).

    Returns
    -------
    pathlib.Path
        Path of ``out_dir / "index.html"``.

    Raises
    ------
    LakeError
        If the lake has no analysis tables yet.
    """
    lk = open_lake(lake)
    out = Path(out_dir)
    if not lk.table_files("cell_summary"):
        raise LakeError(
            "the lake has no cell_summary table yet",
            path=lk.root,
            fix="run 'cellsift analyze --lake LAKE' before 'cellsift report'",
        )
    summary = lk.table("cell_summary")
    if summary.empty:
        raise LakeError(
            "the cell_summary table has no cells",
            path=lk.root,
            fix="check 'cellsift catalog' for failed sessions and run 'cellsift analyze' again",
        )
    out.mkdir(parents=True, exist_ok=True)
    events, behaviour = (
        lk.table(n) if lk.table_files(n) else ANALYSIS_TABLES[n].empty_table().to_pandas()
        for n in ("events", "behaviour")
    )
    stages = stage_order(summary)
    sessions = (
        summary[["cohort", "animal", "session", "stage", "day"]]
        .drop_duplicates()
        .sort_values(["cohort", "animal", "day", "session"])
    )
    sel = selectivity_frame(summary)
    figures = _session_figures(lk, summary, events, sessions, out)
    animal_figs = _animal_figures(summary, sel, behaviour, stages, out)
    cohort_fig = cohort_figure(sel, behaviour, stages, out / "cohort_summary.png")
    parts = [
        *_head(lk, summary, _counts(sel, behaviour), cohort_fig),
        *_cross_day(lk, summary),
        *_animal_sections(animal_figs, figures, sessions),
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    logger.info("report: %d sessions, %d animals -> %s", len(figures), len(animal_figs), index)
    return index
