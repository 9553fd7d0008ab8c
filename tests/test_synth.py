"""Tests for the synthetic focal-stack renderer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dffcore.core.errors import DffError
from dffcore.eval.synth import SCENES, SynthStack, ThinLensCamera, render_stack, write_stack
from dffcore.ops.warp import valid_mask, warp

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
    assert {"spheres", "cones", "smooth", "textureless"} <= set(SCENES)


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


# -- new scenes ----------------------------------------------------------------------------
def _depth_of_t(t: float, near: float = 0.8, far: float = 1.25) -> float:
    """Depth (m) at position ``t`` of the diopter range (0 = near, 1 = far), by hand."""
    return 1.0 / (1.0 / near + t * (1.0 / far - 1.0 / near))


# (cy, cx, radius as a fraction of min(H, W), t at the rim, t at the apex), as documented
CAPS = [(0.8, 0.3, 0.14, 0.9, 0.6), (0.35, 0.28, 0.26, 0.75, 0.25), (0.62, 0.7, 0.3, 0.85, 0.08)]


@pytest.mark.parametrize("scene", ["spheres", "cones"])
def test_caps_are_nearest_at_their_centre(stacks: dict[str, SynthStack], scene: str) -> None:
    s = stacks[scene]
    h, w = SMALL
    assert s.depth_m[2, 2] == pytest.approx(_depth_of_t(0.9), rel=1e-5)  # background
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, rf, t_rim, t_apex in CAPS:
        y, x, r = cy * h, cx * w, rf * min(h, w)
        rho = np.hypot(yy - y, xx - x)
        inside = rho < r - 1
        # the depth minimum of the cap is its centre pixel
        iy, ix = np.unravel_index(np.argmin(np.where(inside, s.depth_m, np.inf)), (h, w))
        assert abs(iy - y) <= 1 and abs(ix - x) <= 1
        # profile: sphere sqrt(1 - (rho/r)^2), cone 1 - rho/r, in the diopter position t
        bulge = 1 - rho / r if scene == "cones" else np.sqrt(np.clip(1 - (rho / r) ** 2, 0, 1))
        t = t_rim - (t_rim - t_apex) * bulge
        expected = 1.0 / (1 / 0.8 + t * (1 / 1.25 - 1 / 0.8))
        assert np.allclose(s.depth_m[inside], expected[inside], rtol=1e-4)
        assert s.depth_m[int(y), int(x)] < _depth_of_t(t_apex + 0.05)
        # depth grows monotonically from the centre along a row
        row = s.depth_m[round(y), round(x) : int(x + r - 1)]
        assert np.all(np.diff(row) >= -1e-6) and row[-1] > row[0]


def test_smooth_surface_in_range_continuous_and_seeded() -> None:
    a = render_stack("smooth", n_frames=11, size=(48, 64), seed=1)
    b = render_stack("smooth", n_frames=11, size=(96, 128), seed=1)
    c = render_stack("smooth", n_frames=11, size=(48, 64), seed=2)
    # scaled to 5 %..95 % of the diopter range: index 0.5 .. 9.5 of 0..10
    assert a.index.min() == pytest.approx(0.5, abs=1e-3)
    assert a.index.max() == pytest.approx(9.5, abs=1e-3)
    assert _depth_of_t(0.05) - 1e-5 <= a.depth_m.min() and a.depth_m.max() <= _depth_of_t(0.95)
    # smooth: no jumps between neighbours, and no flat plateaus
    gy, gx = np.abs(np.diff(b.index, axis=0)), np.abs(np.diff(b.index, axis=1))
    assert max(gy.max(), gx.max()) < 0.6
    assert len(np.unique(np.round(b.index, 2))) > 200
    # the shape follows the seed, not the image size
    small_from_b = cv2.resize(b.index, (64, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(small_from_b - a.index).max() < 0.3
    assert np.abs(c.index - a.index).mean() > 1.0


def _gradient_energy(frame: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.Sobel(g, -1, 1, 0) ** 2 + cv2.Sobel(g, -1, 0, 1) ** 2


def test_textureless_patches_stay_flat_in_every_frame() -> None:
    h, w = 192, 256
    s = render_stack("textureless", n_frames=6, size=(h, w), seed=3)
    m = 16  # > 3 sigma of the largest blur (14.5 px circle, sigma 5.1 px)
    floating = np.s_[int(0.15 * h) + m : int(0.55 * h) - m, int(0.1 * w) + m : int(0.45 * w) - m]
    painted = np.s_[int(0.1 * h) + m : int(0.45 * h) - m, int(0.6 * w) + m : int(0.9 * w) - m]
    yy, xx = np.ogrid[:h, :w]
    disc = np.hypot(yy - 0.72 * h, xx - 0.3 * w) < 0.16 * h - m
    background = np.s_[int(0.6 * h) :, int(0.48 * w) : int(0.58 * w)]  # textured strip
    # the painted patch lies on the background plane; the others float at t 0.25 and 0.1
    n = 6
    assert np.allclose(s.index[floating], 0.25 * (n - 1), atol=1e-3)
    assert np.allclose(s.index[disc], 0.1 * (n - 1), atol=1e-3)
    x = np.arange(w, dtype=float)[int(0.6 * w) + m : int(0.9 * w) - m]
    assert np.allclose(s.index[painted][0], (0.55 + 0.4 * x / (w - 1)) * (n - 1), atol=1e-3)
    for frame in [*s.frames, s.all_in_focus]:
        energy = _gradient_energy(frame)
        textured = energy[background].mean()
        assert textured > 300
        for patch in (floating, painted, disc):
            assert energy[patch].mean() < 0.01 * textured


# -- nuisances -----------------------------------------------------------------------------
KW = {"n_frames": 8, "size": SMALL, "seed": 2}


@pytest.fixture(scope="module")
def plain() -> SynthStack:
    return render_stack("default", **KW)


def test_new_options_at_zero_change_nothing(plain: SynthStack) -> None:
    zero = render_stack(
        "default", exposure_flicker=0.0, focus_breathing=0.0, shake_px=0.0, shake_deg=0.0, **KW
    )
    for name in ("frames", "focus_distances_m", "depth_m", "index", "all_in_focus"):
        assert np.array_equal(getattr(zero, name), getattr(plain, name)), name
    assert np.array_equal(plain.transforms, np.broadcast_to(np.eye(3), (8, 3, 3)))
    assert plain.metadata["exposure_gains"] == [1.0] * 8
    # nuisances do not draw from the texture or noise generators: with noise and motion on,
    # frame 0 (never moved) and the ground truth are the same as without motion
    noisy = render_stack("default", noise_sigma=3.0, **KW)
    moved = render_stack("default", noise_sigma=3.0, shake_px=2.0, focus_breathing=0.02, **KW)
    assert np.array_equal(moved.frames[0], noisy.frames[0])
    assert not np.array_equal(moved.frames[1], noisy.frames[1])
    flick = render_stack("default", noise_sigma=3.0, exposure_flicker=0.1, **KW)
    assert np.array_equal(flick.index, plain.index)
    assert np.array_equal(flick.all_in_focus, plain.all_in_focus)


def test_exposure_flicker_scales_frame_means(plain: SynthStack) -> None:
    s = render_stack("default", exposure_flicker=0.08, **KW)
    gains = np.array(s.metadata["exposure_gains"])
    assert gains.shape == (8,) and np.all(gains > 0)
    assert 0.02 < gains.std() < 0.2 and np.abs(gains - 1).max() > 0.02
    for k in range(8):
        clean = plain.frames[k].astype(float)
        ok = clean < 200  # not clipped at 255 after the gain
        ratio = s.frames[k][ok].mean() / clean[ok].mean()
        assert ratio == pytest.approx(gains[k], abs=2e-3)
        # pixel by pixel: round(g x) vs g round(x) differ by rounding only
        assert np.abs(s.frames[k][ok] - gains[k] * clean[ok]).max() <= 0.5 + 0.5 * gains[k] + 1e-3
    assert np.array_equal(s.transforms, plain.transforms)


def _ecc_affine(template: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Affine A with ``moved(A x) ≈ template(x)``, estimated by ECC on grey images."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (template, moved)]
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-7)
    _, a = cv2.findTransformECC(
        *grey, np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE, crit, None, 5
    )
    return a.astype(float)


@pytest.mark.parametrize("breathing", [0.04, -0.03])
def test_focus_breathing_zooms_about_the_centre(plain: SynthStack, breathing: float) -> None:
    s = render_stack("default", focus_breathing=breathing, **KW)
    h, w = SMALL
    assert np.array_equal(s.frames[0], plain.frames[0])  # frame 0: magnification 1
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    for k in (4, 7):
        m = 1 + breathing * k / 7
        assert s.metadata["magnification"][k] == pytest.approx(m)
        # measured on the images, independently of the recorded transform
        a = _ecc_affine(plain.frames[k], s.frames[k])
        assert np.sqrt(np.linalg.det(a[:, :2])) == pytest.approx(m, abs=0.003)
        assert np.abs(a[:, :2] - m * np.eye(2)).max() < 0.005
        # the centre stays put: x' = c + m (x - c)
        assert np.abs(a[:, :2] @ centre + a[:, 2] - centre).max() < 0.3
        expected = np.array([[m, 0, (1 - m) * centre[0]], [0, m, (1 - m) * centre[1]], [0, 0, 1]])
        assert np.allclose(s.transforms[k], expected, atol=1e-9)


def test_shake_warped_back_matches_the_unshaken_render(plain: SynthStack) -> None:
    s = render_stack("default", shake_px=3.0, shake_deg=1.0, focus_breathing=-0.02, **KW)
    h, w = SMALL
    t = s.transforms
    assert t.shape == (8, 3, 3) and np.array_equal(t[0], np.eye(3))
    assert np.array_equal(s.frames[0], plain.frames[0])  # the reference is not moved
    assert np.array_equal(s.index, plain.index) and np.array_equal(s.depth_m, plain.depth_m)
    shifts = [
        np.hypot(*(t[k, :2, :2] @ [w / 2, h / 2] + t[k, :2, 2] - [w / 2, h / 2]))
        for k in range(1, 8)
    ]
    assert max(shifts) > 2.0  # it really moved
    for k in range(1, 8):
        # rotation by a small angle (times the breathing magnification)
        a = t[k, :2, :2] / np.sqrt(np.linalg.det(t[k, :2, :2]))
        assert np.allclose(a @ a.T, np.eye(2), atol=1e-9)
        ok = cv2.erode(valid_mask(t[k], (h, w), (h, w)).astype(np.uint8), np.ones((9, 9))) > 0
        assert ok.mean() > 0.7
        back = warp(s.frames[k], t[k], (h, w)).astype(float)
        err = np.abs(back - plain.frames[k])[ok].mean()
        unwarped_err = np.abs(s.frames[k].astype(float) - plain.frames[k])[ok].mean()
        inverse_err = np.abs(
            warp(s.frames[k], np.linalg.inv(t[k]), (h, w)).astype(float) - plain.frames[k]
        )[ok].mean()
        assert err < 2.0 and err < 0.3 * unwarped_err and err < 0.3 * inverse_err


def test_shake_is_seeded() -> None:
    a = render_stack("slant", n_frames=4, size=(32, 48), seed=1, shake_px=1.0, shake_deg=0.5)
    b = render_stack("slant", n_frames=4, size=(32, 48), seed=1, shake_px=1.0, shake_deg=0.5)
    c = render_stack("slant", n_frames=4, size=(32, 48), seed=2, shake_px=1.0, shake_deg=0.5)
    assert np.array_equal(a.transforms, b.transforms) and np.array_equal(a.frames, b.frames)
    assert not np.allclose(a.transforms[1:], c.transforms[1:])


def test_metadata_json_written_and_readable(tmp_path) -> None:
    s = render_stack(
        "spheres",
        n_frames=4,
        size=(32, 40),
        seed=9,
        noise_sigma=1.5,
        exposure_flicker=0.05,
        focus_breathing=0.02,
        shake_px=0.5,
        shake_deg=0.1,
        near_m=0.5,
        far_m=2.0,
        camera=ThinLensCamera(50.0, 4.0, 5.0),
    )
    write_stack(s, tmp_path)
    meta = json.loads((tmp_path / "ground_truth" / "metadata.json").read_text())
    assert meta["scene"] == "spheres" and meta["seed"] == 9 and meta["n_frames"] == 4
    assert meta["camera"] == {"focal_length_mm": 50.0, "f_number": 4.0, "pixel_pitch_um": 5.0}
    assert meta["near_m"] == 0.5 and meta["far_m"] == 2.0
    assert np.allclose(meta["focus_distances_m"], [0.5, 1 / (2 - 0.5), 1 / (2 - 1), 2.0])
    assert meta["noise_sigma"] == 1.5 and meta["exposure_flicker"] == 0.05
    assert meta["focus_breathing"] == 0.02 and meta["shake_px"] == 0.5
    assert meta["shake_deg"] == 0.1 and meta["reference_frame"] == 0
    assert np.array_equal(np.array(meta["transforms"]), s.transforms)  # exact round trip
    assert meta["exposure_gains"] == s.metadata["exposure_gains"]
    # everything written before is still there
    names = {p.name for p in (tmp_path / "ground_truth").iterdir()}
    assert names == {"index.npy", "depth.npy", "all_in_focus.png", "metadata.json"}
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_metadata_json_for_a_stack_built_by_hand(tmp_path) -> None:
    z = np.zeros((2, 4, 5, 3), np.uint8)
    s = SynthStack(
        z,
        np.array([1.0, 2.0]),
        np.ones((4, 5), np.float32),
        np.zeros((4, 5), np.float32),
        z[0],
        ThinLensCamera(),
        "custom",
    )
    write_stack(s, tmp_path)
    meta = json.loads((tmp_path / "ground_truth" / "metadata.json").read_text())
    assert meta["scene"] == "custom" and meta["focus_distances_m"] == [1.0, 2.0]
    assert meta["camera"]["focal_length_mm"] == 25.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exposure_flicker", -0.1),
        ("focus_breathing", 0.9),
        ("shake_px", float("nan")),
        ("shake_deg", -1.0),
    ],
)
def test_bad_nuisance_arguments(name: str, value: float) -> None:
    with pytest.raises(DffError, match=name) as info:
        render_stack("slant", n_frames=2, size=(8, 8), **{name: value})
    assert "\n" not in str(info.value)
