"""The simulated demo cohort behind ``cellsift simulate OUT``.

A cohort of mice imaged with a Miniscope V4 in mPFC over a fear-conditioning /
safety-learning / extinction series: one session per stage per animal. For every
session the simulator writes what a lab would have after CNMF-E: the raw movie as
Miniscope-DAQ-QT writes it, the CNMF-E ``results`` struct (real cells *and* the
artifacts CNMF-E produces), the behaviour events and the curation labels::

    OUT/
      cohort.csv                       manifest (paths relative to OUT)
      m01/d1_conditioning/
        miniscope/0.avi 1.avi ...      8-bit grayscale AVI chunks (<= 1000 frames)
        miniscope/timeStamps.csv       Frame Number,Time Stamp (ms),Buffer Index
        miniscope/metaData.json        Miniscope V4 device metadata
        cnmfe_results.mat              struct 'results' (A sparse, C, C_raw, S, ids, ...)
        labels.csv                     unit_id,label,reason
        events.csv                     event,onset_s,offset_s
        freezing.csv                   frame,time_s,freezing (per-frame freezing, 0/1)
        truth.json                     simulator truth (not for models)

Modules: :mod:`~cellsift.pipeline.sim.config` (the settings),
:mod:`~cellsift.pipeline.sim.session` (one session from seed to files),
:mod:`~cellsift.pipeline.sim.adex` (AdEx neurons),
:mod:`~cellsift.pipeline.sim.geometry` and :mod:`~cellsift.pipeline.sim.population`
(an animal's neurons and tissue),
:mod:`~cellsift.pipeline.sim.activity` (protocol, spikes, calcium, motion),
:mod:`~cellsift.pipeline.sim.behaviour` (freezing),
:mod:`~cellsift.pipeline.sim.movie` (the 1-photon movie),
:mod:`~cellsift.pipeline.sim.extract` (CNMF-E-like output with artifacts) and
:mod:`~cellsift.pipeline.sim.writers` (file formats).

Everything is seeded: the same :class:`SimulationConfig` gives byte-identical
``.mat``, ``.csv`` and ``.json`` files and pixel-identical videos. Randomness is drawn
from ``numpy.random.SeedSequence(seed)`` spawned per animal and per session, so adding
animals or sessions does not change the existing ones.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import current_process, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.pipeline.sim.config import SimulationConfig, animal_name
from cellsift.pipeline.sim.population import make_population
from cellsift.pipeline.sim.session import SessionTask, simulate_session
from cellsift.pipeline.sim.writers import MANIFEST_HEADER, write_csv
from cellsift.schemas import ParameterError

__all__ = ["MANIFEST_NAME", "simulate_cohort"]

log = logging.getLogger(__name__)

#: File name of the cohort manifest in the output folder.
MANIFEST_NAME: Final = "cohort.csv"


def _mp_context() -> BaseContext:
    """'fork' where available (no re-import of the caller's script), else 'spawn'."""
    methods = get_all_start_methods()
    return get_context("fork" if "fork" in methods else "spawn")


def simulate_cohort(
    out_dir: Path,
    config: SimulationConfig,
    *,
    progress: Callable[[str], None] | None = None,
    n_workers: int | None = None,
) -> Path:
    """Simulate a cohort and write it below ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder (created if missing; existing simulator files are overwritten).
    config
        The cohort's settings.
    progress
        Called with one line of text after each session is written.
    n_workers
        Processes simulating sessions in parallel; default ``min(2, CPUs, sessions)``.
        The output does not depend on it. Workers are forked where the platform
        allows, so callers need no ``if __name__ == "__main__"`` guard on Linux.

    Returns
    -------
    pathlib.Path
        Path of the manifest ``out_dir / "cohort.csv"``.

    Raises
    ------
    ParameterError
        If ``n_workers < 1`` or ``out_dir`` is an existing file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(
            "the output path exists and is not a folder", path=out_dir, fix="choose a folder for the cohort"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    n_sessions = config.n_animals * len(config.stages)
    if n_workers is None:
        # a daemonic process (e.g. a pool or Dask worker) may not start children
        n_workers = 1 if current_process().daemon else min(2, os.cpu_count() or 1, n_sessions)
    if n_workers < 1:
        raise ParameterError(f"n_workers must be >= 1, got {n_workers}", field="n_workers")

    t0 = time.perf_counter()
    tasks: list[SessionTask] = []
    for a, animal_ss in enumerate(np.random.SeedSequence(config.seed).spawn(config.n_animals)):
        pop_ss, *sess_ss = animal_ss.spawn(1 + len(config.stages))
        pop = make_population(
            np.random.default_rng(pop_ss),
            height=config.height,
            width=config.width,
            cell_density=config.cell_density,
            background_scale=config.background_scale,
            cell_diameter_px=config.cell_diameter_px,
        )
        for s, stage in enumerate(config.stages):
            source = config.session_extraction(a, s)
            tasks.append(SessionTask(out_dir, config, animal_name(a), stage, s + 1, pop, sess_ss[s], source))

    results: list[dict[str, Any]] = []
    if n_workers == 1 or n_sessions == 1:
        for task in tasks:
            res = simulate_session(task)
            results.append(res)
            if progress is not None:
                progress(res["summary"])
    else:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context()) as pool:
            for res in pool.map(simulate_session, tasks):
                results.append(res)
                if progress is not None:
                    progress(res["summary"])

    manifest = out_dir / MANIFEST_NAME
    write_csv(manifest, MANIFEST_HEADER, [r["row"] for r in results])
    log.info("simulated %d sessions in %.1f s -> %s", n_sessions, time.perf_counter() - t0, manifest)
    return manifest
