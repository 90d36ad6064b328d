"""A 20-minute session end to end: ingest -> run -> classify -> analyze, per stage.

A simulated 608 x 608 px, 30 Hz session (36 000 frames = 20 minutes by default, about 400
units) goes through the four commands as a user runs them (``cellsift ingest``,
``cellsift run --no-classify``, ``cellsift run`` (which then only classifies) and
``cellsift analyze``), each a fresh process. Printed per stage: wall time, peak resident
memory of the whole process tree (Dask scheduler and workers included, psutil polling),
frames/s. Then the bytes the clip stage read from the movie (the zarr chunks it touched,
on disk and decoded) against the bytes the clips need, and the projected cost of a cohort
(``--animals`` x ``--sessions`` sessions like this one) on ``--cluster-workers`` workers.

``--frames`` runs a shorter session (the cost projects linearly in frames per stage,
which the JSON records); the lake is always rebuilt, the simulated input reused only
when its parameters match.

Usage::

    .venv/bin/python benchmarks/bench_session.py [--frames 36000] [--workers 2] [--quick]
        [--work DIR] [--out DIR] [--animals 30] [--sessions 6] [--cluster-workers 64]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, fresh_dir, make_parser, run_measured, simulated_session  # noqa: E402

NAME = "bench_session"
#: Cell density (per 10 000 px) that gives about 400 units (cells + artifacts) at 608 x 608.
DENSITY_400_UNITS = 7.2


def _cellsift() -> str:
    return str(Path(sys.executable).with_name("cellsift"))


def stage(label: str, cmd: list[str], frames: int) -> dict[str, Any]:
    """Run one command measured; a failure is recorded (``error``) and the next stages still run."""
    measured = run_measured(cmd)
    row = {
        "stage": label,
        "seconds": measured.seconds,
        "peak_rss_mib": measured.peak_rss_mib,
        "frames_per_s": frames / measured.seconds,
        "command": " ".join(cmd[1:]),
        "error": "",
    }
    if measured.returncode != 0:
        lines = [line for line in measured.stderr.splitlines() if line.strip()]
        row["error"] = lines[-1] if lines else f"exit status {measured.returncode}"
    print(
        f"{label:10s} {row['seconds']:8.1f} s  {row['frames_per_s']:8.0f} frames/s  peak RSS {row['peak_rss_mib']:6.0f} MiB"
        + (f"  FAILED: {row['error']}" if row["error"] else ""),
        flush=True,
    )
    return row


def clip_bytes(lake: Path) -> dict[str, Any]:
    """Bytes of movie the clip stage read (chunks touched) against the bytes its clips hold."""
    import numpy as np
    import xarray as xr

    store = next((lake / "sessions").rglob("*.zarr"))
    clips_path = next((lake / "clips").rglob("*.zarr"))
    movie = xr.open_zarr(store)["movie"]
    chunk = int(movie.encoding["chunks"][0])
    n_frames, height, width = (int(s) for s in movie.shape)
    item = movie.dtype.itemsize
    clips = xr.open_zarr(clips_path)
    peaks = np.asarray(clips["peak_frame"].values)
    valid = np.asarray(clips["valid"].values, dtype=bool)
    clip_frames, crop_y, crop_x = (int(clips.sizes[d]) for d in clips["clips"].dims[2:])
    before = clip_frames // 2  # n_before = n_after by default (10 + 1 + 10)
    touched: set[int] = set()
    for p in peaks[valid]:
        lo, hi = max(0, int(p) - before), min(n_frames, int(p) - before + clip_frames)
        touched.update(range(lo // chunk, (hi - 1) // chunk + 1))
    chunk_dir = store / "movie" / "c"
    on_disk = sum(f.stat().st_size for i in touched for f in (chunk_dir / str(i)).rglob("*") if f.is_file())
    all_disk = sum(f.stat().st_size for f in chunk_dir.rglob("*") if f.is_file())
    decoded = sum(min(chunk, n_frames - i * chunk) for i in touched) * height * width * item
    needed = int(valid.sum()) * clip_frames * crop_y * crop_x * item
    return {
        "movie_chunks": -(-n_frames // chunk),
        "chunks_touched": len(touched),
        "bytes_read_on_disk": on_disk,
        "bytes_read_decoded": decoded,
        "bytes_clips_need": needed,
        "movie_bytes_on_disk": all_disk,
        "movie_bytes_decoded": n_frames * height * width * item,
        "read_over_needed_decoded": decoded / needed if needed else None,
        "valid_clips": int(valid.sum()),
    }


def project(rows: list[dict[str, Any]], frames: int, args: Any) -> dict[str, Any]:
    """Cohort cost: every stage linear in frames, sessions spread over the cluster's workers."""
    cohort_sessions = args.animals * args.sessions
    per_session_20min = {r["stage"]: r["seconds"] * 36000 / frames for r in rows}
    one = sum(per_session_20min.values())
    waves = -(-cohort_sessions // args.cluster_workers)
    return {
        "sessions": cohort_sessions,
        "frames": cohort_sessions * 36000,
        "per_20min_session_s": per_session_20min,
        "one_session_one_worker_h": one / 3600,
        "cohort_one_worker_h": cohort_sessions * one / 3600,
        "cluster_workers": args.cluster_workers,
        "cohort_on_cluster_h": waves * one / 3600,
        "peak_rss_per_worker_mib": max(r["peak_rss_mib"] for r in rows),
        "assumes": "stage time linear in frames (measured at --frames, scaled to 36000); one session per "
        "worker at a time, sessions independent; a shared filesystem fast enough for every worker",
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--frames", type=int, default=36000, help="frames of the session (36000 = 20 min at 30 Hz)"
    )
    parser.add_argument("--size", type=int, default=608, help="frame height = width (px)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers of run and analyze")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/cellsift-bench-session"), help="input and lake"
    )
    parser.add_argument("--animals", type=int, default=30, help="cohort of the projection: animals")
    parser.add_argument(
        "--sessions", type=int, default=6, help="cohort of the projection: sessions per animal"
    )
    parser.add_argument("--cluster-workers", type=int, default=64, help="workers of the projected cluster")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.size = 300, 160
    src = simulated_session(
        args.work / f"sim{args.size}-{args.frames}",
        frames=args.frames,
        size=args.size,
        fps=30.0,
        seed=3,
        density=DENSITY_400_UNITS if args.size == 608 else None,
    )
    lake = fresh_dir(args.work / "lake", what="lake")
    exe = _cellsift()
    workers = ["--workers", str(args.workers)]
    t0 = time.perf_counter()
    rows = [
        stage("ingest", [exe, "ingest", str(src), "--lake", str(lake)], args.frames),
        stage(
            "run", [exe, "run", "--lake", str(lake), "--no-classify", "--no-progress", *workers], args.frames
        ),
        stage("classify", [exe, "run", "--lake", str(lake), "--no-progress", *workers], args.frames),
        stage("analyze", [exe, "analyze", "--lake", str(lake), *workers], args.frames),
    ]
    total = time.perf_counter() - t0
    units = _units(lake)
    io = clip_bytes(lake)
    print(
        f"clips: read {io['chunks_touched']} of {io['movie_chunks']} movie chunks, "
        f"{io['bytes_read_on_disk'] / 2**20:.0f} MiB on disk / {io['bytes_read_decoded'] / 2**20:.0f} MiB decoded, "
        f"for {io['bytes_clips_need'] / 2**20:.0f} MiB of clips ({io['valid_clips']} clips)"
    )
    cohort = project(rows, args.frames, args)
    print(
        f"projection: {cohort['sessions']} sessions of 20 min: {cohort['one_session_one_worker_h']:.2f} h per session "
        f"on one worker, {cohort['cohort_one_worker_h']:.0f} h on one worker, "
        f"{cohort['cohort_on_cluster_h']:.1f} h on {args.cluster_workers} workers"
    )
    results = {
        "frames": args.frames,
        "size": args.size,
        "units": units,
        "stages": rows,
        "total_s": total,
        "clip_io": io,
        "projection": cohort,
    }
    failed = [r["stage"] for r in rows if r["error"]]
    status = finish(NAME, args, results)
    if failed:
        print(f"stages failed: {', '.join(failed)} (their times are not a measurement)", file=sys.stderr)
        return 1
    return status


def _units(lake: Path) -> int:
    import sqlite3

    with sqlite3.connect(lake / "catalog.sqlite") as con:
        row = con.execute("select sum(n_units) from sessions").fetchone()
    return int(row[0] or 0)


if __name__ == "__main__":
    raise SystemExit(main())
