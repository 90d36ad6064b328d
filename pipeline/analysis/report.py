"""Lab-meeting report of a lake: PNG figures and an ``index.html`` linking them.

``cellsift report --lake LAKE --out DIR`` (:func:`render_report`) draws, from the
analysis tables (``cellsift analyze`` first):

* per session, ``<cohort>_<animal>_<session>_footprints.png``: every unit's footprint contour over
  the maximum projection, coloured by curation (good cells green; CS+-selective good
  cells magenta, CS--selective cyan; cells excluded from analysis red, dashed);
* per session, ``<cohort>_<animal>_<session>_heatmaps.png``: trial-averaged ΔF/F (each trial minus
  its pre-tone baseline) of the good cells around CS+ and CS- onsets, rows in the same
  order in both panels (sorted by CS+ response), with the population mean below;
* per animal, ``<cohort>_<animal>_selectivity.png``: the fraction of good cells that are
  CS+-selective and CS--selective across stages (and freezing to CS+ / CS- when the
  ``behaviour`` table has it);
* ``cohort_summary.png``: the same for all animals together;
* ``index.html``: counts and freezing per animal and stage, the README query
  (:data:`README_QUERY`) with its cells, the last-day-versus-first-day table
  (:data:`CROSS_DAY_QUERY`, when the lake has a ``cell_registry``) and every figure.

Figures are drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure`
(no pyplot state), so rendering is safe in worker processes and headless machines.
"""

from __future__ import annotations

import html
import logging
import math
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cellsift.catalog.lake import open_lake
from cellsift.schemas.analysis_tables import ANALYSIS_TABLES
from cellsift.schemas.errors import LakeError

from cellsift.pipeline.analysis.events import TONE_EVENTS

logger = logging.getLogger(__name__)

__all__ = ["README_QUERY", "CROSS_DAY_QUERY", "render_report", "peri_event_matrix"]

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

_TONE_COLOURS: Final = {"CS+": "#c2185b", "CS-": "#0288d1"}
_GOOD: Final = "#2e7d32"
_EXCLUDED: Final = "#e53935"
_DPI: Final = 110


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=_DPI)
    logger.debug("wrote %s", path)
    return path.name


