"""Shared image filters: edge-aware smoothing and the nearest frame with data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dffcore.core.errors import DffError
from dffcore.ops.filters import nearest_valid, opencv_threads, wls_smoother


def _two_regions(h: int = 40, w: int = 60) -> np.ndarray:
    """Guide: dark left half, bright right half (RGB in [0, 1])."""
    guide = np.zeros((h, w, 3), np.float32)
    guide[:, w // 2 :] = 0.8
    guide += np.random.default_rng(1).normal(0, 0.01, guide.shape).astype(np.float32)
    return np.clip(guide, 0, 1)


def test_wls_smooths_within_regions_and_not_across_guide_edges() -> None:
    guide = _two_regions()
    h, w = guide.shape[:2]
    rng = np.random.default_rng(0)
    data = np.where(np.arange(w) < w // 2, 0.0, 1.0)[None].repeat(h, 0).astype(np.float32)
    noisy = data + rng.normal(0, 0.2, data.shape).astype(np.float32)
    out = wls_smoother(guide, 300, 0.05)(noisy)
    left, right = out[:, : w // 2], out[:, w // 2 :]
    assert np.abs(out - data).std() < 0.25 * np.abs(noisy - data).std()  # noise removed
    assert abs(left.mean()) < 0.05 and abs(right.mean() - 1) < 0.05  # sides kept apart
    assert left[:, -1].mean() < 0.1 and right[:, 0].mean() > 0.9  # even next to the edge
    flat = wls_smoother(np.full_like(guide, 0.5), 300, 0.05)(noisy)  # no guide edge:
    assert flat[:, w // 2 - 1].mean() > 0.3  # the step is smoothed over


def test_wls_keeps_constants_and_filters_channels_alike() -> None:
    guide = _two_regions()
    smooth = wls_smoother(guide, 100, 0.05)
    assert np.allclose(smooth(np.full(guide.shape[:2], 3.0, np.float32)), 3.0, atol=1e-4)
    rng = np.random.default_rng(2)
    stack = rng.random((*guide.shape[:2], 6)).astype(np.float32)  # 6 channels: 4 + 2
    out = smooth(stack)
    assert out.shape == stack.shape
    for k in range(6):
        assert np.allclose(out[:, :, k], smooth(np.ascontiguousarray(stack[:, :, k])), atol=1e-5)


def test_wls_weight_fills_holes_from_the_same_region() -> None:
    guide = _two_regions()
    h, w = guide.shape[:2]
    data = np.where(np.arange(w) < w // 2, 2.0, 5.0)[None].repeat(h, 0).astype(np.float32)
    weight = np.ones((h, w), np.float32)
    data[10:20, 10:20] = 100.0  # garbage where the weight is 0
    weight[10:20, 10:20] = 0
    out = wls_smoother(guide, 300, 0.05)(data, weight)
    assert np.allclose(out[10:20, 10:20], 2.0, atol=0.05)
    assert np.allclose(out[:, w // 2 + 2 :], 5.0, atol=0.05)


def test_wls_without_opencv_contrib_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    with pytest.raises(DffError) as err:
        wls_smoother(_two_regions(), 10, 0.05)
    assert "\n" not in str(err.value) and "opencv-contrib-python-headless" in str(err.value)


def test_nearest_valid_moves_to_the_closest_frame_with_data() -> None:
    valid = np.array(
        [  # frames x 1 x 4 pixels
            [[1, 1, 0, 0]],
            [[0, 1, 0, 0]],
            [[0, 0, 0, 0]],
            [[1, 1, 0, 1]],
        ],
        bool,
    )
    labels = np.array([[2, 2, 1, 0]])
    # pixel 0: frames 0 and 3 have data, 2 -> 3 (1 away) beats 0 (2 away)
    # pixel 1: frames 1 and 3 tie at 1 away: the lower frame wins
    # pixel 2: no frame has data: the label stays
    # pixel 3: only frame 3
    assert nearest_valid(labels, valid).tolist() == [[3, 1, 1, 3]]
    assert nearest_valid(labels, None) is labels


def test_wls_smoother_gives_the_same_result_from_several_threads() -> None:
    """OpenCV's filter object is not thread-safe (one object shared by three threads gave
    errors of 0.2-0.4 on data in [0, 1] at this size): each thread must get its own."""
    from concurrent.futures import ThreadPoolExecutor

    guide = _two_regions(240, 320)
    rng = np.random.default_rng(3)
    data = rng.random((12, 240, 320)).astype(np.float32)
    smooth = wls_smoother(guide, 300, 0.05)
    with opencv_threads(1):  # OpenCV's own split of a call changes the last bits
        alone = [smooth(d) for d in data]
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(smooth, data))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)
    # channels filtered one by one equal the slices filtered alone
    stacked = smooth(np.ascontiguousarray(np.moveaxis(data[:5], 0, -1)))
    np.testing.assert_array_equal(np.moveaxis(stacked, -1, 0), np.stack(alone[:5]))
