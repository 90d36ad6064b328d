"""Tests of the simulated movie (cellsift.pipeline.sim.movie)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cellsift.pipeline.sim.activity import make_protocol, simulate_activity
from cellsift.pipeline.sim.movie import build_scene, render_movie, shift_frames
from cellsift.pipeline.sim.population import make_population


def test_movie_blocks_do_not_change_pixels() -> None:
    rng = np.random.default_rng(5)
    pop = make_population(rng, height=40, width=48, cell_density=30.0)
    prot = make_protocol(rng, duration_s=10.0, shocks=False)
    act = simulate_activity(pop, prot, "safety", n_frames=200, fps=20.0, motion_px=1.0, rng=rng)
    scene = build_scene(pop, fov_offset=(0.3, -0.7), noise_scale=1.0)
    one = np.concatenate(list(render_movie(pop, scene, act, np.random.default_rng(1), block_frames=200)))
    many = np.concatenate(list(render_movie(pop, scene, act, np.random.default_rng(1), block_frames=37)))
    assert one.shape == (200, 40, 48) and np.array_equal(one, many)


def test_shift_matches_ndimage() -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((20, 17, 23)).astype(np.float32)
    shifts = rng.normal(0.0, 2.0, (20, 2))
    shifts[0] = 0.0
    shifts[1] = (2.0, -1.0)
    gains = rng.uniform(0.8, 1.0, 20)
    got = shift_frames(frames, shifts, gains)
    ref = np.stack(
        [
            ndimage.shift(f, s, order=1, mode="nearest") * g
            for f, s, g in zip(frames, shifts, gains, strict=True)
        ]
    )
    assert np.allclose(got, ref, atol=1e-5)
