"""Ingest speed against raw decoding, and flat peak memory over session length and unit count.

1. **Speed** — for each input (a simulated 160 px session, a simulated 608 px 30 Hz
   session, the real Minian demo when ``../shared/data/real/minian_demo`` exists), the
   rate at which PyAV alone decodes its AVIs on one thread (best of ``--repeats``) and the
   ingest rate (frames / seconds of ``ingest_cohort``, best of ``--repeats``, each in a
   fresh process whose libraries are imported before the clock starts). Bar: ingest >=
   0.9 x decode for the simulated sessions; the Minian demo is printed (its 1.2 GB of
   dense float64 footprints take longer to convert than its 1 000 frames to decode).
2. **Memory over session length** — peak RSS of the ingest process tree (psutil polling)
   for N and 10 N frames (simulated 160 px, extraction rewritten as MATLAB v7.3 so the
   traces are read a block of units at a time). Bar: within +-15 %. The same sessions
   with the simulator's v5 ``.mat`` (read whole by scipy) are printed for comparison.
3. **Memory over unit count** — peak RSS for 100 and 1 000 units (an extraction-only
   v7.3 session of ``--unit-frames`` frames, 512 x 512 px). Bar: within +-15 %.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py [--quick] [--out DIR] [--work DIR]
        [--frames 2000] [--factor 10] [--speed-frames 12000] [--large-frames 3000]
        [--unit-frames 12000] [--repeats 3] [--skip-large] [--skip-minian]

Simulated inputs are cached under ``--work`` and reused only when their parameters match;
lakes are always rebuilt. Timings on a shared machine are noisy: the JSON records the
load average.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, decode_rate, finish, fresh_dir, make_parser, python_child, simulated_session  # noqa: E402

NAME = "bench_ingest"
REAL_MINIAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "minian_demo"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import av, h5py, xarray, zarr, dask.array, scipy.io
from cellsift.pipeline.ingest import ingest_cohort
imports = time.perf_counter() - t0
t0 = time.perf_counter()
results = ingest_cohort(Path(sys.argv[1]), Path(sys.argv[2]))
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "imports_s": imports, "status": [r.status for r in results],
                  "errors": [r.error for r in results], "frames": sum(r.n_frames for r in results),
                  "units": sum(r.n_units for r in results)}))
"""


def ingest(source: Path, lake: Path) -> dict[str, Any]:
    """Ingest ``source`` into a fresh ``lake`` in a child process; time, peak RSS, counts."""
    if lake.exists():
        shutil.rmtree(lake)
    measured = python_child(CHILD, str(source), str(lake))
    out = measured.json_line()
    if measured.returncode != 0 or out.get("status") != ["ingested"] * len(out.get("status", [1])):
        raise SystemExit(f"ingest of {source} failed: {out or measured.stderr[-2000:]}")
    frames = int(out["frames"])
    return {
        "frames": frames,
        "units": int(out["units"]),
        "ingest_s": out["seconds"],
        "ingest_fps": frames / out["seconds"] if frames else 0.0,
        "imports_s": out["imports_s"],
        "peak_rss_mib": measured.peak_rss_mib,
    }


