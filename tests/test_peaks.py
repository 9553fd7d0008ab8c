"""Sub-frame peak fits against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from dffcore.core.data import FocusVolume
from dffcore.ops.peaks import masked_slices, refine_index, scan_slices, subframe_offset


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


def test_scan_ties_go_to_the_first_slice() -> None:
    """The streaming argmax keeps the lowest slice among equal maxima; NaN never wins."""
    nan = np.nan
    # one row of 5 pixels, 4 slices; expected winners written by hand
    slices = np.array(
        [
            [[0.0, 1.0, 2.0, nan, 5.0]],
            [[0.0, 3.0, 2.0, 4.0, 5.0]],
            [[0.0, 3.0, 1.0, 4.0, 5.0]],
            [[0.0, 2.0, 2.0, 1.0, nan]],
        ],
        np.float32,
    )
    out = np.empty_like(slices)
    scan = scan_slices(iter(slices), slices.shape, out)
    assert scan.index.tolist() == [[0, 1, 0, 1, 0]]
    assert scan.best.tolist() == [[0.0, 3.0, 2.0, 4.0, 5.0]]
    assert scan.total.tolist() == [[0.0, 9.0, 7.0, 9.0, 15.0]]
    assert scan.count.tolist() == [[4, 4, 4, 3, 3]]
    np.testing.assert_array_equal(out, slices)


def test_masked_slices_then_scan_ties_go_to_the_first_valid_slice() -> None:
    """Invalid frames are NaN in ``masked_slices``; among the valid equal maxima the first
    wins."""
    data = np.array([[[7.0, 1.0]], [[7.0, 1.0]], [[7.0, 1.0]]], np.float32)
    valid = np.ones(data.shape, bool)
    valid[0, 0, 0] = False  # frame 0 has no data at pixel 0: frame 1 is the first tie
    volume = FocusVolume(data, valid)
    slices = list(masked_slices(volume, 0.0))
    assert np.isnan(slices[0][0, 0]) and slices[1][0, 0] == 7.0
    assert scan_slices(slices, data.shape).index.tolist() == [[1, 0]]
