"""Aligners recover known geometry; shared options (fallback, photometry, crop) work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dffcore_plugins.align.flow import FlowAligner

import dffcore
from dffcore.align.apply import largest_valid_rectangle
from dffcore.align.ecc import ecc_pair
from dffcore.align.pairwise import PairwiseAligner
from dffcore.core.components import Context
from dffcore.core.data import FocalStack
from dffcore.eval.synth import SynthStack, render_stack
from dffcore.ops.warp import compose, flow_to_map, grid, to_map

from .conftest import dff

SHAPE = (240, 320)


def _motion(i: int, n: int, h: int, w: int) -> np.ndarray:
    """Reference -> frame i: zoom growing to 3 % over the sweep, a few px of shake, 0.5°."""
    t = i / (n - 1)
    z, a = 1 + 0.03 * t, np.deg2rad(0.5) * t
    dx, dy = 4 * np.sin(3 * t + 1) - 4 * np.sin(1), 4 * np.cos(2 * t) - 4
    c, s = z * np.cos(a), z * np.sin(a)
    cx, cy = w / 2, h / 2
    return np.array(
        [[c, -s, cx - c * cx + s * cy + dx], [s, c, cy - s * cx - c * cy + dy], [0, 0, 1]]
    )


@pytest.fixture(scope="module")
def moved() -> tuple[SynthStack, FocalStack, list[np.ndarray], np.ndarray]:
    synth = render_stack("default", n_frames=12, size=SHAPE, seed=3)
    n, (h, w) = synth.frames.shape[0], SHAPE
    truth = [_motion(i, n, h, w) for i in range(n)]
    frames = np.stack(
        [
            cv2.warpPerspective(
                f, t, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT
            )
            for f, t in zip(synth.frames, truth, strict=True)
        ]
    )
    grey = cv2.cvtColor(synth.all_in_focus, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    textured = cv2.GaussianBlur(energy, (0, 0), 3) > 20
    textured[:20], textured[-20:], textured[:, :20], textured[:, -20:] = False, False, False, False
    return synth, FocalStack(frames), truth, textured


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("homography", {}),
        ("ecc", {}),
        ("flow", {}),
        ("homography", {"refine": "ecc"}),
        ("flow", {"prealign": "ecc"}),
    ],
)
def test_aligners_recover_known_motion(moved: tuple, name: str, params: dict[str, Any]) -> None:
    synth, stack, truth, textured = moved
    spec = dffcore.load_spec({"align": {"name": name, "params": {"reference": 0, **params}}})
    run = dffcore.run_pipeline(spec, stack, intermediates=True)
    errors = np.concatenate(
        [
            np.linalg.norm(
                to_map(run.alignment.transforms[i], SHAPE) - to_map(truth[i], SHAPE), axis=2
            )[textured]
            for i in range(1, stack.n)
        ]
    )
    assert np.nanmedian(errors) < 0.3, np.nanmedian(errors)
    # depth from the aligned frames ≈ depth from the untransformed stack, on the pixels
    # every aligned frame covers (outside them the moved stack has no data)
    still = dffcore.run_pipeline(dffcore.load_spec({}), FocalStack(synth.frames))
    covered = np.ones(SHAPE, bool) if run.aligned.valid is None else run.aligned.valid.all(0)
    mae_moved = np.abs(run.result.index - synth.index)[covered].mean()
    mae_still = np.abs(still.result.index - synth.index)[covered].mean()
    assert mae_moved <= 1.1 * mae_still, (mae_moved, mae_still)


def test_pixels_outside_a_frame_are_invalid_and_unreliable(moved: tuple) -> None:
    _, stack, _, _ = moved
    run = dffcore.run_pipeline(dffcore.load_spec({"align": "ecc"}), stack, intermediates=True)
    valid = run.aligned.valid
    assert valid is not None and valid[0].all()
    assert not valid[-1].all() and valid[-1][100:140, 140:180].all()
    # where the slices at and around the chosen depth lack data, the result says so
    near = np.rint(run.result.index).astype(int)
    missing = np.zeros(SHAPE, bool)
    for k in (near - 1, near, near + 1):
        missing |= ~np.take_along_axis(valid, np.clip(k, 0, stack.n - 1)[None], 0)[0]
    assert 0 < missing.mean() < 0.2
    assert np.all(run.result.confidence[missing] == 0)
    assert np.all(run.result.confidence[~missing] > 0)


def test_crop_to_the_region_valid_in_every_frame(moved: tuple, tmp_path: Path) -> None:
    _, stack, _, _ = moved
    run = dffcore.run_pipeline(
        dffcore.load_spec({"align": {"name": "ecc", "params": {"crop": True}}}),
        stack,
        intermediates=True,
    )
    x, y, w, h = run.crop
    assert run.aligned.valid is None and run.result.index.shape == (h, w)
    assert 0 < w < SHAPE[1] and 0 < h < SHAPE[0] and x > 0 and y > 0
    dffcore.write_outputs(run, tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["crop"] == {"x": x, "y": y, "w": w, "h": h}


def test_largest_valid_rectangle_is_inside_the_mask() -> None:
    mask = np.zeros((50, 60), bool)
    cv2.fillConvexPoly(mask.view(np.uint8), np.array([[5, 8], [55, 3], [58, 45], [2, 48]]), 1)
    y0, y1, x0, x1 = largest_valid_rectangle(mask)
    assert mask[y0:y1, x0:x1].all()
    assert (y1 - y0) * (x1 - x0) > 0.6 * mask.sum()


def test_exposure_drift_is_fitted_per_frame(synth: SynthStack) -> None:
    frames = synth.frames.astype(np.float32)
    gains = np.linspace(1.0, 0.8, synth.frames.shape[0])
    drifted = np.clip(frames * gains[:, None, None, None] + 10, 0, 255).astype(np.uint8)
    spec = dffcore.load_spec({"align": {"name": "none", "params": {"photometric": "gain-offset"}}})
    run = dffcore.run_pipeline(spec, FocalStack(drifted), intermediates=True)
    fitted = [gain for gain, _ in run.alignment.exposure[1:]]
    assert run.alignment.exposure[0] is None  # the reference
    assert run.alignment.frame_records()[1]["exposure"]["gain"] == round(fitted[0], 5)
    # the fit maps frame i back onto frame 0: gain ≈ 1 / gains[i]
    np.testing.assert_allclose(fitted, 1 / gains[1:], rtol=0.03)
    means = run.aligned.frames.reshape(len(gains), -1).mean(axis=1)
    assert np.ptp(means) < 0.1 * np.ptp(drifted.reshape(len(gains), -1).mean(axis=1))


def test_flow_composition_is_not_a_sum_of_vectors() -> None:
    shape = (40, 50)
    rot = cv2.getRotationMatrix2D((25, 20), 10, 1.1)
    h1 = np.vstack([rot, [0, 0, 1]])
    h2 = np.vstack([cv2.getRotationMatrix2D((10, 30), -8, 0.95), [0, 0, 1]])
    h2[:2, 2] += [3.5, -2.0]
    composed = compose(to_map(h1, shape), to_map(h2, shape), shape)
    direct = to_map(h2 @ h1, shape)
    inside = np.isfinite(composed).all(axis=2)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(composed[inside], direct[inside], atol=0.05)
    summed = to_map(h1, shape) + (to_map(h2, shape) - grid(shape))  # the naive answer
    assert np.abs(summed - direct)[inside].max() > 0.5
    assert flow_to_map(np.zeros((*shape, 2), np.float32)).tolist() == grid(shape).tolist()


class _Inconsistent(FlowAligner):
    """On the left half, forward and backward flow both say +2 px: inconsistent; on the
    right half both say 0: consistent."""

    name = "test-inconsistent"

    def pair_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flow = np.zeros((*a.shape[:2], 2), np.float32)
        flow[:, : a.shape[1] // 2] = 2.0
        return flow


def test_forward_backward_check_invalidates_inconsistent_flow(synth: SynthStack) -> None:
    stack = FocalStack(synth.frames[:3])
    aligned = _Inconsistent({"reference": 0, "still_test": 0})(stack, Context())
    w = stack.shape[1]
    assert aligned.valid is not None and aligned.valid[0].all()
    assert not aligned.valid[1][:, : w // 2 - 4].any()
    assert aligned.valid[1][:-1, w // 2 + 4 : -1].all()  # the last row and column: no back flow
    assert 0.45 < aligned.diagnostics[1]["occluded_fraction"] < 0.55


class _Failing(PairwiseAligner):
    name = "test-failing"

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[None, dict[str, Any]]:
        return None, {"failure": "synthetic failure"}


def test_failure_is_reported_per_frame_and_fallbacks_apply(synth: SynthStack) -> None:
    stack = FocalStack(synth.frames[:3])
    with pytest.raises(dffcore.DffError, match=r"frame 1 .*synthetic failure.*fallback"):
        _Failing({"fallback": "error"})(stack, Context())
    with pytest.raises(dffcore.DffError, match=r"no pair of frames could be aligned .*align: none"):
        _Failing()(stack, Context())  # interpolate: but there is nothing to interpolate from
    out = _Failing({"fallback": "identity", "still_test": 0})(stack, Context())
    assert out.diagnostics[2]["fallback"] == "identity" and np.allclose(
        out.transforms[2], np.eye(3)
    )
    out = _Failing({"fallback": "ecc"})(stack, Context())
    assert out.diagnostics[1]["fallback"] == "ecc" and "ecc_correlation" in out.diagnostics[1]


def test_ecc_pair_recovers_a_shift_between_differently_blurred_images() -> None:
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((200, 240)).astype(np.float32), (0, 0), 1.5)
    shift = np.float32([[1, 0, 2.4], [0, 1, -1.7]])
    moved = cv2.warpAffine(
        tex,
        shift,
        (240, 200),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    moved = cv2.GaussianBlur(moved, (0, 0), 1.0)  # the neighbouring slice is blurrier
    t, diag = ecc_pair(tex, moved, "translation")
    assert t is not None and diag["ecc_correlation"] > 0.8
    # moved(y) = tex(y + s): what is at x in tex is at x - s in moved
    np.testing.assert_allclose(t[:2, 2], [-2.4, 1.7], atol=0.1)


def test_aligner_failure_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "blank"
    folder.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(folder / "0.png"), rng.integers(0, 255, (60, 80), np.uint8))
    cv2.imwrite(str(folder / "1.png"), np.zeros((60, 80), np.uint8))
    proc = dff("run", "classic", str(folder), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "1.png" in proc.stderr and "align: none" in proc.stderr


def test_composing_keeps_missing_correspondences_missing() -> None:
    shape = (6, 7)
    m = grid(shape)
    m[1, 2] = np.nan
    for then in (np.eye(3), to_map(np.eye(3), shape)):
        out = compose(m, then, shape)
        assert np.isnan(out[1, 2]).all() and np.isfinite(out[0, 0]).all()
