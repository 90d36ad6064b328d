"""Ingest as Dask tasks: one task per session on real worker processes, the client alone publishing.

Compared with the in-process ingest of the same cohort (``_tiny_lake_master``): the same
catalog rows and byte-for-byte the same session datasets; a worker SIGKILLed while it
writes a session's store changes nothing of that, and leaves no staging behind.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import xarray as xr

from cellsift.catalog import Catalog
from cellsift.pipeline.ingest import IngestResult, ingest_cohort

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _catalog_rows(lake: Path) -> list[dict]:
    rows = [dataclasses.asdict(r) for r in Catalog(lake).records()]
    for row in rows:
        row.pop("updated_at")
    return sorted(rows, key=lambda r: (r["cohort"], r["animal"], r["session"]))


def assert_same_ingest(lake: Path, reference: Path) -> None:
    """Same catalog rows (bar the time of writing) and identical session datasets."""
    rows, expected = _catalog_rows(lake), _catalog_rows(reference)
    assert rows == expected
    for row in rows:
        assert row["status"] == "ingested", row
        with (
            xr.open_zarr(lake / row["dataset_path"]) as got,
            xr.open_zarr(reference / row["dataset_path"]) as ref,
        ):
            got.attrs.pop("ingested_at"), ref.attrs.pop("ingested_at")
            xr.testing.assert_identical(got.load(), ref.load())
        versions = list((lake / row["dataset_path"]).parent.iterdir())
        assert versions == [lake / row["dataset_path"]], versions  # one version, nothing aside
    assert not any((lake / "tmp").iterdir()), list((lake / "tmp").iterdir())  # no staging left
    assert not (lake / "run.lock").exists()


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


def test_dask_ingest_gives_the_in_process_lake(tiny_cohort, _tiny_lake_master, client, tmp_path):
    lake = tmp_path / "lake"
    seen: list[IngestResult] = []
    results = ingest_cohort(tiny_cohort, lake, client=client, progress=seen.append)

    assert [r.status for r in results] == ["ingested"] * 4, results
    assert sorted(seen, key=lambda r: r.session + r.animal) == sorted(
        results, key=lambda r: r.session + r.animal
    )
    assert all(r.n_frames == 400 and r.n_units > 0 for r in results)
    assert_same_ingest(lake, _tiny_lake_master)

    again = ingest_cohort(tiny_cohort, lake, client=client)
    assert [r.status for r in again] == ["unchanged"] * 4
    assert [r.dataset_path for r in again] == [r.dataset_path for r in results]


def _kill_a_worker_mid_ingest(client, lake: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the process of a worker that runs an ingest task while a store is half written."""
    while not stop.is_set():
        writing = [p for p in (lake / "tmp").glob("ingest-*/work/*.zarr")]
        if writing:
            busy = [
                w
                for w, keys in client.processing().items()
                if any(str(k).startswith("ingest-") for k in keys)
            ]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.005)


def test_worker_killed_mid_ingest_changes_nothing(tiny_cohort, _tiny_lake_master, client, tmp_path):
    lake = tmp_path / "lake"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_a_worker_mid_ingest, args=(client, lake, killed, stop), daemon=True
    )
    killer.start()
    try:
        results = ingest_cohort(tiny_cohort, lake, client=client)
    finally:
        stop.set()
        killer.join(timeout=30)

    assert len(killed) == 1, "no worker was killed while it wrote a session"
    assert [r.status for r in results] == ["ingested"] * 4, results
    assert_same_ingest(lake, _tiny_lake_master)
    assert len(Catalog(lake).records()) == 4  # no duplicate rows
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