def peri_event_matrix(
    dff: np.ndarray,
    time_s: np.ndarray,
    onsets_s: Sequence[float],
    *,
    pre_s: float,
    post_s: float,
    dt_s: float,
    baseline_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Trial-averaged, baseline-subtracted ΔF/F around events, on a common time grid.

    Each grid time takes the most recent recorded frame (so dropped frames repeat the last
    value instead of shifting the trace); each trial is corrected by its mean over
    ``[-baseline_s, 0)`` before averaging.

    Parameters
    ----------
    dff
        ``(n_units, n_frames)``.
    time_s
        ``(n_frames,)`` frame times (s).
    onsets_s
        Event onsets on the imaging clock (s).
    pre_s, post_s
        Window before and after each onset (s).
    dt_s
        Grid step (s), usually one frame interval.
    baseline_s
        Length of the pre-onset baseline subtracted from each trial (s).

    Returns
    -------
    tuple
        ``(grid_s, mean)``: ``(n_grid,)`` times from onset and ``(n_units, n_grid)``
        average (NaN where no trial covers a grid point).
    """
    grid = np.arange(-pre_s, post_s + 1e-9, dt_s)
    x = np.atleast_2d(np.asarray(dff, dtype=np.float64))
    t = np.asarray(time_s, dtype=np.float64)
    total = np.zeros((x.shape[0], grid.size))
    count = np.zeros(grid.size)
    base_mask = (grid >= -baseline_s) & (grid < 0)
    for onset in onsets_s:
        times = onset + grid
        idx = np.searchsorted(t, times, side="right") - 1
        valid = (idx >= 0) & (times <= t[-1] + dt_s)
        if not valid.any():
            continue
        seg = np.full((x.shape[0], grid.size), np.nan)
        seg[:, valid] = x[:, idx[valid]]
        base = np.nanmean(seg[:, base_mask & valid], axis=1) if (base_mask & valid).any() else np.zeros(x.shape[0])
        seg -= base[:, None]
        total[:, valid] += seg[:, valid]
        count[valid] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return grid, mean


def _stage_order(frame: pd.DataFrame) -> list[str]:
    order = frame.groupby("stage")["day"].min().sort_values()
    return list(order.index)


def _footprint_figure(group: Any, summary: pd.DataFrame, title: str, path: Path) -> str:
    from matplotlib.lines import Line2D

    a = group["A"]
    if "max_proj" in group:
        background = np.asarray(group["max_proj"][:], dtype=np.float64)
    elif "Cn" in group:
        background = np.asarray(group["Cn"][:], dtype=np.float64)
    else:
        background = np.zeros(tuple(a.shape[1:]))
    h, w = background.shape
    fig = _figure(6.4, 6.4 * h / w + 0.8)
    ax = fig.add_subplot()
    lo, hi = np.percentile(background, [1, 99.7])
    ax.imshow(background, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    info = summary.set_index("unit_id")
    units = np.asarray(group["unit_id"][:])
    for start in range(0, units.size, 32):
        block = np.asarray(a[start : start + 32], dtype=np.float64)
        for k, fp in enumerate(block):
            uid = int(units[start + k])
            peak = fp.max()
            if peak <= 0 or uid not in info.index:
                continue
            ys, xs = np.nonzero(fp >= 0.3 * peak)
            y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, h)
            x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, w)
            row = info.loc[uid]
            if not bool(row["is_good"]):
                colour, style, lw = _EXCLUDED, "dashed", 0.9
            elif bool(row["cs_plus_selective"]):
                colour, style, lw = _TONE_COLOURS["CS+"], "solid", 1.8
            elif bool(row["cs_minus_selective"]):
                colour, style, lw = _TONE_COLOURS["CS-"], "solid", 1.8
            else:
                colour, style, lw = _GOOD, "solid", 1.0
            yy, xx = np.mgrid[y0:y1, x0:x1]
            ax.contour(xx, yy, fp[y0:y1, x0:x1], levels=[0.3 * peak], colors=[colour], linewidths=lw,
                       linestyles=style)
    n_good = int(summary["is_good"].sum())
    rule = summary["good_rule"].iloc[0] if len(summary) else ""
    handles = [
        Line2D([], [], color=_GOOD, lw=1.2, label=f"good ({n_good})"),
        Line2D([], [], color=_TONE_COLOURS["CS+"], lw=2,
               label=f"good, CS+ selective ({int((summary['is_good'] & summary['cs_plus_selective']).sum())})"),
        Line2D([], [], color=_TONE_COLOURS["CS-"], lw=2,
               label=f"good, CS− selective ({int((summary['is_good'] & summary['cs_minus_selective']).sum())})"),
        Line2D([], [], color=_EXCLUDED, lw=1, ls="--", label=f"excluded ({len(summary) - n_good})"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    ax.set_title(f"{title}\nfootprints over max projection (good = {rule.replace('_', ' ')})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def _session_traces(lake_root: Path, row: pd.Series, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ΔF/F ``(len(units), n_frames)`` and frame times of chosen units from the ``traces`` table."""
    path = lake_root / "tables" / "traces" / f"cohort={row.cohort}" / f"animal={row.animal}" / f"session={row.session}" / "part-0.parquet"
    if not path.exists():
        raise LakeError("the session has no traces table", path=path, fix="run 'cellsift analyze --lake LAKE' first")
    if units.size == 0:
        table = pq.read_table(path, columns=["frame", "time_s"], filters=[("unit_id", "=", -1)])
    else:
        table = pq.read_table(path, columns=["unit_id", "frame", "time_s", "dff"],
                              filters=[("unit_id", "in", [int(u) for u in units])])
    df = table.to_pandas()
    if df.empty:
        times = pq.read_table(path, columns=["unit_id", "frame", "time_s"]).to_pandas()
        first = times[times["unit_id"] == times["unit_id"].iloc[0]] if len(times) else times
        return np.zeros((0, len(first))), first.sort_values("frame")["time_s"].to_numpy()
    n_frames = int(df["frame"].max()) + 1
    pos = {int(u): i for i, u in enumerate(units)}
    out = np.full((units.size, n_frames), np.nan)
    rows = df["unit_id"].map(pos).to_numpy()
    out[rows, df["frame"].to_numpy()] = df["dff"].to_numpy(dtype=np.float64)
    first = df[df["unit_id"] == df["unit_id"].iloc[0]].sort_values("frame")
    return out, first["time_s"].to_numpy(dtype=np.float64)


def _heatmap_figure(
    lake_root: Path, row: pd.Series, summary: pd.DataFrame, events: pd.DataFrame, title: str, path: Path
) -> str | None:
    good = summary[summary["is_good"]].copy()
    tones = events[events["event"].isin(TONE_EVENTS)]
    if tones.empty:
        return None
    good["sort_key"] = good["cs_plus_response"].fillna(-np.inf)
    good = good.sort_values(["sort_key", "unit_id"], ascending=[False, True])
    units = good["unit_id"].to_numpy(dtype=np.int64)
    dff, time_s = _session_traces(lake_root, row, units)
    dt = float(np.median(np.diff(time_s))) if time_s.size > 1 else 0.05
    tone_len = float((tones["offset_s"] - tones["onset_s"]).median())
    pre, post = min(5.0, max(2.0, tone_len)), tone_len + min(5.0, max(2.0, tone_len))
    mats = {}
    for tone in TONE_EVENTS:
        on = tones.loc[tones["event"] == tone, "onset_s"].to_numpy()
        if on.size and units.size:
            grid, mats[tone] = peri_event_matrix(dff, time_s, on, pre_s=pre, post_s=post, dt_s=dt, baseline_s=pre)
        else:
            grid = np.arange(-pre, post + 1e-9, dt)
            mats[tone] = np.full((units.size, grid.size), np.nan)
    finite = np.concatenate([m[np.isfinite(m)] for m in mats.values()]) if units.size else np.zeros(0)
    vmax = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    shocks = events[events["event"] == "shock"]
    shock_rel = None
    if len(shocks):
        plus = tones[tones["event"] == "CS+"]
        rel = [float(s - p) for s in shocks["onset_s"] for p in plus["onset_s"] if 0 <= s - p <= tone_len + 1e-6]
        shock_rel = float(np.median(rel)) if rel else None
    n = max(units.size, 1)
    fig = _figure(9.0, min(2.4 + 0.11 * n, 14.0) + 1.8)
    gs = fig.add_gridspec(2, 3, height_ratios=[min(2.4 + 0.11 * n, 14.0), 1.8], width_ratios=[1, 1, 0.05])
    image = None
    for j, tone in enumerate(TONE_EVENTS):
        ax = fig.add_subplot(gs[0, j])
        m = mats[tone]
        image = ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                          extent=(grid[0] - dt / 2, grid[-1] + dt / 2, units.size - 0.5, -0.5))
        ax.axvline(0, color="k", lw=0.8)
        ax.axvline(tone_len, color="k", lw=0.8, ls="--")
        if tone == "CS+" and shock_rel is not None:
            ax.axvline(shock_rel, color="orange", lw=1.0, ls=":")
        sel = good[f"{'cs_plus' if tone == 'CS+' else 'cs_minus'}_selective"].to_numpy(dtype=bool)
        for r in np.flatnonzero(sel):
            ax.plot(grid[0] - 0.02 * (grid[-1] - grid[0]), r, marker=">", color=_TONE_COLOURS[tone], ms=4,
                    clip_on=False)
        n_trials = int((tones["event"] == tone).sum())
        ax.set_title(f"{tone} ({n_trials} trials): {int(sel.sum())} selective", color=_TONE_COLOURS[tone], fontsize=10)
        ax.set_ylabel("good cells (sorted by CS+ response)" if j == 0 else "")
        if units.size > 40:
            ax.set_yticks([])
        else:
            ax.set_yticks(range(units.size), [str(u) for u in units], fontsize=6)
        ax.set_xlabel("")
        axm = fig.add_subplot(gs[1, j], sharex=ax)
        for t2 in TONE_EVENTS:
            mm = mats[t2]
            if mm.size and np.isfinite(mm).any():
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # time bins no cell covers: NaN
                    mean = np.nanmean(mm, axis=0)
                    sem = np.nanstd(mm, axis=0) / math.sqrt(max(mm.shape[0], 1))
                style = "-" if t2 == tone else ":"
                axm.plot(grid, mean, style, color=_TONE_COLOURS[t2], lw=1.5 if t2 == tone else 0.8, label=t2)
                if t2 == tone:
                    axm.fill_between(grid, mean - sem, mean + sem, color=_TONE_COLOURS[t2], alpha=0.25, lw=0)
        axm.axvline(0, color="k", lw=0.8)
        axm.axvline(tone_len, color="k", lw=0.8, ls="--")
        axm.axhline(0, color="grey", lw=0.5)
        axm.set_xlabel("time from tone onset (s)")
        axm.set_ylabel("mean ΔF/F" if j == 0 else "")
        axm.legend(fontsize=7, loc="upper right", frameon=False)
    if image is not None:
        cax = fig.add_subplot(gs[0, 2])
        cb = fig.colorbar(image, cax=cax)
        cb.set_label("ΔF/F − pre-tone baseline", fontsize=8)
    fig.suptitle(f"{title}: trial-averaged responses of good cells (n = {units.size})", fontsize=11)
    return _save(fig, path)


