"""Trust across domains: zero-shot scores on settings held out of training, the OOD flag, active learning.

1. **Held-out settings** — a model is trained (``--kind``, default ``features``) on
   simulated cohorts of one set of domains (rule-drawn artifacts only, cell diameters
   9-14 px, 15-25 Hz, noise x0.8-1.1), then scores, zero-shot, cohorts that each differ
   in one setting never seen in training: a pixel scale (22 px cells), a frame rate
   (7 Hz), an extraction path (a CNMF-style factorisation of the movie instead of
   rule-drawn artifacts), a noise level (x1.9); and one cohort that differs in all of
   them at once and has no raw traces (``all``). The shipped default model scores the
   same cohorts (they are inside or outside its card's ranges: said per cohort).
   Bars: the shipped default >= 0.95 balanced accuracy on every cohort inside its
   ranges; the held-out-trained model's numbers are reported (no bar: they show how far
   a model reaches beyond its training domains).
2. **OOD flag** — share of flagged cells on an in-range cohort with 4x longer sessions
   than training (bar <= 5 %) and on each held-out cohort; AUROC of the OOD score for
   in-range vs out-of-range cells.
3. **Active learning** — on the ``all`` cohort (outside the shipped model's noise and
   trace-unit ranges, CNMF-extracted, no raw traces), 1 / 2 / 5 / 10 % of the cells
   labelled, picked by ``cellsift review suggest``'s ranking or at random; the shipped
   default fine-tuned on them (``train --base default``: the adapter); balanced accuracy on
   the unlabelled rest. Bar: >= 0.93 with 5 % labelled by ``suggest``.

Usage::

    .venv/bin/python benchmarks/bench_domains.py [--work DIR] [--kind features|ensemble] [--quick]

Every lake is rebuilt in ``--work`` (default: a temporary folder) unless ``--reuse`` is
given and the folder's recorded recipe matches exactly. About 30-40 minutes on 2 cores
(``--quick``: two small cohorts, a few minutes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, finish, make_parser  # noqa: E402

NAME = "bench_domains"
FRACTIONS = (0.01, 0.02, 0.05, 0.10)


def _cohorts(quick: bool) -> tuple[list[Any], dict[str, Any], Any]:
    """(training cohorts, held-out cohorts by setting, in-range long-session cohort)."""
    from cellsift.pipeline.classify import CohortSpec

    small = {"n_animals": 2, "n_frames": 1500, "height": 128, "width": 128}
    if quick:
        small = {"n_animals": 1, "n_frames": 800, "height": 96, "width": 96}
    train = [
        CohortSpec("tr-a", seed=2101, cell_diameter_px=10.0, fps=20.0, noise_scale=0.9, **small),
        CohortSpec(
            "tr-b", seed=2202, cell_diameter_px=13.0, fps=15.0, noise_scale=1.1, trace_scale=0.2, **small
        ),
        CohortSpec(
            "tr-c", seed=2303, cell_diameter_px=11.5, fps=25.0, noise_scale=0.8, trace_scale=4.0, **small
        ),
    ]
    held = {
        "pixel_scale": CohortSpec(
            "ho-scale", seed=2404, cell_diameter_px=22.0, **{**small, "height": 192, "width": 192}
        ),
        "frame_rate": CohortSpec("ho-fps", seed=2505, cell_diameter_px=11.5, fps=7.0, **small),
        "extraction": CohortSpec("ho-cnmf", seed=2606, cell_diameter_px=11.5, extraction="cnmf", **small),
        "noise": CohortSpec("ho-noise", seed=2707, cell_diameter_px=11.5, noise_scale=1.9, **small),
        "all": CohortSpec(
            "ho-all",
            seed=2808,
            cell_diameter_px=20.0,
            fps=8.0,
            noise_scale=1.7,
            trace_scale=0.03,
            extraction="cnmf",
            write_c_raw=False,
            **{**small, "n_animals": 3 if not quick else 1, "height": 192, "width": 192},
        ),
    }
    if quick:
        held = {k: held[k] for k in ("extraction",)}
    long = CohortSpec(
        "in-long", seed=2909, cell_diameter_px=11.5, fps=20.0, **{**small, "n_frames": small["n_frames"] * 4}
    )
    return train, held, long


def _recipe_hash(cohorts: list[Any]) -> str:
    import cellsift

    text = json.dumps([asdict(c) for c in cohorts], sort_keys=True) + str(
        getattr(cellsift, "__version__", "")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_hash() -> str:
    """What the derived tables depend on beyond the simulated input: the feature revision."""
    from cellsift.pipeline.classify.inputs import FEATURE_REVISION

    return f"features-r{FEATURE_REVISION}"


def _lake(work: Path, name: str, cohorts: list[Any], *, reuse: bool) -> Path:
    """A lake of ``cohorts`` under ``work/name``: rebuilt unless ``reuse`` and its recipe matches.

    A reused lake whose derived tables were computed by another feature revision is
    processed again (``run`` with ``force``) from its ingested sessions.
    """
    from cellsift.pipeline.classify import build_simulated_lake

    folder = work / name
    stamp = folder / "recipe.sha256"
    run_stamp = folder / "run.stamp"
    digest = _recipe_hash(cohorts)
    if reuse and stamp.is_file() and stamp.read_text().strip() == digest:
        print(f"reusing {folder} (built from the same recipe, {digest})")
        if not run_stamp.is_file() or run_stamp.read_text().strip() != _run_hash():
            _rerun(folder / "lake")
            run_stamp.write_text(_run_hash())
        return folder / "lake"
    if folder.exists():
        print(f"rebuilding {folder} (recipe changed or --reuse not given)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    build_simulated_lake(folder / "lake", cohorts, raw_dir=folder / "raw", n_workers=2)
    shutil.rmtree(folder / "raw", ignore_errors=True)
    stamp.write_text(digest)
    run_stamp.write_text(_run_hash())
    print(f"built {name}: {len(cohorts)} cohort(s) in {time.perf_counter() - t0:.0f} s")
    return folder / "lake"


def _rerun(lake: Path) -> None:
    """Process every session of ``lake`` again (derived tables of an older feature revision)."""
    from distributed import Client, LocalCluster

    from cellsift.pipeline.stages import run_pipeline

    t0 = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        summary = run_pipeline(lake, client=client, force=True)
    if summary.n_failed:
        raise RuntimeError(f"re-running {lake} failed on {summary.n_failed} session(s)")
    print(f"re-processed {lake} for {_run_hash()} in {time.perf_counter() - t0:.0f} s")


def _cohort_data(model: Any, lake: Path, cohort: str) -> Any:
    """One cohort's labelled cells, prepared as ``model``'s card says (clips, crop, frame rate)."""
    from cellsift.pipeline.classify import load_cell_data

    card = model.require_card()
    data = load_cell_data(
        lake,
        cohorts=[cohort],
        clips=model.uses_clips,
        model_crop=card.clip_model_crop or 24,
        pool=card.clip_pool or 2,
        target_fps=card.fps if model.uses_clips and card.fps else None,
    )
    return data


def _score(model: Any, lake: Path, cohort: str) -> dict[str, Any]:
    """Zero-shot metrics of ``model`` on one cohort of ``lake`` (balanced accuracy, ROC-AUC, OOD)."""
    from cellsift.pipeline.classify import evaluate

    data = _cohort_data(model, lake, cohort)
    pred, m = evaluate(model, data)
    p = m["p_good"]
    return {
        "n": p["n"],
        "balanced_accuracy": p.get("balanced_accuracy"),
        "roc_auc": p.get("roc_auc"),
        "ood_frac": m["ood"]["frac_flagged"],
        "_pred": pred,
    }


def _in_card_ranges(card: Any, spec: Any) -> bool:
    ranges = dict(card.training).get("domain_ranges") or {}
    for name in ("cell_diameter_px", "fps", "noise_scale", "trace_scale"):
        value = getattr(spec, name)
        if name in ranges and value is not None and not ranges[name][0] <= float(value) <= ranges[name][1]:
            return False
    if (
        "extraction" in ranges
        and spec.extraction not in ranges["extraction"]
        and "mixed" not in ranges["extraction"]
    ):
        return False
    return True


def _ood_auroc(preds_in: list[Any], preds_out: list[Any]) -> float | None:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    s_in = np.concatenate([p["ood_score"].to_numpy(float) for p in preds_in]) if preds_in else np.zeros(0)
    s_out = np.concatenate([p["ood_score"].to_numpy(float) for p in preds_out]) if preds_out else np.zeros(0)
    if not len(s_in) or not len(s_out):
        return None
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    return float(roc_auc_score(y, np.nan_to_num(np.r_[s_in, s_out], nan=0.0)))


def _active_learning(model: Any, lake: Path, cohort: str, *, seeds: int) -> dict[str, Any]:
    """Balanced accuracy on the unlabelled rest after fine-tuning on suggested vs random labels."""
    import numpy as np

    from cellsift.pipeline.classify import evaluate, fine_tune
    from cellsift.pipeline.review import SuggestParams, rank_cells

    data = _cohort_data(model, lake, cohort)
    table = data.table.assign(p_good=model.predict_proba(data), ood_flag=model.ood_scores(data)[1])
    n_max = max(2, int(round(max(FRACTIONS) * len(data))))
    order, _ = rank_cells(table, np.zeros(len(table), dtype=bool), SuggestParams(greedy_limit=n_max))
    out: dict[str, Any] = {}
    for frac in FRACTIONS:
        n = max(2, int(round(frac * len(data))))
        row: dict[str, Any] = {"n_labels": n}
        picks = {"suggest": [np.asarray(order[:n])]}
        picks["random"] = [np.random.default_rng(s).permutation(len(data))[:n] for s in range(seeds)]
        for how, sets in picks.items():
            scores = []
            for idx in sets:
                rest = np.setdiff1d(np.arange(len(data)), idx)
                sub = data.take(idx)
                if np.bincount(np.asarray(sub.y, dtype=int), minlength=2).min() < 2:  # too few of a class
                    tuned = model
                else:
                    tuned = fine_tune(model, sub, seed=0)
                _, m = evaluate(tuned, data.take(rest))
                scores.append(m["p_good"]["balanced_accuracy"])
            row[how] = round(float(np.mean(scores)), 4)
        _, m0 = evaluate(model, data)
        row["zero_shot"] = m0["p_good"]["balanced_accuracy"]
        out[f"{int(frac * 100)}%"] = row
        print(
            f"  active learning {frac:>4.0%} ({n} labels): suggest {row['suggest']:.3f}  random {row['random']:.3f}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the simulated lakes (default: temporary)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse lakes in --work built from the same recipe"
    )
    parser.add_argument(
        "--kind",
        default="features",
        choices=("features", "ensemble"),
        help="model trained on the training domains",
    )
    parser.add_argument("--default-model", default="default", help="shipped model scored zero-shot")
    parser.add_argument(
        "--random-seeds", type=int, default=3, help="random label draws averaged per fraction"
    )
    parser.add_argument("--build-only", action="store_true", help="build the lakes (with --work) and stop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from cellsift.pipeline.classify import DEFAULT_RECIPE, LabelSpec, load_cell_data, load_model, train_model

    work = args.work or Path(tempfile.mkdtemp(prefix="cellsift-bench-domains-"))
    train, held, long = _cohorts(args.quick)
    t0 = time.perf_counter()
    train_lake = _lake(work, "train", train, reuse=args.reuse)
    test_lake = _lake(work, "test", [*held.values(), long], reuse=args.reuse)
    if args.build_only:
        print(
            f"lakes built in {work} ({time.perf_counter() - t0:.0f} s); run again with --work {work} --reuse"
        )
        return 0

    recipe = DEFAULT_RECIPE
    data = load_cell_data(
        train_lake,
        labels=LabelSpec(sources=("simulator",)),
        clips=args.kind == "ensemble",
        target_fps=recipe.fps if args.kind == "ensemble" else None,
    )
    t_train = time.perf_counter()
    model = train_model(
        data, args.kind, seed=0, model_id=f"bench-domains-{args.kind}", clip_config=recipe.clip_config
    )
    print(f"trained a {args.kind} model on {len(data)} cells in {time.perf_counter() - t_train:.0f} s")
    default = load_model(args.default_model)
    dcard = default.require_card()

    results: dict[str, Any] = {"kind": args.kind, "n_train_cells": len(data), "cohorts": {}}
    bars: list[Bar] = []
    preds_in: list[Any] = []
    preds_out: list[Any] = []
    print(
        f"{'cohort':<16}{'setting':<13}{'model':<9}{'n':>5}{'bal.acc':>9}{'ROC-AUC':>9}{'OOD %':>7}  in default's ranges"
    )
    for setting, spec in [*held.items(), ("long_sessions", long)]:
        inside = _in_card_ranges(dcard, spec)
        row: dict[str, Any] = {"spec": asdict(spec), "in_default_ranges": inside}
        for label, mdl in (("heldout", model), ("default", default)):
            r = _score(mdl, test_lake, spec.cohort)
            pred = r.pop("_pred")
            row[label] = r
            if label == "heldout":
                (preds_in if setting == "long_sessions" else preds_out).append(pred)
            print(
                f"{spec.cohort:<16}{setting:<13}{label:<9}{r['n']:>5}{r['balanced_accuracy'] or float('nan'):>9.3f}"
                f"{r['roc_auc'] or float('nan'):>9.3f}{100 * (r['ood_frac'] or 0):>7.1f}  {inside if label == 'default' else ''}"
            )
            if label == "default" and inside and r["balanced_accuracy"] is not None:
                bars.append(
                    Bar(f"default zero-shot on {spec.cohort} (in range)", r["balanced_accuracy"], 0.95)
                )
        results["cohorts"][setting] = row
    long_ood = results["cohorts"]["long_sessions"]["heldout"]["ood_frac"]
    bars.append(
        Bar("OOD flagged, in-range cohort with 4x longer sessions", float(long_ood or 0.0), 0.05, op="<=")
    )
    auroc = _ood_auroc(preds_in, preds_out)
    results["ood_auroc_in_vs_out"] = auroc
    print(f"OOD AUROC, in-range vs held-out-setting cells (held-out-trained model): {auroc}")
    if "all" in held:
        print("active learning on the 'all' cohort (unseen in every setting):")
        results["active_learning"] = curve = _active_learning(
            default, test_lake, held["all"].cohort, seeds=args.random_seeds
        )
        bars.append(Bar("fine-tuned on 5 % suggested labels, rest of 'all'", curve["5%"]["suggest"], 0.93))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return finish(NAME, args, results, bars)


if __name__ == "__main__":
    sys.exit(main())