def speed(label: str, source: Path, video: Path, lake: Path, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` decode and ingest rates, alternated so both see similar load."""
    decodes, ingests = [], []
    for _ in range(repeats):
        decodes.append(decode_rate(video)["decode_fps"])
        ingests.append(ingest(source, lake))
    best = max(ingests, key=lambda r: r["ingest_fps"])
    row = {
        "input": label,
        "frames": best["frames"],
        "units": best["units"],
        "decode_fps": max(decodes),
        "ingest_fps": best["ingest_fps"],
        "ratio": best["ingest_fps"] / max(decodes),
        "all_decode_fps": decodes,
        "all_ingest_fps": [r["ingest_fps"] for r in ingests],
        "peak_rss_mib": best["peak_rss_mib"],
        "imports_s": best["imports_s"],
    }
    print(
        f"{label:28s} {row['frames']:>7} frames {row['units']:>5} units  decode {row['decode_fps']:7.0f}/s  "
        f"ingest {row['ingest_fps']:7.0f}/s  ratio {row['ratio']:.2f}  peak {row['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return row


def to_v73(source: Path, dest: Path) -> Path:
    """A copy of a simulated cohort whose CNMF-E results are MATLAB v7.3 (videos linked)."""
    from _mat73 import results_to_v73

    if dest.exists():
        shutil.rmtree(dest)
    for path in source.rglob("*"):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".mat":
            target.parent.mkdir(parents=True, exist_ok=True)
            results_to_v73(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target)
    return dest


def unit_session(root: Path, *, units: int, frames: int, size: int = 512) -> Path:
    """An extraction-only cohort: ``units`` random compact footprints and traces, v7.3."""
    import numpy as np
    import scipy.sparse as sp
    from _mat73 import write_results_v73

    fresh_dir(root, what="synthetic extraction")
    rng = np.random.default_rng(units)
    rows, cols, vals = [], [], []
    yy, xx = np.mgrid[-6:7, -6:7]
    blob = np.exp(-(yy**2 + xx**2) / 8.0)
    for u in range(units):
        cy, cx = rng.integers(8, size - 8, 2)
        y, x = (yy + cy).ravel(), (xx + cx).ravel()
        rows.append(x * size + y)  # column-major pixel index, as MATLAB
        cols.append(np.full(y.size, u))
        vals.append(blob.ravel())
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size * size, units)
    )
    C = np.abs(rng.normal(0, 1, (units, frames))).cumsum(axis=1) % 7.0
    write_results_v73(
        root / "results.mat", A=A, C=C, C_raw=C + rng.normal(0, 0.1, C.shape), S=(C > 6).astype(float),
        height=size, width=size, fps=20.0,
    )  # fmt: skip
    (root / "cohort.csv").write_text(
        "cohort,animal,session,stage,day,video,extraction,fps\n"
        f"units,m{units},s1,baseline,1,,{root / 'results.mat'},20\n"
    )
    return root / "cohort.csv"


def _within(a: float, b: float) -> float:
    """Relative change from ``a`` to ``b``."""
    return (b - a) / a


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cellsift-bench"), help="inputs and lakes")
    parser.add_argument("--frames", type=int, default=2000, help="N of the memory test (frames)")
    parser.add_argument("--factor", type=int, default=10, help="the long session has factor x N frames")
    parser.add_argument("--speed-frames", type=int, default=12000, help="frames of the 160 px speed session")
    parser.add_argument("--large-frames", type=int, default=3000, help="frames of the 608 px 30 Hz session")
    parser.add_argument("--unit-frames", type=int, default=12000, help="frames of the unit-count test")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (speed)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 608 px session")
    parser.add_argument("--skip-minian", action="store_true", help="skip the real Minian demo")
    parser.add_argument(
        "--sections", default="speed,frames,units", help="which of speed, frames, units to run (default: all)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.factor, args.speed_frames, args.unit_frames, args.repeats = 100, 10, 300, 500, 1
        args.skip_large = args.skip_minian = True
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"speed": [], "memory_frames": {}, "memory_units": {}}
    bars: list[Bar] = []
    t_start = time.perf_counter()

    sections = {name.strip() for name in args.sections.split(",")}
    if "speed" in sections:
        _speed_section(args, work, results, bars)
    if "frames" in sections:
        _frames_section(args, work, results, bars)
    if "units" in sections:
        _units_section(args, work, results, bars)
    results["total_s"] = time.perf_counter() - t_start
    return finish(NAME, args, results, bars)


def _speed_section(args: Any, work: Path, results: dict[str, Any], bars: list[Bar]) -> None:
    print("== speed: ingest vs PyAV decode (best of %d) ==" % args.repeats, flush=True)
    src = simulated_session(work / f"sim160-{args.speed_frames}", frames=args.speed_frames, size=160)
    rows = [speed("simulated 160 px", src, next(src.rglob("miniscope")), work / "lake-speed", args.repeats)]
    if not args.skip_large:
        src = simulated_session(
            work / f"sim608-{args.large_frames}", frames=args.large_frames, size=608, fps=30.0, seed=2
        )
        rows.append(
            speed(
                "simulated 608 px 30 Hz", src, next(src.rglob("miniscope")), work / "lake-speed", args.repeats
            )
        )
    if not args.skip_minian and REAL_MINIAN.is_dir():
        manifest = work / "minian.csv"
        manifest.write_text(
            "cohort,animal,session,stage,day,video,extraction,fps,temporal_downsample\n"
            f"real,demo,minian_demo,baseline,1,{REAL_MINIAN / 'raw_video_ffv1'},{REAL_MINIAN / 'minian_output'},20,2\n"
        )
        rows.append(
            speed(
                "real Minian demo",
                manifest,
                REAL_MINIAN / "raw_video_ffv1",
                work / "lake-speed",
                args.repeats,
            )
        )
    elif not args.skip_minian:
        print(f"real Minian demo not found under {REAL_MINIAN}: skipped")
    results["speed"] = rows
    for row in rows:
        if row["input"].startswith("simulated"):
            bars.append(Bar(f"ingest/decode {row['input']}", row["ratio"], 0.9))


def _frames_section(args: Any, work: Path, results: dict[str, Any], bars: list[Bar]) -> None:
    print(f"== memory: N = {args.frames} vs {args.factor} N frames (160 px) ==", flush=True)
    mem: dict[str, Any] = {}
    for n in (args.frames, args.frames * args.factor):
        src = simulated_session(work / f"sim160-{n}", frames=n, size=160)
        v73 = to_v73(src, work / f"sim160-{n}-v73")
        mem[f"v73_{n}"] = ingest(v73, work / "lake-mem")
        mem[f"v5_{n}"] = ingest(src, work / "lake-mem")
        print(
            f"{n:>7} frames: peak RSS {mem[f'v73_{n}']['peak_rss_mib']:.0f} MiB (v7.3), "
            f"{mem[f'v5_{n}']['peak_rss_mib']:.0f} MiB (v5, traces read whole)",
            flush=True,
        )
    lo, hi = (
        mem[f"v73_{args.frames}"]["peak_rss_mib"],
        mem[f"v73_{args.frames * args.factor}"]["peak_rss_mib"],
    )
    mem["change_v73"] = _within(lo, hi)
    mem["change_v5"] = _within(
        mem[f"v5_{args.frames}"]["peak_rss_mib"], mem[f"v5_{args.frames * args.factor}"]["peak_rss_mib"]
    )
    results["memory_frames"] = mem
    bars.append(
        Bar(
            f"peak RSS change N -> {args.factor}N frames (v7.3)",
            abs(mem["change_v73"]),
            0.15,
            "<=",
            f"{lo:.0f} -> {hi:.0f} MiB",
        )
    )


def _units_section(args: Any, work: Path, results: dict[str, Any], bars: list[Bar]) -> None:
    print(f"== memory: 100 vs 1000 units ({args.unit_frames} frames, extraction only, v7.3) ==", flush=True)
    units: dict[str, Any] = {}
    for k in (100, 1000):
        manifest = unit_session(work / f"units-{k}", units=k, frames=args.unit_frames)
        units[str(k)] = ingest(manifest, work / "lake-units")
        print(
            f"{k:>5} units: peak RSS {units[str(k)]['peak_rss_mib']:.0f} MiB, {units[str(k)]['ingest_s']:.1f} s",
            flush=True,
        )
    units["change"] = _within(units["100"]["peak_rss_mib"], units["1000"]["peak_rss_mib"])
    results["memory_units"] = units
    bars.append(
        Bar("peak RSS change 100 -> 1000 units", abs(units["change"]), 0.15, "<=",
            f"{units['100']['peak_rss_mib']:.0f} -> {units['1000']['peak_rss_mib']:.0f} MiB")
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
