"""The figures of the lab-meeting report (:mod:`.report`), drawn from the analysis tables.

* :func:`footprint_figure`: every unit's footprint contour over the maximum projection,
  coloured by curation (good cells green; CS+-selective good cells magenta,
  CS--selective cyan; cells excluded from analysis red, dashed);
* :func:`heatmap_figure`: trial-averaged ΔF/F (each trial minus its pre-tone baseline,
  :func:`peri_event_matrix`) of the good cells around CS+ and CS- onsets, rows in the
  same order in both panels (sorted by CS+ response), with the population mean below;
* :func:`animal_figure` / :func:`cohort_figure`: the fraction of good cells that are
  CS+-selective and CS--selective across stages (:func:`selectivity_frame`), and
  freezing to CS+ / CS- when the ``behaviour`` table has it.

Figures are drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure`
(no pyplot state), so rendering is safe in worker processes and headless machines.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cellsift.catalog import LakeLayout
from cellsift.pipeline.analysis.events import TONE_EVENTS
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = [
    "peri_event_matrix",
    "stage_order",
    "footprint_figure",
    "session_traces",
    "heatmap_figure",
    "selectivity_frame",
    "animal_figure",
    "cohort_figure",
]

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
        base = (
            np.nanmean(seg[:, base_mask & valid], axis=1)
            if (base_mask & valid).any()
            else np.zeros(x.shape[0])
        )
        seg -= base[:, None]
        total[:, valid] += seg[:, valid]
        count[valid] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return grid, mean


def stage_order(frame: pd.DataFrame) -> list[str]:
    order = frame.groupby("stage")["day"].min().sort_values()
    return list(order.index)


def footprint_figure(group: Any, summary: pd.DataFrame, title: str, path: Path) -> str:
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
            ax.contour(
                xx,
                yy,
                fp[y0:y1, x0:x1],
                levels=[0.3 * peak],
                colors=[colour],
                linewidths=lw,
                linestyles=style,
            )
    n_good = int(summary["is_good"].sum())
    rule = summary["good_rule"].iloc[0] if len(summary) else ""
    handles = [
        Line2D([], [], color=_GOOD, lw=1.2, label=f"good ({n_good})"),
        Line2D(
            [],
            [],
            color=_TONE_COLOURS["CS+"],
            lw=2,
            label=f"good, CS+ selective ({int((summary['is_good'] & summary['cs_plus_selective']).sum())})",
        ),
        Line2D(
            [],
            [],
            color=_TONE_COLOURS["CS-"],
            lw=2,
            label=f"good, CS− selective ({int((summary['is_good'] & summary['cs_minus_selective']).sum())})",
        ),
        Line2D([], [], color=_EXCLUDED, lw=1, ls="--", label=f"excluded ({len(summary) - n_good})"),
    ]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False
    )
    ax.set_title(f"{title}\nfootprints over max projection (good = {rule.replace('_', ' ')})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def session_traces(lake_root: Path, row: pd.Series, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ΔF/F ``(len(units), n_frames)`` and frame times of chosen units from the ``traces`` table."""
    path = LakeLayout(lake_root).table_file("traces", str(row.cohort), str(row.animal), str(row.session))
    if not path.exists():
        raise LakeError(
            "the session has no traces table", path=path, fix="run 'cellsift analyze --lake LAKE' first"
        )
    if units.size == 0:
        table = pq.read_table(path, columns=["frame", "time_s"], filters=[("unit_id", "=", -1)])
    else:
        table = pq.read_table(
            path,
            columns=["unit_id", "frame", "time_s", "dff"],
            filters=[("unit_id", "in", [int(u) for u in units])],
        )
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


