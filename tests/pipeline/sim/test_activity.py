"""Tests of the simulated protocol and activity (cellsift.pipeline.sim.activity)."""

from __future__ import annotations

import numpy as np

from cellsift.pipeline.sim.activity import make_protocol, simulate_activity
from cellsift.pipeline.sim.population import make_population


def test_protocol_scales_with_length() -> None:
    rng = np.random.default_rng(0)
    p100 = make_protocol(rng, duration_s=100.0, shocks=True)
    p1000 = make_protocol(rng, duration_s=1000.0, shocks=False)
    n100 = len(p100.of("CS+")[0])
    assert 4 <= n100 <= 6 and len(p100.of("CS-")[0]) == n100
    assert len(p100.of("shock")[0]) == n100 and len(p1000.of("shock")[0]) == 0
    assert np.allclose(p100.of("CS+")[1] - p100.of("CS+")[0], 4.5)
    assert len(p1000.of("CS+")[0]) > n100


def test_tone_selective_cells_fire_during_their_tone() -> None:
    rates = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        pop = make_population(rng, height=96, width=96, cell_density=30.0)
        prot = make_protocol(rng, duration_s=100.0, shocks=True)
        act = simulate_activity(pop, prot, "conditioning", n_frames=2000, fps=20.0, motion_px=0.0, rng=rng)
        t = np.arange(2000) / 20.0
        tone = np.zeros(2000, dtype=bool)
        cs_plus = np.zeros(2000, dtype=bool)
        for name in ("CS+", "CS-"):
            for a, b in zip(*prot.of(name), strict=True):
                tone |= (t >= a) & (t < b)
                if name == "CS+":
                    cs_plus |= (t >= a) & (t < b)
        for nr in pop.neurons:
            if nr.tone_selectivity == "CS+" and not act.silent[nr.index]:
                s = act.spikes[nr.index]
                rates.append((s[cs_plus].mean(), s[~tone].mean()))
    rates_a = np.array(rates)
    assert len(rates_a) >= 5
    assert np.mean(rates_a[:, 0] > rates_a[:, 1]) >= 0.8
    assert np.median(rates_a[:, 0]) > 3 * np.median(rates_a[:, 1])
