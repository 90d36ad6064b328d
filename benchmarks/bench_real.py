"""The shipped model on real data: OOD share and calls on the Minian demo and a real CNMF-E ``neuron``.

Ingests ``../shared/data/real/minian_demo`` (410 Minian units, raw frames, 10 Hz after the
declared 2x temporal downsampling) and ``../shared/data/real/cnmfe_matlab_vergaloy/neuron1--1000.mat``
(27 CNMF-E components, no movie: scored by the ensemble's table-only model) into a fresh
lake, runs the pipeline and classifies with ``--model`` (default: the shipped model).
Prints per session the share of cells called good, the share flagged out of distribution
and the reasons; writes one montage per session (most confident good / bad, most
uncertain) to ``--figures``, for a person to judge the calls. No labels exist for these
sessions: there is no accuracy bar; the OOD share is reported (the bar of a model meant to
cover such data: <= 50 % flagged).

Usage::

    .venv/bin/python benchmarks/bench_real.py [--model default] [--figures docs/figures] [--quick]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, finish, make_parser  # noqa: E402

NAME = "bench_real"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MINIAN = REAL / "minian_demo"
NEURON = REAL / "cnmfe_matlab_vergaloy" / "neuron1--1000.mat"


def _manifest(root: Path, quick: bool) -> Path:
    rows = [
        "cohort,animal,session,stage,day,video,extraction,fps,temporal_downsample",
        f"real,demo,cnmfe_neuron,baseline,1,,{NEURON},,",
    ]
    if not quick:
        rows.append(
            f"real,demo,minian_demo,baseline,1,{MINIAN / 'raw_video_ffv1'},{MINIAN / 'minian_output'},20,2"
        )
    path = root / "cohort.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--model", default="default", help="model to score with (default: the shipped one)")
    parser.add_argument("--figures", type=Path, default=None, help="folder for the montages (default: --out)")
    args = parser.parse_args(argv)
    if not NEURON.is_file() or not MINIAN.is_dir():
        print(f"error: the real data are not under {REAL}", file=sys.stderr)
        return 2

    from distributed import Client, LocalCluster

    import cellsift
    from cellsift.pipeline.classify import classified_montage, classify_lake
    from cellsift.pipeline.ingest import ingest_cohort
    from cellsift.pipeline.stages import run_pipeline

    work = Path(tempfile.mkdtemp(prefix="cellsift-bench-real-"))
    t0 = time.perf_counter()
    try:
        lake = work / "lake"
        results = ingest_cohort(_manifest(work, args.quick), lake)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            print(f"error: ingest failed: {failed[0].error}", file=sys.stderr)
            return 1
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            run_pipeline(lake, client=client)
            classify_lake(lake, args.model, client=client)
        cells = cellsift.open_lake(lake).cells
        out: dict[str, Any] = {"model": args.model, "sessions": {}}
        bars: list[Bar] = []
        figures = Path(args.figures or args.out)
        figures.mkdir(parents=True, exist_ok=True)
        for session, group in cells.groupby("session"):
            scored = group[~group["overlap_flag"].fillna(False).astype(bool)]
            row = {
                "n_cells": len(group),
                "frac_good": round(float((group["label"] == "good").mean()), 3),
                "frac_ood": round(float(scored["ood_flag"].fillna(False).astype(bool).mean()), 3),
                "median_ood_score": round(float(scored["ood_score"].median()), 3),
                "reasons": group.loc[group["label"] == "bad", "reason"].value_counts().to_dict(),
                "model_id": str(group["model_id"].iloc[0]),
            }
            png = classified_montage(lake, figures / f"real_{session}_montage.png", session=str(session))
            row["montage"] = str(png)
            out["sessions"][str(session)] = row
            print(
                f"{session:<14} {row['n_cells']:>4} cells  good {100 * row['frac_good']:5.1f} %  "
                f"OOD {100 * row['frac_ood']:5.1f} %  reasons {row['reasons']}  -> {png}"
            )
            bars.append(Bar(f"OOD-flagged share, {session}", row["frac_ood"], 0.5, op="<="))
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return finish(NAME, args, out, bars)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
