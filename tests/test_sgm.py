"""Semi-global aggregation: exact on a tiny problem, fills textureless regions."""

from __future__ import annotations

import itertools

import numpy as np
from dffcore_plugins.aggregate.sgm import SGM, sgm_aggregate

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, FocusVolume
from dffcore.eval.synth import render_stack


def test_one_scanline_path_cost_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    n, w = 3, 4
    cost = rng.random((n, 1, w)).astype(np.float32)
    p1, p2 = 0.1, 0.5

    def penalty(a: int, b: int) -> float:
        return 0.0 if a == b else p1 if abs(a - b) == 1 else p2

    # left-to-right path cost at the last pixel = min over label paths ending there
    expected = []
    for last in range(n):
        best = min(
            sum(cost[lab, 0, x] for x, lab in enumerate((*path, last)))
            + sum(penalty(a, b) for a, b in itertools.pairwise((*path, last)))
            for path in itertools.product(range(n), repeat=w - 1)
        )
        expected.append(best)
    from dffcore_plugins.aggregate.sgm import _scan

    out = np.zeros_like(cost)
    _scan(cost, out, p1, p2, reverse=False)
    # Hirschmüller subtracts the previous minimum at every step: compare up to a constant
    got = out[:, 0, -1]
    np.testing.assert_allclose(got - got.min(), np.array(expected) - min(expected), atol=1e-5)


def test_textureless_hole_takes_the_depth_of_its_surround() -> None:
    n, h, w = 8, 40, 50
    k = np.arange(n)[:, None, None]
    data = np.exp(-((k - 5.0) ** 2) / 2).astype(np.float32).repeat(h, 1).repeat(w, 2)
    data[:, 10:30, 15:35] = 0.01  # no texture: a flat focus curve
    data[2, 10:30, 15:35] += 0.002  # and a faint false peak at slice 2
    frames = np.zeros((n, h, w, 1), np.uint8)
    res = SGM({"sigma": 0})(FocusVolume(data), AlignedStack(frames, 0), Context())
    assert np.abs(res.index[12:28, 17:33] - 5).max() < 0.6
    argmax = np.argmax(data, axis=0)
    assert np.all(argmax[12:28, 17:33] == 2)  # what a local decision would say


def test_eight_directions_and_the_pipeline() -> None:
    cost = np.random.default_rng(1).random((5, 12, 9)).astype(np.float32)
    four, eight = sgm_aggregate(cost, 0.1, 0.5, 4), sgm_aggregate(cost, 0.1, 0.5, 8)
    assert four.shape == eight.shape == cost.shape and np.all(eight > four)
    synth = render_stack("planes", n_frames=8, size=(96, 128), seed=2)

    def mae(aggregate: str) -> float:
        spec = dffcore.load_spec({"aggregate": aggregate})
        run = dffcore.run_pipeline(spec, dffcore.FocalStack(synth.frames))
        return float(np.abs(run.result.index - synth.index).mean())

    assert mae("sgm") < 0.8 * mae("argmax")
