"""Tests for the synthetic focal-stack renderer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dffcore.errors import DffError
from dffcore.synth import SCENES, SynthStack, ThinLensCamera, render_stack, write_stack

SMALL = (96, 128)


@pytest.fixture(scope="module")
def stacks() -> dict[str, SynthStack]:
    return {scene: render_stack(scene, n_frames=12, size=SMALL) for scene in SCENES}


def _interior(stack: SynthStack, radius: int) -> np.ndarray:
    """Pixels at least ``radius`` away from depth edges and the image border."""
    gy, gx = np.gradient(stack.index)
    edge = (np.hypot(gx, gy) > 0.2).astype(np.uint8)
    ok = cv2.dilate(edge, np.ones((2 * radius + 1,) * 2, np.uint8)) == 0
    ok[:radius], ok[-radius:], ok[:, :radius], ok[:, -radius:] = False, False, False, False
    return ok


def _sharpest_slice(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax over frames of local Laplacian energy and the peak energy."""
    energy = np.stack(
        [
            cv2.boxFilter(
                cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32), -1) ** 2,
                -1,
                (9, 9),
            )
            for f in frames
        ]
    )
    return energy.argmax(axis=0), energy.max(axis=0)


def test_scenes_listed() -> None:
    assert {"default", "planes", "slant", "steps"} <= set(SCENES)


@pytest.mark.parametrize("scene", SCENES)
def test_shapes_and_dtypes(stacks: dict[str, SynthStack], scene: str) -> None:
    s = stacks[scene]
    n, (h, w) = 12, SMALL
    assert s.frames.shape == (n, h, w, 3) and s.frames.dtype == np.uint8
    assert s.focus_distances_m.shape == (n,) and s.focus_distances_m.dtype == np.float64
    assert np.all(np.diff(s.focus_distances_m) > 0)
    assert s.depth_m.shape == (h, w) and s.depth_m.dtype == np.float32
    assert s.index.shape == (h, w) and s.index.dtype == np.float32
    assert s.all_in_focus.shape == (h, w, 3) and s.all_in_focus.dtype == np.uint8
    assert s.scene == scene and isinstance(s.camera, ThinLensCamera)
    # focus distances evenly spaced in diopters, covering the scene
    assert np.allclose(np.diff(1.0 / s.focus_distances_m), np.diff(1.0 / s.focus_distances_m)[0])
    f = s.focus_distances_m
    assert f[0] - 1e-6 <= s.depth_m.min() and s.depth_m.max() <= f[-1] + 1e-6
    assert s.frames.std() > 20  # textured, not blank


def test_deterministic() -> None:
    a = render_stack("default", n_frames=6, size=(48, 64), seed=3, noise_sigma=2.0)
    b = render_stack("default", n_frames=6, size=(48, 64), seed=3, noise_sigma=2.0)
    c = render_stack("default", n_frames=6, size=(48, 64), seed=4, noise_sigma=2.0)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.index, b.index)
    assert np.array_equal(a.all_in_focus, b.all_in_focus)
    assert not np.array_equal(a.frames, c.frames)


def test_noise_changes_frames() -> None:
    clean = render_stack("planes", n_frames=4, size=(48, 64))
    noisy = render_stack("planes", n_frames=4, size=(48, 64), noise_sigma=3.0)
    diff = noisy.frames.astype(float) - clean.frames.astype(float)
    assert 2.0 < diff.std() < 4.0
    assert np.array_equal(clean.index, noisy.index)
    assert np.array_equal(clean.all_in_focus, noisy.all_in_focus)


@pytest.mark.parametrize("scene", SCENES)
def test_index_consistent_with_depth(stacks: dict[str, SynthStack], scene: str) -> None:
    s = stacks[scene]
    n = len(s.focus_distances_m)
    assert s.index.min() >= 0.0 and s.index.max() <= n - 1
    d, df = 1.0 / s.depth_m.astype(float), 1.0 / s.focus_distances_m
    expected = (df[0] - d) / (df[0] - df[-1]) * (n - 1)  # linear in diopters
    assert np.allclose(s.index, expected, atol=1e-3)
    # a pixel exactly at focus distance k has index k
    k = np.arange(n)
    assert np.allclose(np.interp(df[k][::-1], df[::-1], k[::-1].astype(float)), k[::-1])


def test_slant_index_linear_in_x(stacks: dict[str, SynthStack]) -> None:
    idx = stacks["slant"].index
    assert np.allclose(idx, idx[:1])  # constant down columns
    assert np.all(np.diff(idx[0]) > 0)
    assert np.allclose(np.diff(idx[0], 2), 0.0, atol=1e-3)


