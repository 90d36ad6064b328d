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

Modules: :mod:`~cellsift.pipeline.sim.adex` (AdEx neurons),
:mod:`~cellsift.pipeline.sim.population` (an animal's neurons and tissue),
:mod:`~cellsift.pipeline.sim.activity` (protocol, spikes, calcium, motion),
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
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from multiprocessing import current_process, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.sim.behaviour import simulate_freezing, write_freezing_csv
from cellsift.pipeline.sim.extract import Extraction, extract_units
from cellsift.pipeline.sim.activity import make_protocol, simulate_activity
from cellsift.pipeline.sim.movie import ProjectionStats, build_scene, render_movie
from cellsift.pipeline.sim.population import Population, make_population
from cellsift.pipeline.sim.writers import (
    EVENTS_HEADER,
    LABELS_HEADER,
    MANIFEST_HEADER,
    MiniscopeWriter,
    write_cnmfe_mat,
    write_csv,
    write_json,
    write_miniscope_metadata,
    write_timestamps,
)

__all__ = [
    "SimulationConfig",
    "simulate_cohort",
    "MANIFEST_NAME",
    "FRAMES_PER_FILE",
    "animal_name",
    "session_name",
]

log = logging.getLogger(__name__)

MANIFEST_NAME: Final = "cohort.csv"
FRAMES_PER_FILE: Final = 1000
TRUTH_SCHEMA: Final = "cellsift-sim-truth/1"
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Float32 pixels per movie block: small enough to stay in cache (fast) and to bound
#: memory at any frame size and session length.
_BLOCK_PIXELS: Final = 2_500_000


def _check_int(name: str, value: object, lo: int, hi: int | None) -> int:
    """``value`` as an int in ``[lo, hi]``, else ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return int(value)


def _check_real(name: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}")
    return v


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of a simulated cohort.

    Attributes
    ----------
    n_animals
        Number of mice (``m01``, ``m02``, ...).
    stages
        Stage of each session, in order; the session of stage ``i`` is on day ``i + 1``.
        Shocks are given in the stage called ``"conditioning"`` only.
    n_frames
        Frames per session.
    fps
        Frame rate (Hz).
    height, width
        Frame size (px).
    cell_density
        In-focus neurons per 10,000 px (the default gives about 37-45 cells at 160 x 160).
    artifact_fraction
        Fraction of the extraction output that is artifacts, in [0, 0.9].
    noise_scale
        Multiplier of the shot- and read-noise SD.
    background_scale
        Multiplier of the out-of-focus background and neuropil intensity.
    motion_px
        Scale (px) of the rigid brain motion (about its SD).
    seed
        Master seed (>= 0).
    cohort
        Cohort name, written to the manifest.
    video_codec
        ``"ffv1"`` (lossless FFV1) or ``"gray"`` (uncompressed 8-bit, fourcc GREY).

    Raises
    ------
    ValueError
        If a setting is out of range.
    """

    n_animals: int = 3
    stages: tuple[str, ...] = ("conditioning", "safety", "extinction")
    n_frames: int = 2000
    fps: float = 20.0
    height: int = 160
    width: int = 160
    cell_density: float = 16.0
    artifact_fraction: float = 0.35
    noise_scale: float = 1.0
    background_scale: float = 1.0
    motion_px: float = 1.0
    seed: int = 0
    cohort: str = "demo"
    video_codec: str = "ffv1"

    def __post_init__(self) -> None:
        if isinstance(self.stages, str) or not isinstance(self.stages, (tuple, list)):
            raise ValueError(f"stages must be a tuple of stage names, got {self.stages!r}")
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise ValueError("stages must name at least one stage")
        if not all(isinstance(st, str) and _NAME_RE.match(st) for st in stages):
            raise ValueError(f"stage names must use letters, digits, '_', '-' or '.', got {stages!r}")
        if len(set(stages)) != len(stages):
            raise ValueError(f"stage names must be unique, got {stages!r}")
        for name, lo, hi in (("n_animals", 1, 999), ("n_frames", 10, None), ("height", 16, 4096),
                             ("width", 16, 4096), ("seed", 0, None)):
            object.__setattr__(self, name, _check_int(name, getattr(self, name), lo, hi))
        for name, lo, hi, lo_open in (("fps", 0.5, 1000.0, False), ("cell_density", 0.0, 100.0, True),
                                      ("artifact_fraction", 0.0, 0.9, False), ("noise_scale", 0.0, 20.0, False),
                                      ("background_scale", 0.0, 3.0, False), ("motion_px", 0.0, 20.0, False)):
            object.__setattr__(self, name, _check_real(name, getattr(self, name), lo, hi, lo_open=lo_open))
        if not (isinstance(self.cohort, str) and _NAME_RE.match(self.cohort)):
            raise ValueError(f"cohort must be a name of letters, digits, '_', '-' or '.', got {self.cohort!r}")
        if self.video_codec not in ("ffv1", "gray"):
            raise ValueError(f"video_codec must be 'ffv1' or 'gray', got {self.video_codec!r}")

    @property
    def duration_s(self) -> float:
        """Session length (s)."""
        return self.n_frames / self.fps


def animal_name(index: int) -> str:
    """Folder name of animal ``index`` (0-based): ``m01``, ``m02``, ..."""
    return f"m{index + 1:02d}"


def session_name(day: int, stage: str) -> str:
    """Folder name of a session: ``d<day>_<stage>``."""
    return f"d{day}_{stage}"


@dataclass(frozen=True)
class _SessionTask:
    out_dir: Path
    config: SimulationConfig
    animal: str
    stage: str
    day: int
    population: Population
    seed: np.random.SeedSequence


def _unit_record(unit: Any, uid: int, pop: Population, n_spk: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    fp = unit.dense_footprint().reshape(shape)
    support = fp > 0
    ys, xs = np.nonzero(support)
    wgt = fp[ys, xs]
    rec: dict[str, Any] = {
        "unit_id": uid,
        "label": unit.label,
        "reason": unit.reason,
        "kind": unit.kind,
        "true_cell": unit.true_cell,
        "source_cell": unit.source_cell,
        "area_px": int(support.sum()),
        "centroid_yx": [float((ys * wgt).sum() / wgt.sum()), float((xs * wgt).sum() / wgt.sum())] if wgt.size else None,
        "peak_yx": [int(v) for v in np.unravel_index(int(np.argmax(fp)), shape)],
    }
    if unit.true_cell is not None:
        nr = pop.neurons[unit.true_cell]
        rec.update(
            firing_class=nr.firing_class,
            tone_selectivity=nr.tone_selectivity,
            shock_responsive=nr.shock_responsive,
            in_focus=nr.in_focus,
            n_spikes=int(n_spk[unit.true_cell]),
        )
    return rec


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run with a single BLAS thread if threadpoolctl is installed.

    The BLAS products here are small; OpenBLAS's spinning worker threads cost more
    CPU than they save, and session-level processes already fill the cores.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional dependency
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _simulate_session(task: _SessionTask) -> dict[str, Any]:
    """Simulate and write one session; return its manifest row and a summary."""
    with _one_blas_thread():
        return _simulate_session_inner(task)


def _start_time(task: _SessionTask) -> dict[str, int]:
    """A plausible, deterministic ``recordingStartTime``: one session a day from 4 March 2024."""
    start = datetime(2024, 3, 4, 9) + timedelta(days=task.day - 1, hours=int(task.animal[1:]) % 9)
    return {"year": start.year, "month": start.month, "day": start.day, "hour": start.hour,
            "minute": 0, "second": 0, "msec": 0}


def _simulate_session_inner(task: _SessionTask) -> dict[str, Any]:
    """Body of :func:`_simulate_session`."""
    t0 = time.perf_counter()
    cfg = task.config
    pop = task.population
    r_proto, r_act, r_movie, r_extract, r_misc = (np.random.default_rng(s) for s in task.seed.spawn(5))
    rel = Path(task.animal) / session_name(task.day, task.stage)
    folder = task.out_dir / rel
    scope = folder / "miniscope"
    scope.mkdir(parents=True, exist_ok=True)
    for old in scope.glob("*.avi"):  # chunks of an earlier, longer run would be read as ours
        if old.stem.isdigit():
            old.unlink()

    protocol = make_protocol(r_proto, duration_s=cfg.duration_s, shocks=task.stage == "conditioning")
    fov = tuple(float(v) for v in np.clip(r_misc.normal(0.0, 1.0, 2), -3.0, 3.0))
    activity = simulate_activity(
        pop, protocol, task.stage, n_frames=cfg.n_frames, fps=cfg.fps, motion_px=cfg.motion_px, rng=r_act
    )
    scene = build_scene(pop, fov_offset=fov, noise_scale=cfg.noise_scale)

    stats = ProjectionStats(cfg.height, cfg.width)
    block = max(1, min(500, _BLOCK_PIXELS // (cfg.height * cfg.width)))
    with MiniscopeWriter(
        scope, height=cfg.height, width=cfg.width, fps=cfg.fps, codec=cfg.video_codec, frames_per_file=FRAMES_PER_FILE
    ) as writer:
        for frames in render_movie(pop, scene, activity, r_movie, block_frames=block):
            writer.write(frames)
            stats.update(frames)
    write_timestamps(scope / "timeStamps.csv", cfg.n_frames, fps=cfg.fps, rng=r_misc)
    write_miniscope_metadata(
        scope / "metaData.json",
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        codec=cfg.video_codec,
        frames_per_file=FRAMES_PER_FILE,
        led_power=int(r_misc.integers(8, 25)),
        ewl=int(r_misc.integers(0, 60)),
        start_time=_start_time(task),
    )
    images = stats.results()

    ext: Extraction = extract_units(
        pop, scene, activity, r_extract, fps=cfg.fps, artifact_fraction=cfg.artifact_fraction
    )
    gsig = float(np.median([nr.blob.diameter_px for nr in pop.neurons[: pop.n_in_focus]]) / 4.0)
    write_cnmfe_mat(
        folder / "cnmfe_results.mat",
        A=ext.A,
        C=ext.C,
        C_raw=ext.C_raw,
        S=ext.S,
        ids=ext.ids,
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        Cn=images["Cn"],
        PNR=images["PNR"],
        extra_options={"gSig": round(gsig), "gSiz": 4 * round(gsig) + 1, "Fs": float(cfg.fps)},
    )
    write_csv(folder / "labels.csv", LABELS_HEADER, [(int(i), u.label, u.reason) for i, u in zip(ext.ids, ext.units)])
    write_csv(
        folder / "events.csv",
        EVENTS_HEADER,
        [(n, f"{a:.3f}", f"{b:.3f}") for n, a, b in zip(protocol.names, protocol.onset_s, protocol.offset_s)],
    )

    events = pd.DataFrame(
        {"event": list(protocol.names), "onset_s": protocol.onset_s, "offset_s": protocol.offset_s}
    )
    freezing = simulate_freezing(events, n_frames=cfg.n_frames, fps=cfg.fps, stage=task.stage, rng=r_misc)
    write_freezing_csv(folder / "freezing.csv", freezing, cfg.fps)

    shape = (cfg.height, cfg.width)
    n_spk = activity.spikes.sum(axis=1)
    units = [_unit_record(u, int(i), pop, n_spk, shape) for i, u in zip(ext.ids, ext.units)]
    extracted_as = {u["true_cell"]: u["unit_id"] for u in units if u["label"] == "good"}
    cells = [
        {
            "index": nr.index,
            "in_focus": nr.in_focus,
            "centroid_yx": [nr.blob.cy + fov[0], nr.blob.cx + fov[1]],
            "diameter_px": nr.blob.diameter_px,
            "brightness": nr.brightness,
            "dff_per_spike": nr.dff_per_spike,
            "tau_rise_s": nr.tau_rise_s,
            "tau_decay_s": nr.tau_decay_s,
            "firing_class": nr.firing_class,
            "event_rate_hz": nr.event_rate_hz,
            "tone_selectivity": nr.tone_selectivity,
            "shock_responsive": nr.shock_responsive,
            "assembly": nr.assembly,
            "has_dendrite": nr.dendrite is not None,
            "silent": bool(activity.silent[nr.index]),
            "n_spikes": int(n_spk[nr.index]),
            "extracted_as": extracted_as.get(nr.index),
        }
        for nr in pop.neurons
    ]
    write_json(
        folder / "truth.json",
        {
            "schema": TRUTH_SCHEMA,
            "cohort": cfg.cohort,
            "animal": task.animal,
            "session": session_name(task.day, task.stage),
            "stage": task.stage,
            "day": task.day,
            "fps": cfg.fps,
            "n_frames": cfg.n_frames,
            "height": cfg.height,
            "width": cfg.width,
            "fov_offset_px": list(fov),
            "motion": {
                "sd_px": activity.motion_px.std(axis=0).tolist(),
                "max_abs_px": float(np.abs(activity.motion_px).max()),
            },
            "bleach_final": float(activity.bleach[-1]),
            "units": units,
            "cells": cells,
            "config": {**asdict(cfg), "stages": list(cfg.stages)},
        },
    )
    n_good = sum(u.label == "good" for u in ext.units)
    dt = time.perf_counter() - t0
    summary = (
        f"{rel.as_posix()}: {cfg.n_frames} frames, {n_good} cells + {len(ext.units) - n_good} artifacts ({dt:.1f} s)"
    )
    log.info("simulated %s", summary)
    row = (
        cfg.cohort,
        task.animal,
        session_name(task.day, task.stage),
        task.stage,
        task.day,
        (rel / "miniscope").as_posix(),
        (rel / "cnmfe_results.mat").as_posix(),
        (rel / "events.csv").as_posix(),
        (rel / "labels.csv").as_posix(),
        repr(float(cfg.fps)),
    )
    return {"row": row, "summary": summary}


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
    ValueError
        If ``n_workers < 1`` or ``out_dir`` is an existing file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output path {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    n_sessions = config.n_animals * len(config.stages)
    if n_workers is None:
        # a daemonic process (e.g. a pool or Dask worker) may not start children
        n_workers = 1 if current_process().daemon else min(2, os.cpu_count() or 1, n_sessions)
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")

    t0 = time.perf_counter()
    tasks: list[_SessionTask] = []
    for a, animal_ss in enumerate(np.random.SeedSequence(config.seed).spawn(config.n_animals)):
        pop_ss, *sess_ss = animal_ss.spawn(1 + len(config.stages))
        pop = make_population(
            np.random.default_rng(pop_ss),
            height=config.height,
            width=config.width,
            cell_density=config.cell_density,
            background_scale=config.background_scale,
        )
        for s, stage in enumerate(config.stages):
            tasks.append(_SessionTask(out_dir, config, animal_name(a), stage, s + 1, pop, sess_ss[s]))

    results: list[dict[str, Any]] = []
    if n_workers == 1 or n_sessions == 1:
        for task in tasks:
            res = _simulate_session(task)
            results.append(res)
            if progress is not None:
                progress(res["summary"])
    else:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context()) as pool:
            for res in pool.map(_simulate_session, tasks):
                results.append(res)
                if progress is not None:
                    progress(res["summary"])

    manifest = out_dir / MANIFEST_NAME
    write_csv(manifest, MANIFEST_HEADER, [r["row"] for r in results])
    log.info("simulated %d sessions in %.1f s -> %s", n_sessions, time.perf_counter() - t0, manifest)
    return manifest
