"""The one command-line convention of the benchmarks, and the measuring tools they share.

Every ``benchmarks/bench_*.py`` script:

* takes ``--out DIR`` (results folder, default ``benchmarks/results/``) and ``--quick``
  (a small run that checks the script works, in well under a minute where possible),
  built by :func:`make_parser`;
* writes ``<out>/<name>.json`` with the parameters, the package versions, the host, the
  measurements and every stated bar with its outcome (:func:`finish`);
* exits 1 when a stated bar is missed (2 for a usage error, as argparse does), 0 otherwise;
  a ``--quick`` run prints its bars but does not judge them (sizes too small to mean much);
* never reuses a stale lake or store silently: :func:`fresh_dir` rebuilds a scratch
  folder, and simulated inputs are reused only when their recorded parameters match
  exactly (:func:`simulated_session`), saying so in one line.

Peak memory is measured over the whole process tree (workers included) by polling
``psutil`` (:func:`run_measured`); wall times are ``time.perf_counter`` differences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "Bar",
    "Measured",
    "decode_rate",
    "finish",
    "fresh_dir",
    "make_parser",
    "run_measured",
    "simulated_session",
    "tree_rss_bytes",
    "versions",
]

#: Default results folder: ``benchmarks/results/``.
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the shared options ``--out`` and ``--quick``.

    Parameters
    ----------
    doc
        The script's ``__doc__``: its first line is the description, the rest the epilog.
    """
    text = (doc or "").strip()
    first, _, rest = text.partition("\n")
    parser = argparse.ArgumentParser(
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help=f"results folder; <out>/<name>.json is written there (default: {RESULTS_DIR})",
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast run that checks the script works")
    return parser


@dataclass(frozen=True)
class Bar:
    """A stated bar: ``value`` must be ``>=`` (or ``<=``) ``limit``."""

    name: str
    value: float
    limit: float
    op: str = ">="
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the bar is met."""
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit


def versions() -> dict[str, str]:
    """Versions of Python, cellsift and the libraries the benchmarks exercise."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "cellsift",
        "numpy",
        "scipy",
        "zarr",
        "numcodecs",
        "xarray",
        "dask",
        "av",
        "h5py",
        "pyarrow",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        out["git"] = commit + ("+dirty" if dirty else "") if commit else "unknown"
    except OSError:
        out["git"] = "unknown"
    return out


def finish(name: str, args: argparse.Namespace, results: dict[str, Any], bars: Sequence[Bar] = ()) -> int:
    """Write ``<args.out>/<name>.json``, print the bars, return the exit status (1 if any missed)."""
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}
    record = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"node": platform.node(), "cpus": os.cpu_count(), "load_1min": _load()},
        "parameters": params,
        "versions": versions(),
        "results": results,
        "bars_judged": not getattr(args, "quick", False),
        "bars": [
            {
                "name": b.name,
                "value": b.value,
                "op": b.op,
                "limit": b.limit,
                "passed": b.passed,
                "note": b.note,
            }
            for b in bars
        ],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    judged = not getattr(args, "quick", False)
    for bar in bars:
        mark = ("PASS" if bar.passed else "MISS") if judged else "not judged (--quick)"
        print(f"bar {mark}: {bar.name} = {bar.value:.3g} (needs {bar.op} {bar.limit:g}) {bar.note}".rstrip())
    print(f"results: {path}")
    missed = [b.name for b in bars if not b.passed]
    if missed and judged:
        print(f"{len(missed)} bar(s) missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def fresh_dir(path: Path, *, what: str) -> Path:
    """Remove ``path`` if present and create it empty; say so when something was there."""
    path = Path(path)
    if path.exists():
        print(f"removing the previous {what} {path} (never reused: it may be stale)")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# =========================================================================== memory and time


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` and all its descendants, in bytes (0 if gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclass
class Measured:
    """One measured command: wall time, peak resident memory of its process tree, output."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)

    def json_line(self) -> dict[str, Any]:
        """The last stdout line that parses as a JSON object, or ``{}``."""
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return {}


def run_measured(
    cmd: Sequence[str], *, interval: float = 0.05, env: dict[str, str] | None = None
) -> Measured:
    """Run ``cmd``, polling the resident memory of its process tree every ``interval`` s.

    Peak RSS is the largest sum over the process and all its descendants seen at one
    poll (Dask workers included). Spikes shorter than ``interval`` can be missed (checked
    against ``/usr/bin/time -v`` on ingest: within 1 %). ``ru_maxrss`` is no substitute: a
    child forked from a large parent inherits the parent's high-water mark.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO)
    )
    peak = 0
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""), daemon=True),
        threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else ""), daemon=True),
    ]
    for thread in readers:
        thread.start()
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(interval)
    seconds = time.perf_counter() - t0
    for thread in readers:
        thread.join()
    return Measured(seconds, peak / 2**20, proc.returncode, "".join(out), "".join(err))


def python_child(code: str, *args: str, env: dict[str, str] | None = None) -> Measured:
    """Run ``code`` in a fresh ``python -c`` (this interpreter) with ``args``, measured."""
    return run_measured([sys.executable, "-c", code, *args], env=env)


# =========================================================================== inputs


def decode_rate(video: Path, *, repeats: int = 1) -> dict[str, float]:
    """Frames/s at which PyAV alone decodes a video folder's AVIs to arrays (best of ``repeats``).

    The same decoder settings the Miniscope reader uses (``thread_type="AUTO"``), one
    Python thread, ``to_ndarray`` of every frame: the raw rate an ingest can at best reach.
    """
    import av

    chunks = (
        sorted(Path(video).glob("*.avi"), key=lambda p: (len(p.stem), p.stem))
        if Path(video).is_dir()
        else [video]
    )
    best = 0.0
    frames = 0
    for _ in range(max(1, repeats)):
        frames = 0
        t0 = time.perf_counter()
        for chunk in chunks:
            with av.open(str(chunk)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    frame.to_ndarray(format="gray") if frame.format.name not in (
                        "gray",
                        "gray8",
                    ) else frame.to_ndarray()
                    frames += 1
        best = max(best, frames / (time.perf_counter() - t0))
    return {"frames": float(frames), "decode_fps": best}


def simulated_session(
    root: Path,
    *,
    frames: int,
    size: int,
    fps: float = 20.0,
    seed: int = 1,
    density: float | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """A simulated one-session cohort (one animal, stage ``conditioning``) under ``root``.

    Reused only when ``root/params.json`` records exactly these parameters and the same
    cellsift version (the simulator's input, not a lake: nothing derived is reused);
    otherwise rebuilt. Returns the folder holding ``cohort.csv``.
    """
    import cellsift
    from cellsift.pipeline.sim import SimulationConfig, simulate_cohort

    params = {
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
        "density": density,
        "cellsift": str(getattr(cellsift, "__version__", "?")),
    }
    root = Path(root)
    stamp = root / "params.json"
    if (
        stamp.is_file()
        and json.loads(stamp.read_text()) == params
        and (root / "src" / "cohort.csv").is_file()
    ):
        log(f"reusing simulated input {root / 'src'} (same parameters: {params})")
        return root / "src"
    fresh_dir(root, what="simulated input")
    extra: dict[str, Any] = {} if density is None else {"cell_density": density}
    t0 = time.perf_counter()
    simulate_cohort(
        root / "src",
        SimulationConfig(
            n_animals=1,
            stages=("conditioning",),
            n_frames=frames,
            fps=fps,
            height=size,
            width=size,
            seed=seed,
            **extra,
        ),
    )
    log(
        f"simulated {frames} frames of {size}x{size} px in {time.perf_counter() - t0:.0f} s -> {root / 'src'}"
    )
    stamp.write_text(json.dumps(params))
    return root / "src"
