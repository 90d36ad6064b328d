"""Ingest throughput (frames/s) and peak resident memory for sessions of N and 10·N frames.

Each measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) belongs
to that ingest alone. Peak memory should not grow with session length beyond chunk
effects: the video is decoded and written block by block.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py [--frames 2000] [--factor 10] [--size 240]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from cellsift.pipeline.ingest import ingest_cohort
src, lake = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
results = ingest_cohort(src, lake)
elapsed = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"elapsed_s": elapsed, "peak_rss_mib": peak_kib / 1024,
                  "status": [r.status for r in results], "frames": sum(r.n_frames for r in results)}))
"""


def simulate(out: Path, n_frames: int, size: int) -> None:
    from cellsift.pipeline.sim import SimulationConfig, simulate_cohort

    simulate_cohort(
        out,
        SimulationConfig(
            n_animals=1, stages=("conditioning",), n_frames=n_frames, height=size, width=size, seed=1
        ),
    )


def measure(src: Path, lake: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(lake)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="N: frames of the short session")
    parser.add_argument("--factor", type=int, default=10, help="the long session has factor*N frames")
    parser.add_argument("--size", type=int, default=240, help="frame height = width (px)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.frames, args.frames * args.factor):
            src = Path(tmp) / f"src{n}"
            t0 = time.perf_counter()
            simulate(src, n, args.size)
            sim_s = time.perf_counter() - t0
            res = measure(src, Path(tmp) / f"lake{n}")
            if res["status"] != ["ingested"]:
                raise SystemExit(f"ingest failed: {res}")
            rows.append((n, res["frames"] / res["elapsed_s"], res["elapsed_s"], res["peak_rss_mib"], sim_s))
    print(f"ingest benchmark: {args.size}x{args.size} px, 1 session, FFV1 Miniscope V4 folder + CNMF-E .mat")
    print(f"{'frames':>8} {'frames/s':>10} {'ingest_s':>9} {'peak_rss_MiB':>13} {'simulate_s':>11}")
    for n, fps, el, rss, sim_s in rows:
        print(f"{n:>8} {fps:>10.0f} {el:>9.2f} {rss:>13.1f} {sim_s:>11.1f}")
    growth = rows[1][3] / rows[0][3]
    print(f"peak RSS ratio long/short: {growth:.2f} (session length ratio {args.factor})")
    print(f"self maxrss (parent): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
