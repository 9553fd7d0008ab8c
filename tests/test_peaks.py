"""Sub-frame peak fits against hand-computed values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dffcore.core.data import FocusVolume
from dffcore.ops.peaks import (
    coarse_slices,
    masked_slices,
    refine_index,
    scan_slices,
    subframe_offset,
    upsample,
)


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


def _smooth_field(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(n, h, w) float32 curves varying smoothly in space (noise blurred by σ 4 px)."""
    rng = np.random.default_rng(seed)
    data = rng.random((n, h, w)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(d, (0, 0), 4) for d in data])


@pytest.mark.parametrize("shape", [(61, 83), (64, 80)])
def test_coarse_slices_approximate_the_full_resolution_masked_gaussian(shape) -> None:
    """Half resolution then σ' = √(σ² − 1)/2 is close to σ at full resolution, with masks:
    data outside a frame never leaks in (whatever it holds), coarse pixels mostly outside
    are NaN."""
    h, w = shape
    data = _smooth_field(3, h, w)
    valid = np.ones(data.shape, bool)
    valid[1, :, : w // 3] = False
    data[1, :, : w // 3] = 1e6  # would dominate any leak
    volume = FocusVolume(data, valid)
    coarse = list(coarse_slices(volume, 5.0, jobs=2))
    assert all(c.shape == ((h + 1) // 2, (w + 1) // 2) for c in coarse)
    fine = list(masked_slices(volume, 5.0))
    for c, f in zip(coarse, fine, strict=True):
        sub = f[::2, ::2]  # coarse pixel j sits on full-resolution pixel 2j
        both = np.isfinite(c) & np.isfinite(sub)
        assert both.mean() > 0.6
        err = np.where(both, np.abs(c - sub), 0)
        spread = np.nanstd(f)  # of the smoothed field (its values are about 0.5)
        assert err[3:-3, 3:-3].max() < 0.05 * spread  # inside: within 5 % of the contrast
        assert err.max() < 0.5 * spread  # the borders are mirrored half a pixel apart
        assert err[both].mean() < 0.02 * spread
    assert np.isnan(coarse[1][:, : w // 6 - 2]).all()
    assert np.isfinite(coarse[1][:, w // 6 + 2 :]).all()
    assert np.isfinite(coarse[0]).all() and np.isfinite(coarse[2]).all()


def test_upsample_interpolates_ramps_and_keeps_jumps_sharp() -> None:
    """A ramp comes back bilinearly (exact on its coarse samples' grid), a jump of several
    slices keeps only the values of its two sides."""
    h, w = 20, 30
    ramp = (np.arange(15, dtype=np.float32) * 0.1)[None].repeat(10, 0)
    up = upsample(ramp, (h, w))
    np.testing.assert_allclose(up[:, 0:28], (np.arange(28) * 0.05)[None].repeat(h, 0), atol=1e-6)
    step = np.where(np.arange(15) < 7, 2.0, 9.0).astype(np.float32)[None].repeat(10, 0)
    up = upsample(step, (h, w))
    assert set(np.unique(up).tolist()) == {2.0, 9.0}
    # coarse pixel 6 (the last 2) sits on pixel 12, coarse 7 on 14; 13 lies between them
    assert (up[:, :13] == 2).all() and (up[:, 14:] == 9).all()


def test_threaded_masked_slices_match_and_may_be_overwritten_behind() -> None:
    """With jobs > 1 the slices come in order and equal the single-thread ones, even when
    the consumer overwrites each slice of the data once it has it (as the aggregator does)."""
    data = _smooth_field(9, 40, 50, seed=2)
    valid = np.ones(data.shape, bool)
    valid[3, 10:20, 5:30] = False
    expected = list(masked_slices(FocusVolume(data.copy(), valid), 2.0))
    work = data.copy()
    volume = FocusVolume(work, valid)
    for i, s in enumerate(masked_slices(volume, 2.0, jobs=2)):
        np.testing.assert_array_equal(s, expected[i])
        work[i] = -1.0


@pytest.mark.parametrize("n", [5, 300])  # the uint8 running index and the int32 one
@pytest.mark.parametrize("missing", [True, False])
def test_scan_matches_numpy_argmax_nanmax_and_sums(n: int, missing: bool) -> None:
    """The streaming scan against numpy's whole-volume reductions: index = first argmax
    of the valid values (ties included), best = nanmax, total/count over valid values;
    ``totals=False`` gives the same index and best without them."""
    rng = np.random.default_rng(n)
    data = np.round(rng.random((n, 6, 7)) * 3).astype(np.float32)  # many ties
    if missing:
        data[rng.random(data.shape) < 0.3] = np.nan
        data[:, 0, 0] = np.nan  # no valid value: best -inf, index 0
    filled = np.where(np.isnan(data), -np.inf, data)
    for totals in (True, False):
        scan = scan_slices(iter(data), data.shape, missing=missing, totals=totals)
        assert scan.index.dtype == np.int32
        np.testing.assert_array_equal(scan.index, filled.argmax(axis=0))
        np.testing.assert_array_equal(scan.best, filled.max(axis=0))
        if totals:
            np.testing.assert_array_equal(scan.count, np.isfinite(data).sum(axis=0))
            np.testing.assert_allclose(scan.total, np.nansum(data, axis=0), rtol=1e-6)
        else:
            assert scan.total is None and scan.count is None


@pytest.mark.parametrize("totals", [True, False])
def test_scan_of_single_pixel_slices(totals: bool) -> None:
    """1×1 slices (OpenCV reads a tiny array next to a number as a scalar: the scan must
    not)."""
    data = np.array([[[0.5]], [[np.nan]], [[0.7]], [[0.2]]], np.float32)
    scan = scan_slices(data, data.shape, totals=totals)
    assert scan.index.tolist() == [[2]] and scan.best.tolist() == [[np.float32(0.7)]]
    if totals:
        assert scan.count.tolist() == [[3]]
        assert scan.total.tolist() == [[np.float32(0.5) + np.float32(0.7) + np.float32(0.2)]]