def _selectivity_frame(summary: pd.DataFrame) -> pd.DataFrame:
    good = summary[summary["is_good"]]
    agg = good.groupby(["animal", "stage", "day"], as_index=False).agg(
        n_good=("unit_id", "size"),
        n_cs_plus=("cs_plus_selective", "sum"),
        n_cs_minus=("cs_minus_selective", "sum"),
    )
    agg["frac_cs_plus"] = agg["n_cs_plus"] / agg["n_good"].where(agg["n_good"] > 0)
    agg["frac_cs_minus"] = agg["n_cs_minus"] / agg["n_good"].where(agg["n_good"] > 0)
    return agg.sort_values(["animal", "day"])


def _selectivity_axes(ax: Any, frame: pd.DataFrame, stages: list[str], *, label_prefix: str = "", alpha: float = 1.0,
                      marker: str = "o", lw: float = 2.0) -> None:
    x = np.arange(len(stages))
    by_stage = frame.set_index("stage")
    for tone, col in (("CS+", "frac_cs_plus"), ("CS-", "frac_cs_minus")):
        y = [100.0 * float(by_stage.loc[s, col]) if s in by_stage.index else np.nan for s in stages]
        ax.plot(x, y, marker=marker, color=_TONE_COLOURS[tone], lw=lw, alpha=alpha,
                label=f"{label_prefix}{tone} selective" if label_prefix is not None else None)
    ax.set_xticks(x, stages)
    ax.set_ylabel("% of good cells")


