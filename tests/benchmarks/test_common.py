"""The benchmarks' one command-line convention (``benchmarks/_common.py``): options,
results JSON, exit status on missed bars, fresh scratch folders, peak RSS of a process
tree; and every benchmark script answers ``--help`` with the shared options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402


def test_parser_results_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _common.make_parser("A benchmark.\n\nMore words.")
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args(["--out", str(tmp_path), "--frames", "7"])
    assert args.out == tmp_path and args.quick is False
    bars = [_common.Bar("speed", 0.95, 0.9), _common.Bar("memory change", 0.2, 0.15, "<=")]
    assert _common.finish("bench_x", args, {"fps": 12.5}, bars) == 1  # a bar missed: exit 1
    record = json.loads((tmp_path / "bench_x.json").read_text())
    assert record["parameters"] == {"frames": 7, "quick": False}
    assert record["results"] == {"fps": 12.5} and "numpy" in record["versions"]
    assert [b["passed"] for b in record["bars"]] == [True, False]
    out = capsys.readouterr()
    assert "bar MISS: memory change" in out.out and "memory change" in out.err
    assert _common.finish("bench_x", args, {}, bars[:1]) == 0
    quick = parser.parse_args(["--out", str(tmp_path), "--quick"])
    assert _common.finish("bench_x", quick, {}, bars) == 0  # --quick: printed, not judged
    assert json.loads((tmp_path / "bench_x.json").read_text())["bars_judged"] is False


def test_fresh_dir_never_keeps_old_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = tmp_path / "lake"
    (lake / "old").mkdir(parents=True)
    assert _common.fresh_dir(lake, what="lake") == lake
    assert list(lake.iterdir()) == [] and "removing the previous lake" in capsys.readouterr().out


def test_peak_rss_covers_child_processes() -> None:
    code = (
        "import subprocess, sys;"
        "subprocess.run([sys.executable, '-c', 'import time; b = bytearray(200 * 2**20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1.5)'])"
    )
    measured = _common.run_measured([sys.executable, "-c", code])
    assert measured.returncode == 0
    assert measured.peak_rss_mib > 200  # the grandchild's 200 MiB counted


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("bench_*.py")))
def test_every_benchmark_takes_the_shared_options(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--out" in done.stdout and "--quick" in done.stdout
