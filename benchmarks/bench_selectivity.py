"""Precision and recall of the README's CS+-selective query against the simulator's truth.

Usage::

    .venv/bin/python benchmarks/bench_selectivity.py                   # simulate the demo cohort in /tmp
    .venv/bin/python benchmarks/bench_selectivity.py --work DIR        # ... in DIR (raw/ and lake/, rebuilt)
    .venv/bin/python benchmarks/bench_selectivity.py --lake LAKE       # an existing simulated lake
    .venv/bin/python benchmarks/bench_selectivity.py --classify default # label cells with a classifier first
    .venv/bin/python benchmarks/bench_selectivity.py --quick           # 1 animal, 600 frames

Results go to ``<out>/bench_selectivity.json`` (``--out``, default ``benchmarks/results/``).

Without ``--lake`` it simulates the demo cohort (3 animals x conditioning/safety/
extinction, 2000 frames, seed 0 unless told otherwise), ingests it, runs the pipeline
and ``build_analysis_tables`` on a local Dask cluster, then runs the README query
(:data:`cellsift.pipeline.analysis.report.README_QUERY`) and compares the cells it returns with
the units the simulator made CS+-selective: ``truth.json`` units whose ``label`` is
``good`` and whose ``tone_selectivity`` is ``"CS+"``. It prints per animal and stage and
in total:

* ``returned``, ``true``, ``tp``, ``precision = tp / returned``, ``recall = tp / true``;
* ``prec_cells``: precision counting only returned units that are real cells (what
  the query's precision becomes with a perfect good/bad classifier);
* ``recall_active``: recall over true CS+ cells that the simulator did not silence in
  that session;
* what the false positives are (artifacts, ``both`` cells, ``none`` cells, ``CS-`` cells);
* the accuracy of the ``cell_registry`` (same neuron <-> same ``cell_key``) and the
  answer to the issue's cross-day question.

With ``--classify MODEL`` the cells are first labelled by that classifier
(``cellsift.pipeline.classify.classify_lake``) and the analysis tables rebuilt, so
``is_good`` follows the classifier instead of the overlap rule.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from _common import finish, fresh_dir, make_parser  # noqa: E402


def _simulate(out: Path, *, animals: int, frames: int, seed: int, workers: int) -> Path:
    from distributed import Client, LocalCluster

    from cellsift.pipeline.analysis import build_analysis_tables
    from cellsift.pipeline.ingest import ingest_cohort
    from cellsift.pipeline.sim import (
        FREEZING_FILE,
        SimulationConfig,
        simulate_cohort,
        simulate_freezing,
        write_freezing_csv,
    )
    from cellsift.pipeline.stages import run_pipeline

    raw, lake = fresh_dir(out / "raw", what="simulated input"), fresh_dir(out / "lake", what="lake")
    t0 = time.perf_counter()
    simulate_cohort(raw, SimulationConfig(n_animals=animals, n_frames=frames, seed=seed))
    # until the simulator writes freezing itself: add it beside each events file
    for events in sorted(raw.glob("*/*/events.csv")):
        if (events.parent / FREEZING_FILE).exists():
            continue
        truth = json.loads((events.parent / "truth.json").read_text())
        rng = np.random.default_rng([seed, truth["day"], int(truth["animal"][1:])])
        freezing = simulate_freezing(
            pd.read_csv(events), n_frames=truth["n_frames"], fps=truth["fps"], stage=truth["stage"], rng=rng
        )
        write_freezing_csv(events.parent / FREEZING_FILE, freezing, truth["fps"])
    print(f"simulated {animals} animals in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    failed = [r for r in ingest_cohort(raw, lake) if r.status == "failed"]
    if failed:
        raise SystemExit(f"ingest failed: {failed}")
    print(f"ingested in {time.perf_counter() - t0:.0f} s", flush=True)
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        with Client(cluster) as client:
            t0 = time.perf_counter()
            summary = run_pipeline(lake, client=client)
            print(
                f"pipeline: {summary.count('processed')} sessions in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            t0 = time.perf_counter()
            analysis = build_analysis_tables(lake, client=client)
            print(f"{analysis} in {time.perf_counter() - t0:.1f} s", flush=True)
            if analysis.n_failed:
                raise SystemExit("\n".join(o.error for o in analysis.outcomes if o.error))
    return lake


def _truth(lake: Path) -> pd.DataFrame:
    import cellsift

    rows = []
    for rec in cellsift.open_lake(lake).catalog.itertuples():
        folder = Path(rec.labels or rec.events).parent
        path = folder / "truth.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: this lake is not a simulated cohort")
        truth = json.loads(path.read_text())
        silent = {c["index"]: c.get("silent", False) for c in truth["cells"]}
        for u in truth["units"]:
            rows.append(
                {
                    "animal": rec.animal,
                    "session": rec.session,
                    "stage": rec.stage,
                    "day": rec.day,
                    "unit_id": u["unit_id"],
                    "true_cell": u.get("true_cell"),
                    "truth_label": u["label"],
                    "tone_selectivity": u.get("tone_selectivity") or "artifact",
                    "silent": bool(silent.get(u["true_cell"], False))
                    if u.get("true_cell") is not None
                    else False,
                }
            )
    frame = pd.DataFrame(rows)
    frame["true_cs_plus"] = (frame["truth_label"] == "good") & (frame["tone_selectivity"] == "CS+")
    return frame


def evaluate(lake: Path) -> pd.DataFrame:
    """Run the README query on ``lake`` and score it against the simulator's truth."""
    import cellsift
    from cellsift.pipeline.analysis import README_QUERY

    returned = cellsift.open_lake(lake).sql(README_QUERY)[["animal", "session", "unit_id"]]
    returned["returned"] = True
    truth = _truth(lake)
    df = truth.merge(returned, on=["animal", "session", "unit_id"], how="left")
    df["returned"] = df["returned"].fillna(False).astype(bool)
    stages = df.groupby("stage")["day"].min().sort_values().index.tolist()

    def score(g: pd.DataFrame) -> pd.Series:
        ret, true = g["returned"], g["true_cs_plus"]
        tp = int((ret & true).sum())
        ret_cells = ret & (g["truth_label"] == "good")
        active = true & ~g["silent"]
        fp = g[ret & ~true]
        kinds = fp.apply(lambda r: "artifact" if r["truth_label"] == "bad" else r["tone_selectivity"], axis=1)
        return pd.Series(
            {
                "returned": int(ret.sum()),
                "true": int(true.sum()),
                "tp": tp,
                "precision": tp / ret.sum() if ret.sum() else np.nan,
                "recall": tp / true.sum() if true.sum() else np.nan,
                "prec_cells": tp / ret_cells.sum() if ret_cells.sum() else np.nan,
                "recall_active": int((ret & active).sum()) / active.sum() if active.sum() else np.nan,
                "false_positives": ", ".join(f"{k} {v}" for k, v in kinds.value_counts().items()) or "-",
            }
        )

    per = df.groupby(["animal", "stage"]).apply(score, include_groups=False).reset_index()
    per["stage"] = pd.Categorical(per["stage"], stages, ordered=True)
    per = per.sort_values(["animal", "stage"])
    by_stage = df.groupby("stage").apply(score, include_groups=False).reset_index()
    by_stage.insert(0, "animal", "all")
    by_stage["stage"] = pd.Categorical(by_stage["stage"], stages, ordered=True)
    total = score(df).to_frame().T
    total.insert(0, "stage", "all")
    total.insert(0, "animal", "all")
    return pd.concat([per, by_stage.sort_values("stage"), total], ignore_index=True)