def heatmap_figure(
    lake_root: Path, row: pd.Series, summary: pd.DataFrame, events: pd.DataFrame, title: str, path: Path
) -> str | None:
    good = summary[summary["is_good"]].copy()
    tones = events[events["event"].isin(TONE_EVENTS)]
    if tones.empty:
        return None
    good["sort_key"] = good["cs_plus_response"].fillna(-np.inf)
    good = good.sort_values(["sort_key", "unit_id"], ascending=[False, True])
    units = good["unit_id"].to_numpy(dtype=np.int64)
    dff, time_s = session_traces(lake_root, row, units)
    dt = float(np.median(np.diff(time_s))) if time_s.size > 1 else 0.05
    tone_len = float((tones["offset_s"] - tones["onset_s"]).median())
    pre, post = min(5.0, max(2.0, tone_len)), tone_len + min(5.0, max(2.0, tone_len))
    mats = {}
    for tone in TONE_EVENTS:
        on = tones.loc[tones["event"] == tone, "onset_s"].to_numpy()
        if on.size and units.size:
            grid, mats[tone] = peri_event_matrix(
                dff, time_s, on, pre_s=pre, post_s=post, dt_s=dt, baseline_s=pre
            )
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
        rel = [
            float(s - p) for s in shocks["onset_s"] for p in plus["onset_s"] if 0 <= s - p <= tone_len + 1e-6
        ]
        shock_rel = float(np.median(rel)) if rel else None
    n = max(units.size, 1)
    fig = _figure(9.0, min(2.4 + 0.11 * n, 14.0) + 1.8)
    gs = fig.add_gridspec(2, 3, height_ratios=[min(2.4 + 0.11 * n, 14.0), 1.8], width_ratios=[1, 1, 0.05])
    image = None
    for j, tone in enumerate(TONE_EVENTS):
        ax = fig.add_subplot(gs[0, j])
        m = mats[tone]
        image = ax.imshow(
            m,
            aspect="auto",
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            interpolation="nearest",
            extent=(grid[0] - dt / 2, grid[-1] + dt / 2, units.size - 0.5, -0.5),
        )
        ax.axvline(0, color="k", lw=0.8)
        ax.axvline(tone_len, color="k", lw=0.8, ls="--")
        if tone == "CS+" and shock_rel is not None:
            ax.axvline(shock_rel, color="orange", lw=1.0, ls=":")
        sel = good[f"{'cs_plus' if tone == 'CS+' else 'cs_minus'}_selective"].to_numpy(dtype=bool)
        for r in np.flatnonzero(sel):
            ax.plot(
                grid[0] - 0.02 * (grid[-1] - grid[0]),
                r,
                marker=">",
                color=_TONE_COLOURS[tone],
                ms=4,
                clip_on=False,
            )
        n_trials = int((tones["event"] == tone).sum())
        ax.set_title(
            f"{tone} ({n_trials} trials): {int(sel.sum())} selective", color=_TONE_COLOURS[tone], fontsize=10
        )
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


def selectivity_frame(summary: pd.DataFrame) -> pd.DataFrame:
    good = summary[summary["is_good"]]
    agg = good.groupby(["cohort", "animal", "stage", "day"], as_index=False).agg(
        n_good=("unit_id", "size"),
        n_cs_plus=("cs_plus_selective", "sum"),
        n_cs_minus=("cs_minus_selective", "sum"),
    )
    agg["frac_cs_plus"] = agg["n_cs_plus"] / agg["n_good"].where(agg["n_good"] > 0)
    agg["frac_cs_minus"] = agg["n_cs_minus"] / agg["n_good"].where(agg["n_good"] > 0)
    return agg.sort_values(["cohort", "animal", "day"])


def _selectivity_axes(
    ax: Any,
    frame: pd.DataFrame,
    stages: list[str],
    *,
    label_prefix: str | None = "",
    alpha: float = 1.0,
    marker: str = "o",
    lw: float = 2.0,
) -> None:
    x = np.arange(len(stages))
    by_stage = frame.set_index("stage")
    for tone, col in (("CS+", "frac_cs_plus"), ("CS-", "frac_cs_minus")):
        y = [100.0 * float(by_stage.loc[s, col]) if s in by_stage.index else np.nan for s in stages]
        ax.plot(
            x,
            y,
            marker=marker,
            color=_TONE_COLOURS[tone],
            lw=lw,
            alpha=alpha,
            label=f"{label_prefix}{tone} selective" if label_prefix is not None else None,
        )
    ax.set_xticks(x, stages)
    ax.set_ylabel("% of good cells")


