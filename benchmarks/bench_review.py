"""Review page: time to the next card (p50/p95) on the demo lake and on a lake of >= 10 000 cells.

The page is served for real (uvicorn on loopback, in a thread) and read over HTTP.
For each of the first ``--cards`` cells of the queue:

* ``card_ms``: one ``GET /api/card`` with nothing cached in the browser (the server's
  per-session cache fills as sessions are met: the first card of a session is "cold");
* ``next_card_ms``: what the page shows after a keypress: it prefetches the next three
  cards while the reviewer looks at the current one for ``--dwell`` seconds, so the
  time is what is left of the next card's request after that dwell. (The server also
  reads ahead the sessions of the next cells of the queue, as it does for the page.)

The bars: next card p50 and p95 <= 200 ms on both lakes. Each lake's result records the
1-minute load average before and after it was measured (the machine may be shared).

The large lake repeats the demo's sessions under new animal names (stores linked, tables
copied) until it has ``--cells`` cells, so it costs no simulation.

Usage::

    .venv/bin/python benchmarks/bench_review.py [--demo demo/lake] [--cells 10000] [--cards 60] [--dwell 0.5]

Writes ``benchmarks/results/bench_review.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Bar, finish, make_parser  # noqa: E402


def big_lake(demo: Path, out: Path, n_cells: int) -> Path:
    """A lake of >= ``n_cells`` cells: the demo's sessions repeated under new animal names."""
    from dataclasses import replace

    from cellsift.catalog import Catalog, LakeLayout, open_lake

    src = open_lake(demo)
    records = Catalog(demo).records()
    cells, sessions = src.cells, src.sessions
    copies = int(np.ceil(n_cells / len(cells)))
    out.mkdir(parents=True)
    layout = LakeLayout(out)
    layout.ensure()
    catalog = Catalog(out, create=True)
    for k in range(copies):
        for rec in records:
            animal = f"{rec.animal}x{k:03d}"
            srow = sessions[(sessions.animal == rec.animal) & (sessions.session == rec.session)].iloc[0]
            for kind, rel in (("sessions", srow.dataset_path), ("clips", srow.clips_path)):
                link = out / kind / rec.cohort / animal / rec.session / Path(rel).name
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink((demo / rel).resolve(), link)
            catalog.upsert(
                replace(
                    rec,
                    animal=animal,
                    dataset_path=f"sessions/{rec.cohort}/{animal}/{rec.session}/{Path(srow.dataset_path).name}",
                )
            )
            for table, frame in (("cells", cells), ("sessions", sessions)):
                part = frame[(frame.animal == rec.animal) & (frame.session == rec.session)].copy()
                part["animal"] = animal
                if table == "sessions":
                    part["dataset_path"] = (
                        f"sessions/{rec.cohort}/{animal}/{rec.session}/{Path(srow.dataset_path).name}"
                    )
                    part["clips_path"] = (
                        f"clips/{rec.cohort}/{animal}/{rec.session}/{Path(srow.clips_path).name}"
                    )
                path = layout.table_file(table, rec.cohort, animal, rec.session)
                path.parent.mkdir(parents=True, exist_ok=True)
                part.to_parquet(path, index=False)
    return out


def serve(lake: Path) -> tuple[str, float, object]:
    """Start the page for ``lake`` in a thread; return its URL and the service's start-up time (s)."""
    from cellsift.cli.web import serve as serve_page
    from cellsift.pipeline.review import ReviewConfig, ReviewService

    t0 = time.perf_counter()
    service = ReviewService(ReviewConfig(lake=lake, reviewer="bench"))
    startup = time.perf_counter() - t0
    ready: list[str] = []
    threading.Thread(
        target=serve_page, args=(service,), kwargs={"on_ready": ready.append}, daemon=True
    ).start()
    while not ready:
        time.sleep(0.05)
    time.sleep(0.3)
    return ready[0], startup, service


def get(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        size = len(response.read())
    return (time.perf_counter() - t0) * 1000, size


def measure(lake: Path, *, cards: int, dwell: float) -> dict[str, object]:
    load_before = round(os.getloadavg()[0], 2)
    url, startup, _service = serve(lake)
    queue_ms, queue_bytes = get(url + "api/queue")
    with urllib.request.urlopen(url + "api/queue") as response:
        cids = json.loads(response.read())["cid"]
    card = lambda cid: get(url + "api/card?cid=" + urllib.parse.quote(cid))  # noqa: E731
    direct = [card(cid)[0] for cid in cids[:cards]]
    # a fresh server for the prefetching walk (its caches empty again)
    url, _s, _service2 = serve(lake)
    card = lambda cid: get(url + "api/card?cid=" + urllib.parse.quote(cid))  # noqa: E731
    pool, pending, shown = ThreadPoolExecutor(4), {}, []
    first = card(cids[0])
    for i in range(cards - 1):
        for j in range(i + 1, min(i + 4, len(cids))):
            if j not in pending:
                pending[j] = pool.submit(card, cids[j])
        time.sleep(dwell)
        t0 = time.perf_counter()
        pending[i + 1].result()
        shown.append((time.perf_counter() - t0) * 1000)
    pool.shutdown()
    sizes = card(cids[1])[1]
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 1)  # noqa: E731
    return {
        "cells": len(cids),
        "startup_s": round(startup, 2),
        "queue_ms": round(queue_ms, 1),
        "queue_kib": round(queue_bytes / 1024, 1),
        "card_kib": round(sizes / 1024, 1),
        "first_card_ms": round(first[0], 1),
        "card_ms_p50": pct(direct, 50),
        "card_ms_p95": pct(direct, 95),
        "next_card_ms_p50": pct(shown, 50),
        "next_card_ms_p95": pct(shown, 95),
        "cards": cards,
        "dwell_s": dwell,
        "load_1min_before": load_before,
        "load_1min_after": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--demo", type=Path, default=Path("demo/lake"), help="a demo lake (cellsift demo)")
    parser.add_argument("--cells", type=int, default=10_000, help="cells of the large lake")
    parser.add_argument("--cards", type=int, default=60, help="cards shown per lake")
    parser.add_argument("--dwell", type=float, default=0.5, help="seconds a reviewer looks at a card")
    args = parser.parse_args(argv)
    if args.quick:
        args.cells, args.cards = min(args.cells, 1000), min(args.cards, 10)
    if not (args.demo / "catalog.sqlite").is_file():
        print(
            f"error: no demo lake at {args.demo}: run 'cellsift demo' first or pass --demo", file=sys.stderr
        )
        return 2
    results: dict[str, Any] = {}
    results["demo"] = measure(args.demo, cards=args.cards, dwell=args.dwell)
    print("demo lake:", json.dumps(results["demo"]))
    scratch = Path(tempfile.mkdtemp(prefix="bench-review-"))
    try:
        lake = big_lake(args.demo.resolve(), scratch / "lake", args.cells)
        results["large"] = measure(lake, cards=args.cards, dwell=args.dwell)
        print("large lake:", json.dumps(results["large"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bars = [
        Bar(f"next card {q} on {name} (ms)", float(results[key][f"next_card_ms_{q}"]), 200.0, op="<=")
        for key, name in (("demo", "the demo lake"), ("large", f"{args.cells} cells"))
        for q in ("p50", "p95")
    ]
    return finish("bench_review", args, results, bars)


if __name__ == "__main__":
    sys.exit(main())
