"""Figures of evaluation reports (matplotlib, Agg backend): learning curves, ROC and PR
curves, calibration, confusion matrix, the capstone comparison and clip montages.

Each function draws one PNG into a folder and returns its file name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.metrics import binary_metrics
from cellsift.schemas import InputFormatError

__all__ = [
    "MONTAGE_FILE",
    "calibration_figure",
    "capstone_figure",
    "capstone_learning_curve_figure",
    "confusion_figure",
    "learning_curves_figure",
    "LEARNING_CURVES_FILE",
    "montage",
    "pyplot",
    "roc_pr_figure",
]

#: File name of a clip montage.
MONTAGE_FILE: Final = "montage.png"
#: File name of learning curves (per epoch, or accuracy against training-set size).
LEARNING_CURVES_FILE: Final = "learning_curves.png"


def pyplot(*, force: bool = True) -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=force)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def learning_curves_figure(
    plt: Any, out: Path, histories: Mapping[str, Sequence[Mapping[str, float]]]
) -> str:
    """Training (and validation) loss and validation balanced accuracy per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        axes[0].plot(ep, [h["train_loss"] for h in hist], label=f"{name} train")
        if "valid_loss" in hist[0]:
            axes[0].plot(ep, [h["valid_loss"] for h in hist], "--", label=f"{name} validation")
            axes[1].plot(ep, [h["valid_balanced_accuracy"] for h in hist], label=name)
    axes[0].set(xlabel="epoch", ylabel="loss", title="Learning curves (clip network)")
    axes[1].set(xlabel="epoch", ylabel="balanced accuracy", title="Validation", ylim=(0.4, 1.0))
    axes[0].legend(fontsize=7)
    return _save(plt, fig, out, LEARNING_CURVES_FILE)


def capstone_learning_curve_figure(plt: Any, out: Path, capstone: pd.DataFrame) -> str:
    """Accuracy (%) against the number of labelled training cells: each model's test and
    training accuracy, and the capstone's test accuracy at its own training sizes."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    cap = capstone.drop_duplicates("trial")
    cap_n = cap["capstone_n_train"] if "capstone_n_train" in cap else cap["n_train"]
    ax.plot(cap_n, cap["capstone_test_accuracy"], "s:", color="grey", label="capstone test (GoogLeNet+LSTM)")
    for name in dict.fromkeys(capstone["model"]):
        rows = capstone[capstone["model"] == name].sort_values("n_train")
        (line,) = ax.plot(rows["n_train"], rows["test_accuracy"], "o-", label=f"cellsift {name} test")
        ax.plot(
            rows["n_train"],
            rows["train_accuracy"],
            "--",
            color=line.get_color(),
            alpha=0.6,
            label=f"{name} train",
        )
    ax.set(
        xlabel="labelled training cells (balanced)",
        ylabel="accuracy (%)",
        ylim=(0, 102),
        title="Learning curve: accuracy against training-set size",
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, out, LEARNING_CURVES_FILE)


def roc_pr_figure(
    plt: Any, out: Path, y: np.ndarray, pred: pd.DataFrame, cols: Sequence[str], metrics: Mapping[str, Any]
) -> str:
    """ROC and precision-recall curves of the probability columns ``cols`` (good = positive)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for col in cols:
        fpr, tpr, _ = roc_curve(y, pred[col])
        m = metrics.get(col, {}) if isinstance(metrics.get(col), Mapping) else {}
        axes[0].plot(fpr, tpr, label=f"{col} (AUC {m.get('roc_auc', float('nan')) or float('nan'):.3f})")
        prec, rec, _ = precision_recall_curve(y, pred[col])
        axes[1].plot(rec, prec, label=f"{col} (AP {m.get('pr_auc_good', float('nan')) or float('nan'):.3f})")
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (good = positive)")
    axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall (good)")
    for ax in axes:
        ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, out, "roc_pr.png")