def _behaviour_axes(
    ax: Any, beh: pd.DataFrame, stages: list[str], *, alpha: float = 1.0, lw: float = 2.0, label: bool = True
) -> None:
    x = np.arange(len(stages))
    for tone in (*TONE_EVENTS, "pre_tone"):
        sub = beh[beh["trial_type"] == tone].set_index("stage")
        if sub.empty:
            continue
        y = [float(sub.loc[s, "freezing_pct"]) if s in sub.index else np.nan for s in stages]
        colour = _TONE_COLOURS.get(tone, "grey")
        ax.plot(
            x,
            y,
            marker="s",
            color=colour,
            lw=lw,
            alpha=alpha,
            ls="-" if tone in TONE_EVENTS else ":",
            label=(tone if tone in TONE_EVENTS else "pre-tone") if label else None,
        )
    ax.set_xticks(x, stages)
    ax.set_ylabel("freezing (%)")
    ax.set_ylim(0, 100)


def _top(sel: pd.DataFrame) -> float:
    """Upper y limit (%) for selectivity axes: room above the largest fraction."""
    values = 100.0 * sel[["frac_cs_plus", "frac_cs_minus"]].to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    return max(5.0, 1.25 * float(finite.max())) if finite.size else 5.0


def animal_figure(animal: str, sel: pd.DataFrame, beh: pd.DataFrame, stages: list[str], path: Path) -> str:
    has_beh = not beh.empty
    fig = _figure(9.0 if has_beh else 5.0, 3.6)
    axes = fig.subplots(1, 2 if has_beh else 1)
    axes = np.atleast_1d(axes)
    _selectivity_axes(axes[0], sel, stages)
    axes[0].set_ylim(0, _top(sel))
    for i, s in enumerate(stages):
        r = sel[sel["stage"] == s]
        if len(r):
            axes[0].annotate(
                f"{int(r['n_good'].iloc[0])} good",
                (i, 1.0),
                xycoords=("data", "axes fraction"),
                textcoords="offset points",
                xytext=(0, -10),
                ha="center",
                fontsize=7,
                color="grey",
            )
    axes[0].set_title(f"{animal}: tone-selective good cells", fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    if has_beh:
        _behaviour_axes(axes[1], beh, stages)
        axes[1].set_title(f"{animal}: freezing", fontsize=10)
        axes[1].legend(fontsize=8, frameon=False)
    return _save(fig, path)


def cohort_figure(sel: pd.DataFrame, beh: pd.DataFrame, stages: list[str], path: Path) -> str:
    has_beh = not beh.empty
    fig = _figure(9.0 if has_beh else 5.0, 3.8)
    axes = np.atleast_1d(fig.subplots(1, 2 if has_beh else 1))
    for _animal, sub in sel.groupby(["cohort", "animal"]):
        _selectivity_axes(axes[0], sub, stages, label_prefix=None, alpha=0.3, lw=0.8, marker=".")
    mean = sel.groupby("stage", as_index=False)[["frac_cs_plus", "frac_cs_minus"]].mean()
    _selectivity_axes(axes[0], mean, stages, label_prefix="mean ")
    axes[0].set_ylim(0, _top(sel))
    axes[0].set_title(
        f"Cohort: tone-selective good cells ({sel[['cohort', 'animal']].drop_duplicates().shape[0]} animals)",
        fontsize=10,
    )
    axes[0].legend(fontsize=8, frameon=False)
    if has_beh:
        for _animal, sub in beh.groupby(["cohort", "animal"]):
            _behaviour_axes(axes[1], sub, stages, alpha=0.3, lw=0.8, label=False)
        mean_b = beh.groupby(["stage", "trial_type"], as_index=False)["freezing_pct"].mean()
        _behaviour_axes(axes[1], mean_b, stages)
        axes[1].set_title("Cohort: freezing (thin: animals)", fontsize=10)
        axes[1].legend(fontsize=8, frameon=False)
    return _save(fig, path)