@pytest.mark.parametrize("scene", SCENES)
def test_sharpness_peaks_at_ground_truth(stacks: dict[str, SynthStack], scene: str) -> None:
    s = stacks[scene]
    best, _ = _sharpest_slice(s.frames)
    _, texture = _sharpest_slice(s.all_in_focus[None])
    ok = _interior(s, radius=10) & (texture > 0.1 * np.median(texture))  # skip flat regions
    err = np.abs(best - s.index)[ok]
    assert ok.sum() > 500
    assert np.mean(err <= 1.0) > 0.97, np.mean(err <= 1.0)
    assert np.median(err) < 0.6
    # a few individual pixels, one per surface / position
    ys, xs = np.nonzero(ok)
    for i in np.linspace(0, len(ys) - 1, 7).astype(int):
        assert abs(best[ys[i], xs[i]] - s.index[ys[i], xs[i]]) <= 1.0


def test_steps_has_low_texture_band(stacks: dict[str, SynthStack]) -> None:
    s = stacks["steps"]
    _, peak = _sharpest_slice(s.frames)
    band_peak = [np.median(peak[:, x]) for x in np.linspace(8, SMALL[1] - 8, 5).astype(int)]
    assert min(band_peak) < 0.05 * np.median(band_peak)
    assert len(np.unique(np.round(s.index[0], 3))) == 5


def test_coc_zero_at_focus_and_grows() -> None:
    cam = ThinLensCamera()
    assert cam.coc_px(1.0, 1.0) == pytest.approx(0.0)
    near = cam.coc_px(np.array([0.95, 0.9, 0.8]), 1.0)
    far = cam.coc_px(np.array([1.05, 1.1, 1.3]), 1.0)
    assert np.all(np.diff(near) > 0) and np.all(np.diff(far) > 0)
    # thin-lens formula, in pixels
    f, n, s, z = 25.0, 2.0, 1000.0, 800.0
    assert cam.coc_px(0.8, 1.0) == pytest.approx(f * f / (n * (s - f)) * (s - z) / z / 0.01)
    # default sweep: maximum blur in the 10-16 px range
    stack_blur = max(cam.coc_px(0.8, 1.25), cam.coc_px(1.25, 0.8))
    assert 10.0 <= stack_blur <= 16.0


def test_frames_blur_away_from_focus(stacks: dict[str, SynthStack]) -> None:
    s = stacks["planes"]
    sharp = s.all_in_focus.astype(float)
    k = int(np.rint(s.index[5, 5]))  # the background plane
    errs = [np.abs(f.astype(float) - sharp)[:20, 40:60].mean() for f in s.frames]
    assert int(np.argmin(errs)) == k and errs[k] < 3.0


def test_focused_occluder_hides_background() -> None:
    h, w = SMALL
    s = render_stack("planes", n_frames=26, size=SMALL)  # near rectangle exactly at slice 3
    y0, y1, x0, x1 = int(0.2 * h), int(0.85 * h), int(0.08 * w), int(0.34 * w)
    inside = np.s_[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
    assert np.allclose(s.index[inside], 3.0, atol=1e-3)
    sharp = s.all_in_focus.astype(float)
    diff = np.abs(s.frames[3].astype(float) - sharp)[inside]
    assert diff.max() <= 1.0  # sharp and opaque: nothing of the blurred background shows
    # focused on the background, the defocused occluder spreads over it semi-transparently
    beside, far_beside = np.s_[y0 + 10 : y1 - 10, x1 + 1 : x1 + 4], np.s_[5:15, x1 + 1 : x1 + 4]
    k = int(np.rint(s.index[beside].mean()))
    assert np.abs(s.frames[k].astype(float) - sharp)[beside].mean() > 5.0
    assert np.abs(s.frames[k].astype(float) - sharp)[far_beside].mean() < 2.0


def test_write_stack_round_trip(tmp_path) -> None:
    s = render_stack("steps", n_frames=5, size=(32, 40), noise_sigma=1.0)
    out = tmp_path / "sub" / "stack"
    paths = write_stack(s, out)
    assert [p.name for p in paths] == [f"frame_{k:03d}.png" for k in range(5)]
    for p, frame in zip(paths, s.frames, strict=True):
        assert np.array_equal(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), frame)
    text = (out / "focus_distances.txt").read_text()
    assert text.startswith("#")
    assert np.allclose(np.loadtxt(out / "focus_distances.txt"), s.focus_distances_m, rtol=1e-8)
    assert np.array_equal(np.load(out / "ground_truth" / "index.npy"), s.index)
    assert np.array_equal(np.load(out / "ground_truth" / "depth.npy"), s.depth_m)
    aif = cv2.cvtColor(
        cv2.imread(str(out / "ground_truth" / "all_in_focus.png")), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(aif, s.all_in_focus)


def test_bad_arguments() -> None:
    with pytest.raises(DffError, match="Did you mean 'planes'"):
        render_stack("plane")
    with pytest.raises(DffError):
        render_stack(n_frames=1)
    with pytest.raises(DffError):
        render_stack(near_m=2.0, far_m=1.0)
    custom = render_stack("slant", n_frames=3, size=(16, 16), near_m=0.5, far_m=2.0)
    assert np.allclose(custom.focus_distances_m[[0, -1]], [0.5, 2.0])
