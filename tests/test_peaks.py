"""Sub-frame peak fits against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from dffcore.ops.peaks import refine_index, subframe_offset


def test_parabola_through_three_points() -> None:
    # y = -(x - 0.3)^2 + 5 sampled at -1, 0, 1: 3.31, 4.91, 4.51 -> vertex at 0.3
    off = subframe_offset(np.array([3.31]), np.array([4.91]), np.array([4.51]), "parabolic")
    assert off[0] == pytest.approx(0.3, abs=1e-5)


def test_gaussian_fit_is_exact_for_a_gaussian_curve() -> None:
    k = np.arange(7, dtype=np.float64)
    curve = 2.0 * np.exp(-((k - 3.27) ** 2) / (2 * 1.3**2))
    off = subframe_offset(curve[2:3], curve[3:4], curve[4:5], "gaussian")
    assert off[0] == pytest.approx(0.27, abs=1e-4)
    # a parabola on the same samples is biased (it is not the curve's shape)
    assert abs(subframe_offset(curve[2:3], curve[3:4], curve[4:5], "parabolic")[0] - 0.27) > 1e-3


def test_flat_or_valley_curves_get_no_offset() -> None:
    ones = np.ones(3)
    assert subframe_offset(ones, ones, ones, "parabolic").tolist() == [0, 0, 0]
    assert subframe_offset(np.array([3.0]), np.array([1.0]), np.array([2.0]), "gaussian")[0] == 0


def test_refine_index_on_a_volume_with_edges() -> None:
    k = np.arange(6, dtype=np.float32)[:, None, None]
    centres = np.array([[2.4, 0.0, 5.0]], np.float32)
    curves = np.exp(-((k - centres) ** 2) / 2).astype(np.float32)
    labels = np.rint(centres).astype(int)
    out = refine_index(curves, labels, "gaussian")
    np.testing.assert_allclose(out, [[2.4, 0.0, 5.0]], atol=1e-4)  # ends keep their label