def registry_accuracy(lake: Path) -> dict[str, float]:
    """Pairs of real-cell units in different sessions of an animal: same neuron <-> same ``cell_key``."""
    import cellsift

    reg = cellsift.open_lake(lake).table("cell_registry")[["animal", "session", "unit_id", "cell_key"]]
    df = _truth(lake).merge(reg, on=["animal", "session", "unit_id"])
    df = df[(df["truth_label"] == "good") & df["true_cell"].notna()]
    tp = fp = fn = 0
    for _animal, g in df.groupby("animal"):
        a = g.merge(g, on="animal", suffixes=("", "_2"))
        a = a[a["session"] < a["session_2"]]
        same_cell = a["true_cell"] == a["true_cell_2"]
        same_key = a["cell_key"] == a["cell_key_2"]
        tp += int((same_cell & same_key).sum())
        fp += int((~same_cell & same_key).sum())
        fn += int((same_cell & ~same_key).sum())
    return {"pairs": tp + fn, "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)}


def cross_day(lake: Path) -> pd.DataFrame:
    """The issue's question on the last vs the first day, with the simulator's answer beside it."""
    import cellsift
    from cellsift.pipeline.analysis import CROSS_DAY_QUERY

    truth = _truth(lake)
    days = sorted(truth["day"].unique())
    answer = cellsift.open_lake(lake).sql(CROSS_DAY_QUERY.format(day=days[-1], earlier_day=days[0]))
    t = truth.set_index(["animal", "session", "unit_id"])
    answer["truly_cs_plus"] = [
        bool(t.loc[(r.animal, r.session, r.unit_id), "true_cs_plus"]) for r in answer.itertuples()
    ]
    return answer[
        [
            "animal",
            "unit_id",
            "cell_key",
            "earlier_unit_id",
            "earlier_cs_plus_selective",
            "earlier_selectivity",
            "truly_cs_plus",
        ]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--lake", type=Path, help="an existing lake of a simulated cohort (analysis tables built)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/cellsift-bench-selectivity"), help="raw/ and lake/"
    )
    parser.add_argument("--animals", type=int, default=3)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--classify", metavar="MODEL", help="label the cells with this classifier first")
    args = parser.parse_args(argv)
    if args.quick:
        args.animals, args.frames = 1, 600
    logging.basicConfig(level=logging.WARNING)
    lake = args.lake or _simulate(
        args.work, animals=args.animals, frames=args.frames, seed=args.seed, workers=args.workers
    )
    if args.classify:
        from cellsift.pipeline.analysis import build_analysis_tables
        from cellsift.pipeline.classify import classify_lake

        preds = classify_lake(lake, args.classify)
        print(f"classified {len(preds)} cells with {args.classify}; {build_analysis_tables(lake)}")
    from cellsift.pipeline.analysis import README_QUERY

    print("\nREADME query:\n" + README_QUERY + "\n")
    result = evaluate(lake)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format
    ):
        print(result.to_string(index=False))
        reg = registry_accuracy(lake)
        print(
            f"\ncell registry vs simulator identity: {reg['pairs']} same-neuron pairs across sessions, "
            f"precision {reg['precision']:.3f}, recall {reg['recall']:.3f}"
        )
        print("\nCS+-selective good cells on the last day, and on the first day (CROSS_DAY_QUERY):")
        print(cross_day(lake).to_string(index=False))
    table = json.loads(result.to_json(orient="records"))
    return finish("bench_selectivity", args, {"lake": str(lake), "scores": table, "registry": reg})


if __name__ == "__main__":
    sys.exit(main())
