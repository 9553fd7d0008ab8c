"""Behaviour of the classic pipeline's components, checked against independent values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dffcore_plugins.aggregate.argmax import Argmax
from dffcore_plugins.align.homography import Homography
from dffcore_plugins.focus.log import LoG
from dffcore_plugins.regularize.weighted_median import CLASSIC_WEIGHTS, weighted_median

from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocalStack, FocusVolume
from dffcore.core.errors import DffError
from dffcore.eval.synth import render_stack
from dffcore.ops.filters import gaussian


def test_log_of_a_point_is_the_laplacian_kernel() -> None:
    frame = np.zeros((7, 7, 1), np.float32)
    frame[3, 3] = 1.0
    out = LoG({"gaussian_ksize": 1, "laplacian_ksize": 1}).measure(frame)
    assert out[3, 3] == pytest.approx(4.0)
    assert out[2, 3] == out[4, 3] == out[3, 2] == out[3, 4] == pytest.approx(1.0)
    assert out[2, 2] == 0 and out.dtype == np.float32


def test_log_is_larger_on_the_sharper_frame() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.random((64, 64, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2)
    m = LoG()
    assert m.measure(sharp).mean() > 3 * m.measure(blurred).mean()


def _reference_weighted_median(img: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-pixel loops, as in the course project, with a mirrored border."""
    r = weights.shape[0] // 2
    padded = np.pad(img, r, mode="reflect")
    out = np.empty_like(img)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            window = padded[y : y + 2 * r + 1, x : x + 2 * r + 1]
            out[y, x] = np.median(np.repeat(window.ravel(), weights.ravel()))
    return out


def test_weighted_median_matches_a_per_pixel_reference() -> None:
    img = np.random.default_rng(3).integers(0, 12, (13, 17)).astype(np.float32)
    fast = weighted_median(img, CLASSIC_WEIGHTS, chunk_bytes=4096)  # several row chunks
    np.testing.assert_array_equal(fast, _reference_weighted_median(img, CLASSIC_WEIGHTS))


def test_weighted_median_removes_a_spike_at_the_border() -> None:
    img = np.full((10, 10), 4.0, np.float32)
    img[0, 0] = 30.0
    assert weighted_median(img, CLASSIC_WEIGHTS)[0, 0] == 4.0


def test_masked_gaussian_never_leaks_invalid_pixels() -> None:
    img = np.zeros((20, 20), np.float32)
    valid = np.ones((20, 20), bool)
    img[:, 10:], valid[:, 10:] = 1e6, False
    out = gaussian(img, 2.0, valid)
    assert np.all(np.isnan(out[:, 10:]))
    assert np.abs(out[:, :10]).max() < 1e-3


def _aligned(frames: np.ndarray, valid: np.ndarray | None = None) -> AlignedStack:
    return AlignedStack(frames, 0, valid)


def test_argmax_ignores_frames_invalid_at_a_pixel() -> None:
    data = np.zeros((3, 8, 8), np.float32)
    data[0], data[1], data[2] = 1.0, 5.0, 2.0
    valid = np.ones((3, 8, 8), bool)
    valid[1, :, :4] = False  # frame 1 (the sharpest) is missing on the left half
    frames = np.stack([np.full((8, 8, 1), i, np.uint8) for i in range(3)])
    res = Argmax({"sigma": 0}).__call__(
        FocusVolume(data, valid), _aligned(frames, valid), Context()
    )
    assert np.all(res.index[:, :4] == 2) and np.all(res.index[:, 4:] == 1)
    assert np.all(res.all_in_focus[:, :4, 0] == 2)
    assert res.confidence[:, :4].max() < res.confidence[:, 4:].min()  # fewer frames, less trust


def test_argmax_confidence_is_zero_without_texture() -> None:
    data = np.ones((4, 6, 6), np.float32)
    frames = np.zeros((4, 6, 6, 1), np.uint8)
    res = Argmax().__call__(FocusVolume(data), _aligned(frames), Context())
    assert np.all(res.confidence == 0)


@pytest.mark.parametrize("chain", [True, False])
def test_homography_recovers_a_known_zoom_and_shift(chain: bool) -> None:
    # the same sharp frame under known transforms: this checks the geometry (direction,
    # composition, chaining); blur differences between slices are the aligners' issue
    synth = render_stack("planes", n_frames=2, size=(240, 320), seed=4)
    h, w = 240, 320
    truth = []
    frames = np.repeat(synth.frames[:1], 4, axis=0)
    for i in range(1, 4):
        zoom = 1 + 0.01 * i
        c = np.array(
            [[zoom, 0, (1 - zoom) * w / 2 + 1.5 * i], [0, zoom, (1 - zoom) * h / 2 - i], [0, 0, 1]]
        )
        truth.append(c)  # maps reference coordinates to frame i
        frames[i] = cv2.warpPerspective(
            synth.all_in_focus, c, (w, h), borderMode=cv2.BORDER_REFLECT
        )
    frames[0] = synth.all_in_focus
    aligned = Homography({"chain": chain})(FocalStack(frames), Context())
    pts = np.array([[x, y, 1.0] for x in (40, 120, 200) for y in (40, 90, 140)]).T
    for i, c in enumerate(truth, 1):
        est = aligned.transforms[i] @ pts
        ref = c @ pts
        err = np.linalg.norm(est[:2] / est[2] - ref[:2] / ref[2], axis=0)
        assert np.median(err) < 0.3, (i, err)
    assert aligned.valid is not None and not aligned.valid[3, 0, 0] and aligned.valid[0].all()
    assert aligned.diagnostics[1]["inliers"] >= 12


def test_homography_failure_names_the_frame() -> None:
    rng = np.random.default_rng(0)
    frames = np.zeros((3, 60, 80, 3), np.uint8)
    frames[0] = rng.integers(0, 255, (60, 80, 3))
    stack = FocalStack(frames)  # frames 1 and 2 are blank: no features
    with pytest.raises(DffError, match=r"frame 1 .*alignment to frame 0 failed.*fallback"):
        Homography({"fallback": "error"})(stack, Context())
    with pytest.raises(DffError, match=r"no pair of frames could be aligned \(frame 1 \(#1\)"):
        Homography()(stack, Context())  # nothing to interpolate from
    out = Homography({"fallback": "identity"})(stack, Context())
    assert out.transforms[2] is None  # identity pairs: no motion
    assert out.diagnostics[2]["fallback"] == "identity"


def test_regularizers_keep_the_result_shape() -> None:
    res = DepthResult(
        np.zeros((5, 6), np.float32), np.ones((5, 6), np.float32), np.zeros((5, 6, 3), np.uint8)
    )
    from dffcore_plugins.regularize.weighted_median import WeightedMedian

    out = WeightedMedian()(
        res,
        FocusVolume(np.zeros((2, 5, 6), np.float32)),
        _aligned(np.zeros((2, 5, 6, 3), np.uint8)),
        Context(),
    )
    assert out.index.shape == (5, 6) and out.confidence is res.confidence
