"""Composition of transforms and chaining to the reference, against hand-written mappings.

A transform maps reference pixels to a frame's pixels; ``compose(first, then)`` is
``then ∘ first`` (first applied first). The transforms below do not commute, so the
order shows in every checked point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dffcore.align.pairwise import chain_to_reference
from dffcore.ops.warp import compose, to_map

SHAPE = (20, 30)  # (H, W) of the grids
#: (x, y) -> (2x, 2y)
SCALE = np.diag([2.0, 2.0, 1.0])
#: (x, y) -> (x + 3, y − 1)
SHIFT = np.array([[1.0, 0, 3], [0, 1, -1], [0, 0, 1]])
#: (x, y) -> (−y, x): a quarter turn about the origin
TURN = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])


def _apply(h: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Each (x, y) mapped by the homography ``h`` (homogeneous coordinates)."""
    p = np.array([[x, y, 1.0] for x, y in points]).T
    q = h @ p
    return (q[:2] / q[2]).T


POINTS = [(0.0, 0.0), (1.0, 1.0), (2.0, 5.0), (7.0, 3.0)]


def test_compose_of_homographies_applies_first_then_then() -> None:
    """Scale then shift: (x, y) -> (2x + 3, 2y − 1); shift then scale would give
    (2x + 6, 2y − 2)."""
    out = compose(SCALE, SHIFT, SHAPE)
    np.testing.assert_allclose(out, [[2, 0, 3], [0, 2, -1], [0, 0, 1]])
    np.testing.assert_allclose(_apply(out, POINTS), [(3, -1), (5, 1), (7, 9), (17, 5)])
    # a quarter turn then a shift of 10 along x: (x, y) -> (10 − y, x)
    shift10 = np.array([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]])
    out = compose(TURN, shift10, SHAPE)
    np.testing.assert_allclose(out, [[0, -1, 10], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(_apply(out, [(1.0, 2.0), (4.0, 0.0)]), [(8, 1), (10, 4)])
    # None is the identity on either side
    np.testing.assert_array_equal(compose(None, SHIFT, SHAPE), SHIFT)
    np.testing.assert_array_equal(compose(SHIFT, None, SHAPE), SHIFT)


@pytest.mark.parametrize("kinds", ["map-homography", "homography-map", "map-map"])
def test_compose_with_maps_applies_first_then_then(kinds: str) -> None:
    """The same scale-then-shift with either side as a dense map: each reference pixel
    (x, y) lands at (2x + 3, 2y − 1) wherever the scaled point lies inside the grid."""
    first_kind, then_kind = kinds.split("-")
    first = to_map(SCALE, SHAPE) if first_kind == "map" else SCALE
    then = to_map(SHIFT, SHAPE) if then_kind == "map" else SHIFT
    out = compose(first, then, SHAPE)
    assert out.shape == (*SHAPE, 2)
    ys, xs = np.mgrid[0:10, 0:15]  # 2x ≤ 28, 2y ≤ 18: inside the 30x20 grid
    np.testing.assert_allclose(out[ys, xs, 0], 2 * xs + 3, atol=1e-4)
    np.testing.assert_allclose(out[ys, xs, 1], 2 * ys - 1, atol=1e-4)


def _fake_pairs(pairs: dict[tuple[int, int], np.ndarray]):
    """An ``estimate(a, b)`` returning known pairwise homographies, recording its calls."""
    calls: list[tuple[int, int]] = []

    def estimate(a: int, b: int) -> tuple[np.ndarray, dict[str, Any]]:
        calls.append((a, b))
        return pairs[(a, b)], {"pair_id": f"{a}{b}"}

    return estimate, calls


def test_chain_to_reference_composes_outward_from_the_reference() -> None:
    """Frame 0 is the reference: transforms[2] = T12 ∘ T01 and transforms[3] = T23 ∘ T12 ∘ T01,
    with T01 a scale by 2, T12 a shift by (3, −1), T23 a quarter turn."""
    estimate, calls = _fake_pairs({(0, 1): SCALE, (1, 2): SHIFT, (2, 3): TURN})
    transforms, diagnostics = chain_to_reference(4, 0, estimate, SHAPE)
    assert sorted(calls) == [(0, 1), (1, 2), (2, 3)]
    assert transforms[0] is None and diagnostics[0] == {"reference": True}
    assert diagnostics[3] == {"pair": [2, 3], "pair_id": "23"}
    np.testing.assert_allclose(_apply(transforms[1], POINTS), [(2 * x, 2 * y) for x, y in POINTS])
    # reference (x, y) -> frame 1 (2x, 2y) -> frame 2 (2x + 3, 2y − 1)
    np.testing.assert_allclose(
        _apply(transforms[2], POINTS), [(2 * x + 3, 2 * y - 1) for x, y in POINTS]
    )
    # ... -> frame 3: the quarter turn of (2x + 3, 2y − 1) is (1 − 2y, 2x + 3)
    np.testing.assert_allclose(
        _apply(transforms[3], POINTS), [(1 - 2 * y, 2 * x + 3) for x, y in POINTS]
    )


def test_chain_to_reference_composes_outward_on_both_sides() -> None:
    """Reference 1 of 3 frames: frame 2 through T12 alone, frame 0 through T10 alone; with
    reference 2, frame 0 is T10 ∘ T21 (a quarter turn, then a shift)."""
    pairs = {(1, 2): SCALE, (1, 0): SHIFT, (2, 1): TURN}
    estimate, _ = _fake_pairs(pairs)
    transforms, _ = chain_to_reference(3, 1, estimate, SHAPE)
    assert transforms[1] is None
    np.testing.assert_allclose(transforms[2], SCALE)
    np.testing.assert_allclose(transforms[0], SHIFT)
    estimate, calls = _fake_pairs(pairs)
    transforms, _ = chain_to_reference(3, 2, estimate, SHAPE)
    assert sorted(calls) == [(1, 0), (2, 1)]
    # reference (x, y) -> frame 1 (−y, x) -> frame 0 (3 − y, x − 1)
    np.testing.assert_allclose(_apply(transforms[0], POINTS), [(3 - y, x - 1) for x, y in POINTS])
    # without chaining every frame is matched to the reference directly
    estimate, calls = _fake_pairs({(0, 1): SCALE, (0, 2): SHIFT})
    transforms, _ = chain_to_reference(3, 0, estimate, SHAPE, chain=False)
    assert sorted(calls) == [(0, 1), (0, 2)]
    np.testing.assert_allclose(transforms[2], SHIFT)