def calibration_figure(plt: Any, out: Path, y: np.ndarray, pred: pd.DataFrame, cols: Sequence[str]) -> str:
    """Fraction of good cells against the mean predicted ``p_good``, in 10 bins."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for col in cols:
        cal = binary_metrics(y, pred[col].to_numpy())["calibration"]
        xs = [a for a, b in zip(cal["bin_mean_p"], cal["bin_frac_good"], strict=True) if a is not None]
        ys = [b for a, b in zip(cal["bin_mean_p"], cal["bin_frac_good"], strict=True) if a is not None]
        ax.plot(xs, ys, "o-", label=col)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="predicted p_good", ylabel="fraction good", title="Calibration")
    ax.legend(fontsize=8)
    return _save(plt, fig, out, "calibration.png")


def confusion_figure(plt: Any, out: Path, matrix: Sequence[Sequence[int]]) -> str:
    """The 2x2 confusion matrix (rows true bad/good, columns predicted bad/good)."""
    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=12)
    ax.set_xticks([0, 1], ["bad", "good"])
    ax.set_yticks([0, 1], ["bad", "good"])
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(plt, fig, out, "confusion.png")


def capstone_figure(plt: Any, out: Path, capstone: pd.DataFrame) -> str:
    """Test accuracy per training-set size: the capstone's bars next to cellsift's models."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    models = list(dict.fromkeys(capstone["model"]))
    sizes = list(dict.fromkeys(capstone["n_train"]))
    width = 0.8 / (len(models) + 1)
    x = np.arange(len(sizes))
    cap = capstone.drop_duplicates("n_train").set_index("n_train").loc[sizes, "capstone_test_accuracy"]
    ax.bar(x, cap.to_numpy(), width, label="capstone (GoogLeNet+LSTM)", color="grey")
    for i, name in enumerate(models):
        vals = capstone[capstone["model"] == name].set_index("n_train").loc[sizes, "test_accuracy"]
        ax.bar(x + (i + 1) * width, vals.to_numpy(), width, label=f"cellsift {name}")
    ax.axhline(90, ls=":", color="k")
    ax.set_xticks(x + width * len(models) / 2, [str(s) for s in sizes])
    ax.set(
        xlabel="labelled training cells",
        ylabel="test accuracy (%)",
        ylim=(0, 100),
        title="Capstone protocol: 56 held-out cells",
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, out, "capstone.png")


#: dF/sigma shown from this (dark) ...
MONTAGE_VMIN: Final = -2.0
#: ... to this (bright): one scale for every tile, so tiles compare.
MONTAGE_VMAX: Final = 10.0


def _tile_text(
    pred: pd.DataFrame, data: CellData, i: int, threshold: float, width: int = 24
) -> tuple[str, str]:
    """Title (``p_good``, call or truth) and caption (animal / session, unit, full reason) of tile ``i``."""
    import textwrap

    def col(name: str) -> Any:
        if name in pred:
            return pred[name].iloc[i]
        return data.table[name].iloc[i] if name in data.table else None

    p = float(pred["p_good"].iloc[i])
    truth = {1: "true good", 0: "true bad"}.get(int(pred["y"].iloc[i]), None)
    title = f"p_good {p:.2f}: {'good' if p >= threshold else 'bad'}" + (f" ({truth})" if truth else "")
    place = "/".join(str(v) for v in (col("animal"), col("session")) if v is not None)
    lines = textwrap.wrap(place, width) if place else []
    lines.append(f"unit {col('unit_id')}")
    reason = col("reason")
    if isinstance(reason, str) and reason:
        lines += textwrap.wrap(reason.replace("_", " "), width)
    return title, "\n".join(lines)


