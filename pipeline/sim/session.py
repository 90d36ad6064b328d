"""One simulated session: activity, movie, CNMF-E-like extraction, behaviour and truth.

:func:`simulate_session` writes one ``<animal>/d<day>_<stage>/`` folder of the layout
described in :mod:`cellsift.pipeline.sim.cohort`. Its randomness comes from the
session's :class:`numpy.random.SeedSequence`, spawned into five independent streams
(protocol, activity, movie noise, extraction, everything else), so the files depend on
the seed only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.pipeline.sim.activity import Activity, Protocol, make_protocol, simulate_activity
from cellsift.pipeline.sim.behaviour import FREEZING_FILE, simulate_freezing, write_freezing_csv
from cellsift.pipeline.sim.cnmf_extract import extract_cnmf
from cellsift.pipeline.sim.cnmf_movie import MovieCollector, plan_reduction
from cellsift.pipeline.sim.config import SimulationConfig, session_name
from cellsift.pipeline.sim.extract import Extraction, extract_units
from cellsift.pipeline.sim.footprints import Unit
from cellsift.pipeline.sim.movie import ProjectionStats, Scene, build_scene, render_movie
from cellsift.pipeline.sim.population import Population
from cellsift.pipeline.sim.writers import (
    EVENTS_HEADER,
    LABELS_HEADER,
    MiniscopeWriter,
    write_cnmfe_mat,
    write_csv,
    write_json,
    write_miniscope_metadata,
    write_timestamps,
)
from cellsift.schemas import TRUTH_FILE

__all__ = ["FRAMES_PER_FILE", "TRUTH_SCHEMA", "SessionTask", "simulate_session"]

log = logging.getLogger(__name__)

#: Frames per Miniscope AVI chunk (the Miniscope-DAQ-QT default).
FRAMES_PER_FILE: Final = 1000
#: Schema name written into ``truth.json``.
TRUTH_SCHEMA: Final = "cellsift-sim-truth/1"
#: Float32 pixels per movie block: small enough to stay in cache (fast) and to bound
#: memory at any frame size and session length.
_BLOCK_PIXELS: Final = 2_500_000


@dataclass(frozen=True)
class SessionTask:
    """Everything one session needs (picklable, for worker processes).

    Attributes
    ----------
    out_dir
        The cohort folder.
    config
        The cohort's settings.
    animal
        Animal folder name (``m01``, ...).
    stage
        The session's stage.
    day
        The session's day (1-based).
    population
        The animal's population.
    seed
        The session's seed sequence.
    extraction
        Source of the extraction output: ``"rules"`` or ``"cnmf"``.
    """

    out_dir: Path
    config: SimulationConfig
    animal: str
    stage: str
    day: int
    population: Population
    seed: np.random.SeedSequence
    extraction: str = "rules"


def _unit_record(
    unit: Unit, uid: int, pop: Population, n_spk: np.ndarray, shape: tuple[int, int]
) -> dict[str, Any]:
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
        "centroid_yx": [float((ys * wgt).sum() / wgt.sum()), float((xs * wgt).sum() / wgt.sum())]
        if wgt.size
        else None,
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
    rec.update(unit.info)
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


def simulate_session(task: SessionTask) -> dict[str, Any]:
    """Simulate and write one session.

    Parameters
    ----------
    task
        The session.

    Returns
    -------
    dict
        ``row``: the session's manifest row (see
        :data:`~cellsift.pipeline.sim.writers.MANIFEST_HEADER`); ``summary``: one line
        of text.
    """
    with _one_blas_thread():
        return _simulate_session_inner(task)


def _start_time(task: SessionTask) -> dict[str, int]:
    """A plausible, deterministic ``recordingStartTime``: one session a day from 4 March 2024."""
    start = datetime(2024, 3, 4, 9) + timedelta(days=task.day - 1, hours=int(task.animal[1:]) % 9)
    return {
        "year": start.year,
        "month": start.month,
        "day": start.day,
        "hour": start.hour,
        "minute": 0,
        "second": 0,
        "msec": 0,
    }


def _write_movie(
    task: SessionTask,
    scene: Scene,
    activity: Activity,
    scope: Path,
    r_movie: np.random.Generator,
    r_misc: np.random.Generator,
    collector: MovieCollector | None = None,
) -> dict[str, np.ndarray]:
    """Render and write the Miniscope folder (feeding ``collector``); return the movie's summary images."""
    cfg = task.config
    stats = ProjectionStats(cfg.height, cfg.width, box_px=int(round(9 * cfg.cell_scale)) | 1)
    block = max(1, min(500, _BLOCK_PIXELS // (cfg.height * cfg.width)))
    with MiniscopeWriter(
        scope,
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        codec=cfg.video_codec,
        frames_per_file=FRAMES_PER_FILE,
    ) as writer:
        for frames in render_movie(task.population, scene, activity, r_movie, block_frames=block):
            writer.write(frames)
            stats.update(frames)
            if collector is not None:
                collector.update(frames)
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
    return stats.results()


def _write_extraction(
    folder: Path, cfg: SimulationConfig, pop: Population, ext: Extraction, images: dict[str, np.ndarray]
) -> None:
    """Write ``cnmfe_results.mat`` (traces times ``trace_scale``) and ``labels.csv``."""
    gsig = _median_diameter(pop) / 4.0
    scale = cfg.trace_scale
    traces = {"C": ext.C, "C_raw": ext.C_raw, "S": ext.S}
    if scale != 1.0:
        traces = {k: v * scale for k, v in traces.items()}
    write_cnmfe_mat(
        folder / "cnmfe_results.mat",
        A=ext.A,
        C=traces["C"],
        C_raw=traces["C_raw"] if cfg.write_c_raw else None,
        S=traces["S"],
        ids=ext.ids,
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        Cn=images["Cn"],
        PNR=images["PNR"],
        extra_options={"gSig": round(gsig), "gSiz": 4 * round(gsig) + 1, "Fs": float(cfg.fps)},
    )
    write_csv(
        folder / "labels.csv",
        LABELS_HEADER,
        [(int(i), u.label, u.reason) for i, u in zip(ext.ids, ext.units, strict=True)],
    )


def _median_diameter(pop: Population) -> float:
    """Median soma diameter (px) of the in-focus neurons."""
    return float(np.median([nr.blob.diameter_px for nr in pop.neurons[: pop.n_in_focus]]))


def _collector(
    task: SessionTask, activity: Activity, scope: Path, rng: np.random.Generator
) -> MovieCollector:
    """The movie collector of a CNMF-style extraction.

    Registration leaves an error of about 0.08 px plus 5 % of the shift.
    """
    cfg = task.config
    motion = activity.motion_px
    err = rng.normal(0.0, 0.08, motion.shape) + 0.05 * motion * rng.standard_normal(motion.shape)
    plan = plan_reduction(cfg.height, cfg.width, cfg.n_frames, _median_diameter(task.population))
    return MovieCollector(plan, motion + err, scope)


def _write_behaviour(
    folder: Path, cfg: SimulationConfig, stage: str, protocol: Protocol, r_misc: np.random.Generator
) -> None:
    """Write ``events.csv`` and the simulated ``freezing.csv``."""
    write_csv(
        folder / "events.csv",
        EVENTS_HEADER,
        [
            (n, f"{a:.3f}", f"{b:.3f}")
            for n, a, b in zip(protocol.names, protocol.onset_s, protocol.offset_s, strict=True)
        ],
    )
    events = pd.DataFrame(
        {"event": list(protocol.names), "onset_s": protocol.onset_s, "offset_s": protocol.offset_s}
    )
    freezing = simulate_freezing(events, n_frames=cfg.n_frames, fps=cfg.fps, stage=stage, rng=r_misc)
    write_freezing_csv(folder / FREEZING_FILE, freezing, cfg.fps)


def _config_record(cfg: SimulationConfig) -> dict[str, Any]:
    """The settings for ``truth.json``; the domain settings only where they are not the default."""
    rec: dict[str, Any] = {**asdict(cfg), "stages": list(cfg.stages)}
    defaults = {"cell_diameter_px": None, "trace_scale": 1.0, "write_c_raw": True, "extraction": "rules"}
    for key, value in defaults.items():
        if rec[key] == value:
            del rec[key]  # so that a default cohort's truth is unchanged
    return rec


def _truth(task: SessionTask, activity: Activity, ext: Extraction, fov: tuple[float, ...]) -> dict[str, Any]:
    """The session's ``truth.json``: every unit and every simulated cell."""
    cfg = task.config
    pop = task.population
    shape = (cfg.height, cfg.width)
    n_spk = activity.spikes.sum(axis=1)
    units = [_unit_record(u, int(i), pop, n_spk, shape) for i, u in zip(ext.ids, ext.units, strict=True)]
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
    return {
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
        **({} if task.extraction == "rules" else {"extraction": task.extraction}),
        "units": units,
        "cells": cells,
        "config": _config_record(cfg),
    }


def _simulate_session_inner(task: SessionTask) -> dict[str, Any]:
    """Body of :func:`simulate_session`."""
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
    scene = build_scene(pop, fov_offset=(fov[0], fov[1]), noise_scale=cfg.noise_scale)
    collector = _collector(task, activity, scope, r_extract) if task.extraction == "cnmf" else None
    images = _write_movie(task, scene, activity, scope, r_movie, r_misc, collector)
    if collector is not None:
        ext = extract_cnmf(collector, pop, scene, activity, r_extract, fps=cfg.fps)
    else:
        ext = extract_units(
            pop, scene, activity, r_extract, fps=cfg.fps, artifact_fraction=cfg.artifact_fraction
        )
    _write_extraction(folder, cfg, pop, ext, images)
    _write_behaviour(folder, cfg, task.stage, protocol, r_misc)
    write_json(folder / TRUTH_FILE, _truth(task, activity, ext, fov))

    n_good = sum(u.label == "good" for u in ext.units)
    dt = time.perf_counter() - t0
    summary = f"{rel.as_posix()}: {cfg.n_frames} frames, {n_good} cells + {len(ext.units) - n_good} artifacts ({dt:.1f} s)"
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
