"""Tests of the CNMF-style factorisation (cellsift.pipeline.sim.cnmf, cnmf_movie, cnmf_extract)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cellsift.pipeline.sim.cnmf import CnmfParams, factorise
from cellsift.pipeline.sim.cnmf_extract import temporal_update
from cellsift.pipeline.sim.cnmf_movie import SmoothOperator, plan_reduction


def _gauss(shape: tuple[int, int], cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / sigma**2)


def _toy_movie(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 300-frame 48 x 48 movie of four 9 px cells on a drifting smooth background."""
    rng = np.random.default_rng(seed)
    shape = (48, 48)
    centres = [(12, 12), (12, 34), (34, 14), (33, 33)]
    cells = np.stack([_gauss(shape, y, x, 2.1) for y, x in centres])
    t = 300
    spikes = (rng.random((4, t)) < 0.03).astype(float)
    kernel = np.exp(-np.arange(30) / 6.0)
    traces = np.stack([np.convolve(s, kernel)[:t] for s in spikes]) * 20.0
    bg = 40.0 + 10.0 * _gauss(shape, 20, 30, 18.0)
    drift = 1.0 + 0.05 * np.sin(np.arange(t) / 40.0)
    movie = drift[:, None, None] * bg[None] + np.einsum("kt,kyx->tyx", traces, cells)
    movie += rng.normal(0.0, 1.5, movie.shape)
    return movie.astype(np.float32), cells.reshape(4, -1)


def test_factorise_finds_every_cell_of_a_toy_movie() -> None:
    movie, cells = _toy_movie()
    a, c = factorise(movie.copy(), CnmfParams(diameter=9.0))
    assert a.shape[1:] == (48, 48) and c.shape == (a.shape[0], 300)
    flat = a.reshape(len(a), -1)
    assert np.all(flat >= 0) and np.allclose(np.linalg.norm(flat, axis=1), 1.0)
    cos = (flat @ cells.T) / np.linalg.norm(cells, axis=1)[None, :]
    assert np.all(cos.max(axis=0) > 0.8)  # each cell has a component that looks like it
    assert len(a) <= 8  # a few extra (noise) components at most


def test_factorise_is_deterministic() -> None:
    movie, _ = _toy_movie(1)
    a1, c1 = factorise(movie.copy(), CnmfParams(diameter=9.0))
    a2, c2 = factorise(movie.copy(), CnmfParams(diameter=9.0))
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)


def test_smooth_operator_is_a_self_adjoint_gaussian_blur() -> None:
    op = SmoothOperator(60, 80, 6.0)
    rng = np.random.default_rng(0)
    a, b = rng.random((60, 80)), rng.random((60, 80))
    assert float((op.apply(a) * b).sum()) == pytest.approx(float((a * op.apply(b)).sum()), rel=1e-4)
    imp = np.zeros((60, 80))
    imp[30, 40] = 1.0
    ref = ndimage.gaussian_filter(imp, 6.0)
    assert np.abs(op.apply(imp) - ref).max() < 0.02 * ref.max()
    stack = rng.random((3, 2, 60, 80)).astype(np.float32)
    assert np.allclose(op.apply(stack)[1, 0], op.apply(stack[1, 0]), atol=1e-5)
    assert np.allclose(op.high_pass(stack), stack - op.apply(stack), atol=1e-6)


def test_plan_reduction_bounds_memory() -> None:
    default = plan_reduction(160, 160, 2000, 11.5)
    assert (default.ssub, default.tsub) == (1, 2)
    long = plan_reduction(160, 160, 40_000, 11.5)
    assert long.n_reduced * long.reduced_shape[0] * long.reduced_shape[1] <= 32_000_000
    big_cells = plan_reduction(160, 160, 2000, 25.0)
    assert big_cells.ssub == 3 and big_cells.reduced_diameter == pytest.approx(25.0 / 3)
    wide = plan_reduction(608, 608, 20_000, 11.5)
    assert wide.ssub >= 2 and wide.reduced_diameter >= 4.0
    assert wide.n_reduced * wide.reduced_shape[0] * wide.reduced_shape[1] <= 32_000_000


def test_temporal_update_gives_both_duplicates_the_cell() -> None:
    rng = np.random.default_rng(3)
    t = 2000
    signal = np.convolve((rng.random(t) < 0.02) * 10.0, np.exp(-np.arange(40) / 8.0))[:t]
    a = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2]])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    y = np.outer(np.array([1.0, 1.0, 0.15]), signal) + rng.normal(0, 0.3, (3, t))
    gram, rhs = a @ a.T, a @ y
    c_raw = temporal_update(gram, rhs, fps=20.0)
    for k in range(2):
        assert np.corrcoef(c_raw[k], signal)[0, 1] > 0.8
    assert abs(float(np.median(c_raw))) < 0.1 * signal.max()  # baseline near 0