def _behaviour_axes(ax: Any, beh: pd.DataFrame, stages: list[str], *, alpha: float = 1.0, lw: float = 2.0,
                    label: bool = True) -> None:
    x = np.arange(len(stages))
    for tone in (*TONE_EVENTS, "pre_tone"):
        sub = beh[beh["trial_type"] == tone].set_index("stage")
        if sub.empty:
            continue
        y = [float(sub.loc[s, "freezing_pct"]) if s in sub.index else np.nan for s in stages]
        colour = _TONE_COLOURS.get(tone, "grey")
        ax.plot(x, y, marker="s", color=colour, lw=lw, alpha=alpha, ls="-" if tone in TONE_EVENTS else ":",
                label=(tone if tone in TONE_EVENTS else "pre-tone") if label else None)
    ax.set_xticks(x, stages)
    ax.set_ylabel("freezing (%)")
    ax.set_ylim(0, 100)


def _top(sel: pd.DataFrame) -> float:
    """Upper y limit (%) for selectivity axes: room above the largest fraction."""
    values = 100.0 * sel[["frac_cs_plus", "frac_cs_minus"]].to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    return max(5.0, 1.25 * float(finite.max())) if finite.size else 5.0


def _animal_figure(animal: str, sel: pd.DataFrame, beh: pd.DataFrame, stages: list[str], path: Path) -> str:
    has_beh = not beh.empty
    fig = _figure(9.0 if has_beh else 5.0, 3.6)
    axes = fig.subplots(1, 2 if has_beh else 1)
    axes = np.atleast_1d(axes)
    _selectivity_axes(axes[0], sel, stages)
    axes[0].set_ylim(0, _top(sel))
    for i, s in enumerate(stages):
        r = sel[sel["stage"] == s]
        if len(r):
            axes[0].annotate(f"{int(r['n_good'].iloc[0])} good", (i, 1.0), xycoords=("data", "axes fraction"),
                             textcoords="offset points", xytext=(0, -10), ha="center", fontsize=7, color="grey")
    axes[0].set_title(f"{animal}: tone-selective good cells", fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    if has_beh:
        _behaviour_axes(axes[1], beh, stages)
        axes[1].set_title(f"{animal}: freezing", fontsize=10)
        axes[1].legend(fontsize=8, frameon=False)
    return _save(fig, path)


def _cohort_figure(sel: pd.DataFrame, beh: pd.DataFrame, stages: list[str], path: Path) -> str:
    has_beh = not beh.empty
    fig = _figure(9.0 if has_beh else 5.0, 3.8)
    axes = np.atleast_1d(fig.subplots(1, 2 if has_beh else 1))
    for animal, sub in sel.groupby("animal"):
        _selectivity_axes(axes[0], sub, stages, label_prefix=None, alpha=0.3, lw=0.8, marker=".")
    mean = sel.groupby("stage", as_index=False)[["frac_cs_plus", "frac_cs_minus"]].mean()
    _selectivity_axes(axes[0], mean, stages, label_prefix="mean ")
    axes[0].set_ylim(0, _top(sel))
    axes[0].set_title(f"Cohort: tone-selective good cells ({sel['animal'].nunique()} animals)", fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    if has_beh:
        for animal, sub in beh.groupby("animal"):
            _behaviour_axes(axes[1], sub, stages, alpha=0.3, lw=0.8, label=False)
        mean_b = beh.groupby(["stage", "trial_type"], as_index=False)["freezing_pct"].mean()
        _behaviour_axes(axes[1], mean_b, stages)
        axes[1].set_title("Cohort: freezing (thin: animals)", fontsize=10)
        axes[1].legend(fontsize=8, frameon=False)
    return _save(fig, path)


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="t", na_rep="–", float_format=lambda v: f"{v:.3g}")


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
    import zarr

    lk = open_lake(lake)
    out = Path(out_dir)
    if not lk.table_files("cell_summary"):
        raise LakeError("the lake has no cell_summary table yet", path=lk.root,
                        fix="run 'cellsift analyze --lake LAKE' before 'cellsift report'")
    summary = lk.table("cell_summary")
    if summary.empty:
        raise LakeError("the cell_summary table has no cells", path=lk.root,
                        fix="check 'cellsift catalog' for failed sessions and run 'cellsift analyze' again")
    out.mkdir(parents=True, exist_ok=True)
    events, behaviour = (lk.table(n) if lk.table_files(n) else ANALYSIS_TABLES[n].empty_table().to_pandas()
                         for n in ("events", "behaviour"))
    catalog = lk.catalog.set_index(["cohort", "animal", "session"])
    stages = _stage_order(summary)
    sessions = summary[["cohort", "animal", "session", "stage", "day"]].drop_duplicates().sort_values(
        ["cohort", "animal", "day", "session"])
    sel = _selectivity_frame(summary)
    figures: dict[tuple[str, str, str], dict[str, str | None]] = {}
    for row in sessions.itertuples(index=False):
        key = (row.cohort, row.animal, row.session)
        sm = summary[(summary["cohort"] == row.cohort) & (summary["animal"] == row.animal)
                     & (summary["session"] == row.session)]
        ev = events[(events["cohort"] == row.cohort) & (events["animal"] == row.animal)
                    & (events["session"] == row.session)] if len(events) else events
        title = f"{row.animal} {row.session} ({row.stage}, day {row.day})"
        stem = f"{row.cohort}_{row.animal}_{row.session}"
        entry: dict[str, str | None] = {"footprints": None, "heatmaps": None}
        try:
            group = zarr.open_group(str(lk.root / str(catalog.loc[key, "dataset_path"])), mode="r")
            entry["footprints"] = _footprint_figure(group, sm, title, out / f"{stem}_footprints.png")
        except (KeyError, OSError, ValueError, FileNotFoundError) as exc:
            logger.warning("no footprint figure for %s: %s", title, exc)
        entry["heatmaps"] = _heatmap_figure(lk.root, pd.Series(row._asdict()), sm, ev, title, out / f"{stem}_heatmaps.png")
        figures[key] = entry
    animal_figs: dict[tuple[str, str], str] = {}
    for (cohort, animal), sub in sel.assign(cohort=sel["animal"].map(
            dict(zip(summary["animal"], summary["cohort"])))).groupby(["cohort", "animal"]):
        beh = behaviour[(behaviour["cohort"] == cohort) & (behaviour["animal"] == animal)] if len(behaviour) else behaviour
        animal_figs[(cohort, animal)] = _animal_figure(animal, sub, beh, stages, out / f"{cohort}_{animal}_selectivity.png")
    cohort_fig = _cohort_figure(sel, behaviour, stages, out / "cohort_summary.png")

    # ---- HTML
    counts = sel.rename(columns={"n_good": "good cells", "n_cs_plus": "CS+ selective", "n_cs_minus": "CS− selective",
                                 "frac_cs_plus": "fraction CS+", "frac_cs_minus": "fraction CS−"})
    if len(behaviour):
        fr = behaviour.pivot_table(index=["animal", "stage"], columns="trial_type", values="freezing_pct").reset_index()
        fr.columns = [c if c in ("animal", "stage") else f"freezing % {c}" for c in fr.columns]
        counts = counts.merge(fr, on=["animal", "stage"], how="left")
    query_rows = lk.sql(README_QUERY)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cellsift report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}img{max-width:100%;border:1px solid #ddd}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #eee}"
        "pre{background:#f6f6f6;padding:8px}.row{display:flex;gap:12px;flex-wrap:wrap}.row a{flex:1 1 45%}",
        "</style></head><body>",
        f"<h1>cellsift report</h1><p>Lake <code>{html.escape(str(lk.root.resolve()))}</code>, "
        f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Good cells: "
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
    days = sorted(int(d) for d in summary["day"].dropna().unique())
    if len(days) >= 2 and lk.table_files("cell_registry"):
        late, early = days[-1], days[0]
        cross = lk.sql(CROSS_DAY_QUERY.format(day=late, earlier_day=early))
        n_before = int(cross["earlier_cs_plus_selective"].fillna(False).astype(bool).sum())
        n_found = int(cross["earlier_unit_id"].notna().sum())
        parts += [
            f"<h2>CS+-selective good cells on day {late} — and on day {early}?</h2>",
            f"<pre>{html.escape(CROSS_DAY_QUERY.format(day=late, earlier_day=early))}</pre>",
            f"<p>{len(cross)} cells on day {late}; {n_found} found on day {early} (cell registry), "
            f"{n_before} of them already CS+-selective then.</p>",
            _html_table(cross.drop(columns=["cohort"])),
        ]
    for (cohort, animal), fig_name in animal_figs.items():
        parts.append(f"<h2 id='{html.escape(animal)}'>{html.escape(animal)}</h2>")
        parts.append(f"<a href='{fig_name}'><img src='{fig_name}' alt='{html.escape(animal)} selectivity'></a>")
        for key, entry in figures.items():
            if key[0] != cohort or key[1] != animal:
                continue
            srow = sessions[(sessions["cohort"] == cohort) & (sessions["animal"] == animal) & (sessions["session"] == key[2])].iloc[0]
            parts.append(f"<h3>{html.escape(key[2])} — {html.escape(str(srow['stage']))}, day {int(srow['day'])}</h3><div class='row'>")
            for kind in ("footprints", "heatmaps"):
                name = entry.get(kind)
                if name:
                    parts.append(f"<a href='{name}'><img src='{name}' alt='{html.escape(kind)}'></a>")
            parts.append("</div>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    logger.info("report: %d sessions, %d animals -> %s", len(figures), len(animal_figs), index)
    return index
