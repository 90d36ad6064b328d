"""The cell classifier's bar: held-out accuracy, the capstone table, zero-shot, CPU throughput.

1. **Held-out cohort** — the ensemble (and with it the feature model and the CNN+LSTM
   clip model) trained on the default recipe's simulated cohorts — by default the model
   shipped in the package, which was trained on exactly those; ``--retrain`` trains one
   anew — scores a cohort simulated with a seed and noise / density / background settings
   never used in training; every test animal is unseen. Prints balanced accuracy and
   ROC-AUC of each model and of the calibrated ensemble, overall and per animal.
   Bar: ensemble >= 0.95 / >= 0.98.
2. **Capstone protocol** — Table 2 replayed: train on 377, 300, 150 and 50 balanced
   labelled cells of the training cohorts, test on 56 cells (28/28) of the held-out
   cohort, side by side with the capstone's numbers. Bar: every size >= 90 % accuracy.
3. **Zero-shot** — the model shipped in the package (``default``) scores another cohort
   with different settings, no labels used. Bar: balanced accuracy >= 0.90. Section 3b
   repeats it on three more unseen cohorts (other seeds, noise, density, motion, and one
   at 10 Hz whose clips are resampled to the model's 20 Hz); ``--only-robustness`` runs
   just that.
4. **Throughput** — training cells/s on the CPU (every capstone fit, per model kind; and
   the full ensemble fit with ``--retrain``) and inference cells/s (``classify_session``
   over the held-out sessions, clips read from zarr).

Usage::

    .venv/bin/python benchmarks/bench_classifier.py [--work DIR] [--train-lake LAKE] [--retrain]
        [--skip-capstone] [--capstone-models ensemble,features,clips] [--out DIR] [--quick]

Results go to ``<out>/bench_classifier.json`` (default ``benchmarks/results/``); the exit
status is 1 when a bar is missed. ``--quick`` skips the capstone table and the robustness
section (it still simulates the two lakes). A lake under ``--work`` is reused only when
its recorded cohorts and cellsift version match, otherwise rebuilt.

``--train-lake`` reuses a lake built by ``train_default_model(..., work_dir=W)``
(``W/lake``); otherwise the training cohorts are simulated (about 3 minutes). The run
takes about 20-30 minutes on 2 CPU cores (plus about 10 with ``--retrain``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, finish, fresh_dir, make_parser  # noqa: E402

BAR = {
    "heldout_balanced_accuracy": 0.95,
    "heldout_roc_auc": 0.98,
    "capstone_accuracy": 90.0,
    "zero_shot": 0.90,
}


def _cohorts():
    from cellsift.pipeline.classify import CohortSpec

    heldout = CohortSpec("heldout", seed=9001, noise_scale=1.15, cell_density=20.0, background_scale=1.1)
    zero_shot = CohortSpec(
        "zeroshot",
        seed=4242,
        noise_scale=0.9,
        cell_density=12.0,
        background_scale=1.25,
        artifact_fraction=0.3,
        motion_px=2.0,
    )
    return heldout, zero_shot


def _robustness_cohorts():
    """More unseen cohorts for the shipped model: other seeds, settings and a 10 Hz one."""
    from cellsift.pipeline.classify import CohortSpec

    return [
        CohortSpec(
            "zs2",
            seed=7777,
            noise_scale=1.2,
            cell_density=15.0,
            background_scale=0.95,
            artifact_fraction=0.4,
            motion_px=1.2,
        ),
        CohortSpec(
            "zs3",
            seed=31337,
            noise_scale=0.85,
            cell_density=19.0,
            background_scale=1.15,
            artifact_fraction=0.35,
            motion_px=2.2,
        ),
        CohortSpec(
            "zs10hz",
            seed=2024,
            noise_scale=1.0,
            cell_density=16.0,
            background_scale=1.0,
            artifact_fraction=0.35,
            motion_px=1.0,
            n_frames=1000,
            fps=10.0,
        ),
    ]


def _robustness(work: Path, labels, results: dict) -> None:
    """3b. The shipped model on more unseen cohorts (clips resampled to its frame rate)."""
    from cellsift.pipeline.classify import evaluate_on_lake

    cohorts = _robustness_cohorts()
    lake = _lake(work / "robustness_lake", cohorts)
    print("\n== 3b. Zero-shot on more unseen cohorts (shipped model, no labels used)")
    out = {}
    for spec in cohorts:
        m = evaluate_on_lake(lake, "default", labels=labels, cohorts=[spec.cohort])
        out[spec.cohort] = {k: m[k] for k in ("p_features", "p_clips", "p_good")}
        print(
            f"  {spec.cohort:7s} (seed {spec.seed}, noise {spec.noise_scale}, density {spec.cell_density:g}, "
            f"motion {spec.motion_px} px, {spec.fps:g} Hz): ensemble {_fmt(m['p_good'])}"
        )
    results["robustness"] = out


def _lake(path: Path, cohorts) -> Path:
    import cellsift
    from cellsift.pipeline.classify import build_simulated_lake

    stamp = {"cohorts": [repr(c) for c in cohorts], "cellsift": str(getattr(cellsift, "__version__", "?"))}
    stamp_file = path.parent / (path.name + ".params.json")
    if (
        (path / "tables" / "cells").exists()
        and stamp_file.is_file()
        and json.loads(stamp_file.read_text()) == stamp
    ):
        print(f"reusing {path} (built from the same cohorts by the same cellsift version)")
        return path
    for old in (path, path.parent / (path.name + "-raw")):
        if old.exists():
            fresh_dir(old, what="lake" if old == path else "simulated input").rmdir()
    t0 = time.perf_counter()
    build_simulated_lake(path, cohorts, raw_dir=path.parent / (path.name + "-raw"))
    stamp_file.write_text(json.dumps(stamp))
    print(f"built {path} ({', '.join(c.cohort for c in cohorts)}) in {time.perf_counter() - t0:.0f} s")
    return path


def _fmt(m: dict) -> str:
    return f"balanced accuracy {m['balanced_accuracy']:.3f}  ROC-AUC {m['roc_auc']:.3f}  PR-AUC {m['pr_auc_good']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cellsift-bench-classifier"))
    parser.add_argument("--train-lake", type=Path, default=None, help="reuse a lake of the training cohorts")
    parser.add_argument("--skip-capstone", action="store_true")
    parser.add_argument("--capstone-models", default="ensemble,features,clips")
    parser.add_argument("--only-robustness", action="store_true", help="run only section 3b")
    parser.add_argument(
        "--retrain", action="store_true", help="train the held-out ensemble anew (else: the shipped model)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_capstone = True
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )

    import pandas as pd
    import torch

    from cellsift.pipeline.classify import (
        DEFAULT_RECIPE,
        LabelSpec,
        binary_metrics,
        capstone_protocol,
        classify_session,
        evaluate,
        format_capstone_table,
        load_cell_data,
        load_model,
        make_model,
        train_model,
        write_report,
    )

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA available: {torch.cuda.is_available()}"
    )
    args.work.mkdir(parents=True, exist_ok=True)
    labels = LabelSpec(sources=("simulator",))
    if args.only_robustness:
        out: dict = {"bar": BAR}
        _robustness(args.work, labels, out)
        return finish("bench_classifier", args, _plain(out))
    heldout, zero_shot = _cohorts()
    train_lake = args.train_lake or _lake(args.work / "train_lake", DEFAULT_RECIPE.cohorts)
    test_lake = _lake(args.work / "test_lake", [heldout, zero_shot])
    results: dict = {"bar": BAR}
    cfg = DEFAULT_RECIPE.clip_config

    # 1. held-out cohort ----------------------------------------------------------------
    train = load_cell_data(train_lake, labels=labels, model_crop=cfg.model_crop, pool=cfg.pool)
    test = load_cell_data(
        test_lake, labels=labels, model_crop=cfg.model_crop, pool=cfg.pool, cohorts=["heldout"]
    )
    print(
        f"\ntraining cells: {len(train)} ({int(train.y.sum())} good) from {train.table['cohort'].nunique()} "
        f"cohorts / {len(set(train.groups))} animals; held-out cells: {len(test)} ({int(test.y.sum())} good), "
        f"{len(set(test.groups))} unseen animals (overlap-flagged cells left out of both)"
    )
    train_s = None
    if args.retrain:
        t0 = time.perf_counter()
        model = train_model(train, "ensemble", seed=args.seed, clip_config=cfg)
        train_s = time.perf_counter() - t0
        origin = f"trained anew on {len(train)} cells in {train_s:.0f} s"
    else:
        model = load_model("default")
        recipe = [c["cohort"] for c in model.card.training.get("recipe", {}).get("cohorts", [])]
        origin = f"the shipped model '{model.model_id}', trained on cohorts {', '.join(recipe)}"
    test = load_cell_data(
        test_lake,
        labels=labels,
        model_crop=cfg.model_crop,
        pool=cfg.pool,
        cohorts=["heldout"],
        target_fps=model.card.fps,
    )
    pred, metrics = evaluate(model, test)
    write_report(args.work / "report_heldout", metrics=metrics, predictions=pred, model=model, data=test)
    print("\n== 1. Held-out cohort (seed 9001, noise 1.15, density 20, background 1.1; unseen animals)")
    print(f"  model: {origin}")
    for col, name in (
        ("p_features", "feature model (gradient boosting)"),
        ("p_clips", "clip model (CNN+LSTM)"),
        ("p_good", "ensemble (calibrated)"),
    ):
        print(f"  {name:36s} {_fmt(metrics[col])}")
    print(
        f"  ensemble decision threshold {model.decision_threshold:.2f}; confusion [[TN FP] [FN TP]] "
        f"{metrics['p_good']['confusion']['matrix']}; ECE {metrics['p_good']['ece']}"
    )
    for animal, m in metrics["per_animal"].items():
        print(
            f"    {animal}: n={m['n']}, balanced accuracy {m['balanced_accuracy']:.3f}, ROC-AUC {m['roc_auc']:.3f}"
        )
    print(
        f"  artifact reason accuracy (artifacts called bad): {metrics['reasons'].get('accuracy')} "
        f"on {metrics['reasons'].get('n')} cells"
    )
    results["heldout"] = {k: metrics[k] for k in ("p_features", "p_clips", "p_good", "per_animal", "reasons")}

    # 4a. throughput ---------------------------------------------------------------------
    results["throughput"] = {}
    if train_s is not None:
        results["throughput"].update(
            train_cells=len(train),
            train_seconds=round(train_s, 1),
            train_cells_per_second=round(len(train) / train_s, 2),
        )
    import cellsift

    lk = cellsift.open_lake(test_lake)
    cells = lk.cells
    n_cells, t_inf = 0, 0.0
    for row in lk.sessions[lk.sessions["cohort"] == "heldout"].itertuples():
        sub = cells[
            (cells["cohort"] == row.cohort)
            & (cells["animal"] == row.animal)
            & (cells["session"] == row.session)
        ]
        t1 = time.perf_counter()
        classify_session(sub, test_lake / row.clips_path, model, fps=row.fps)
        t_inf += time.perf_counter() - t1
        n_cells += len(sub)
    results["throughput"].update(
        infer_cells=n_cells, infer_seconds=round(t_inf, 2), infer_cells_per_second=round(n_cells / t_inf, 1)
    )

    # 2. capstone protocol ----------------------------------------------------------------
    if not args.skip_capstone:
        names = [m.strip() for m in args.capstone_models.split(",") if m.strip()]
        factories = {n: (lambda n=n: make_model(n, seed=args.seed, clip_config=cfg)) for n in names}
        table = capstone_protocol(train, test, factories, seed=args.seed)
        print("\n== 2. " + format_capstone_table(table))
        write_report(args.work / "report_capstone", metrics={"protocol": "capstone"}, capstone=table)
        results["capstone"] = table.to_dict(orient="records")

    # 3. zero-shot with the shipped model --------------------------------------------------
    default = load_model("default")
    zs = load_cell_data(
        test_lake,
        labels=labels,
        model_crop=default.card.clip_model_crop,
        pool=default.card.clip_pool,
        cohorts=["zeroshot"],
    )
    zpred, zmetrics = evaluate(default, zs)
    write_report(args.work / "report_zeroshot", metrics=zmetrics, predictions=zpred, model=default, data=zs)
    score, flag = default.ood_scores(zs)
    print(
        f"\n== 3. Zero-shot: shipped model '{default.model_id}' on cohort 'zeroshot' (seed 4242, noise 0.9, "
        f"density 12, background 1.25, motion 2 px), {len(zs)} cells, no labels used"
    )
    print(f"  ensemble {_fmt(zmetrics['p_good'])}; OOD-flagged cells {flag.mean():.1%}")
    results["zero_shot"] = {
        "model_id": default.model_id,
        **{k: zmetrics[k] for k in ("p_features", "p_clips", "p_good")},
        "ood_fraction": float(flag.mean()),
    }
    zd = load_cell_data(
        test_lake,
        labels=labels,
        model_crop=default.card.clip_model_crop,
        pool=default.card.clip_pool,
        cohorts=["heldout"],
    )
    zhm = binary_metrics(zd.y, default.predict_proba(zd), threshold=default.decision_threshold)
    print(f"  (shipped model on the held-out cohort: {_fmt(zhm)})")
    results["zero_shot"]["heldout_cohort"] = zhm
    if not args.quick:
        _robustness(args.work, labels, results)

    # 4. throughput ----------------------------------------------------------------------------
    tp = results["throughput"]
    print(f"\n== 4. CPU throughput ({torch.get_num_threads()} threads)")
    if "train_cells_per_second" in tp:
        print(
            f"  training, full ensemble incl. out-of-fold calibration: {tp['train_cells_per_second']:.1f} cells/s "
            f"({tp['train_cells']} cells, {tp['train_seconds']:.0f} s)"
        )
    card_m = dict(default.card.metrics)
    if card_m.get("train_seconds"):
        n_default = default.card.training.get("n_cells")
        print(
            f"  training, the shipped model (card): {n_default} cells in {card_m['train_seconds']:.0f} s "
            f"= {n_default / card_m['train_seconds']:.1f} cells/s"
        )
    if "capstone" in results:
        cap = pd.DataFrame(results["capstone"])
        for name, g in cap.groupby("model", sort=False):
            rate = g["n_train"].sum() / g["fit_seconds"].sum()
            tp[f"capstone_train_cells_per_second_{name}"] = round(float(rate), 2)
            print(
                f"  training, capstone fits ({name}): {rate:.1f} cells/s over {int(g['n_train'].sum())} cells"
            )
    print(
        f"  inference: {tp['infer_cells_per_second']:.0f} cells/s (classify_session of the ensemble, "
        f"clips read from zarr, {tp['infer_cells']} cells)"
    )

    # bar --------------------------------------------------------------------------------------
    ok = {
        "heldout ensemble balanced accuracy >= 0.95": metrics["p_good"]["balanced_accuracy"]
        >= BAR["heldout_balanced_accuracy"],
        "heldout ensemble ROC-AUC >= 0.98": metrics["p_good"]["roc_auc"] >= BAR["heldout_roc_auc"],
        "zero-shot balanced accuracy >= 0.90": zmetrics["p_good"]["balanced_accuracy"] >= BAR["zero_shot"],
    }
    if "capstone" in results:
        ens = [r for r in results["capstone"] if r["model"] == "ensemble"] or results["capstone"]
        ok["capstone: every size >= 90% (ensemble)"] = all(
            r["test_accuracy"] >= BAR["capstone_accuracy"] for r in ens
        )
    print("\n== Bar")
    for k, v in ok.items():
        print(f"  [{'x' if v else ' '}] {k}")
    results["bar_met"] = ok
    bars = [
        Bar(
            "heldout ensemble balanced accuracy",
            metrics["p_good"]["balanced_accuracy"],
            BAR["heldout_balanced_accuracy"],
        ),
        Bar("heldout ensemble ROC-AUC", metrics["p_good"]["roc_auc"], BAR["heldout_roc_auc"]),
        Bar("zero-shot balanced accuracy", zmetrics["p_good"]["balanced_accuracy"], BAR["zero_shot"]),
    ]
    if "capstone" in results:
        ens = [r for r in results["capstone"] if r["model"] == "ensemble"] or results["capstone"]
        bars.append(
            Bar(
                "capstone: lowest accuracy (ensemble, %)",
                min(r["test_accuracy"] for r in ens),
                BAR["capstone_accuracy"],
            )
        )
    return finish("bench_classifier", args, _plain(results), bars)


def _plain(results: dict) -> dict:
    """``results`` as plain JSON values (NaN -> None, anything else -> str)."""
    return json.loads(json.dumps(results, default=lambda o: None if o != o else str(o)))


if __name__ == "__main__":
    raise SystemExit(main())