def _montage_colour_bars(plt: Any, fig: Any, axes: Any, p_norm: Any, threshold: float) -> None:
    """The montage's colour bars: ``p_good`` (tile frames, threshold marked) and dF/sigma (images)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    p_cmap = plt.get_cmap("RdYlGn")
    cbar = fig.colorbar(
        ScalarMappable(p_norm, p_cmap), ax=axes, shrink=0.6, aspect=30, pad=0.01, location="right"
    )
    cbar.set_label("p_good (tile frame colour)", fontsize=8)
    cbar.ax.axhline(threshold, color="k", lw=1.5)
    ticks = [t for t in (0.0, 0.25, 0.5, 0.75, 1.0) if abs(t - threshold) > 0.08]
    cbar.set_ticks(sorted([*ticks, threshold]))
    cbar.set_ticklabels(
        [f"{t:.2f} threshold" if t == threshold else f"{t:g}" for t in sorted([*ticks, threshold])]
    )
    cbar.ax.tick_params(labelsize=7)
    img = fig.colorbar(
        ScalarMappable(Normalize(MONTAGE_VMIN, MONTAGE_VMAX), plt.get_cmap("magma")),
        ax=axes,
        shrink=0.35,
        aspect=20,
        pad=0.01,
        location="right",
        anchor=(0.0, 0.0),
    )
    img.set_label("dF/sigma", fontsize=8)


def montage(
    plt: Any,
    pred: pd.DataFrame,
    data: CellData,
    out: Path,
    n: int,
    threshold: float,
    *,
    model_id: str | None = None,
) -> str:
    """Peak frames of the most confident good/bad cells and the most uncertain cells.

    Each tile shows the cell's strongest transient (mean of the peak frame and the two
    after it, in dF/sigma on one colour scale for all tiles) with the footprint contour;
    its frame is coloured by ``p_good`` (colour bar, decision threshold marked); the
    title gives ``p_good`` (and the truth, if labelled) and the caption the animal,
    session, unit and full predicted artifact reason.

    Parameters
    ----------
    plt
        ``matplotlib.pyplot`` (from :func:`pyplot`).
    pred
        Per cell (row-aligned with ``data``): ``p_good``, ``y`` (-1 unlabelled),
        ``unit_id`` and, optionally, ``animal``, ``session`` (else read from
        ``data.table``) and ``reason``.
    data
        The cells with their clips.
    out
        Folder of the figure.
    n
        Cells per row.
    threshold
        The model's decision threshold on ``p_good`` (stated in the title; ``p_good``
        nearest it is "most uncertain").
    model_id
        Named in the title, if given.

    Returns
    -------
    str
        ``"montage.png"``.

    Raises
    ------
    InputFormatError
        The cells come without clips.
    """
    from matplotlib.colors import TwoSlopeNorm

    if data.clips is None:
        raise InputFormatError(
            "a montage needs the cells' clips", field="clips", fix="load the cells with clips=True"
        )
    p = pred["p_good"].to_numpy()
    order = np.argsort(p)
    rows = {
        "most confident good": order[::-1][:n],
        "most confident bad": order[:n],
        "most uncertain": np.argsort(np.abs(p - threshold))[:n],
    }
    c = data.clips
    nb = c.n_before
    p_cmap = plt.get_cmap("RdYlGn")
    p_norm = TwoSlopeNorm(vcenter=min(max(threshold, 0.01), 0.99), vmin=0.0, vmax=1.0)  # yellow: threshold
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.75 * n + 1.6, 2.4 * len(rows) + 0.6), squeeze=False, layout="constrained"
    )
    for r, (row_title, idx) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(idx):
                ax.set_axis_off()
                continue
            i = int(idx[j])
            k = int(np.argmax(c.valid[i])) if c.valid[i].any() else 0
            frame = c.dynamic[i, k, nb : nb + 3].astype(np.float32).mean(axis=0)
            ax.imshow(frame, cmap="magma", vmin=MONTAGE_VMIN, vmax=MONTAGE_VMAX)
            fp = c.static[i, k, 0].astype(np.float32)
            if fp.max() > 0:
                ax.contour(fp, levels=[0.3], colors="cyan", linewidths=0.7)
            for spine in ax.spines.values():
                spine.set_edgecolor(p_cmap(p_norm(float(p[i]))))
                spine.set_linewidth(4)
            title, caption = _tile_text(pred, data, i, threshold)
            ax.set_title(title, fontsize=7.5, pad=3)
            ax.set_xlabel(caption, fontsize=6.5, labelpad=2)
        axes[r, 0].set_ylabel(row_title, fontsize=9, fontweight="bold")
    _montage_colour_bars(plt, fig, axes, p_norm, threshold)
    who = f"model {model_id}, " if model_id else ""
    fig.suptitle(
        f"Classified cells ({who}decision threshold p_good = {threshold:.2f}: at or above is good)\n"
        "peak frames in dF/sigma, cyan: footprint contour, frame colour: p_good",
        fontsize=10,
    )
    fig.savefig(out / MONTAGE_FILE, dpi=110)
    plt.close(fig)
    return MONTAGE_FILE
