"""All-in-focus compositors: select, blend, multiband.

Accuracy is measured on synthetic stacks against the renderer's ground-truth
all-in-focus image, once with the ground-truth fractional index as the depth (isolating
compositing from depth errors) and once with the index the argmax pipeline produces.
Run with ``-s`` to see the numbers; ``docs/compositing.md`` discusses them.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocalStack, FocusVolume
from dffcore.core.registry import default_registry
from dffcore.eval.metrics import depth_edges, psnr, seam_strength
from dffcore.eval.synth import SynthStack, render_stack
from dffcore.ops.convert import to_float32

from .conftest import dff

N_FRAMES, SIZE = 14, (160, 200)
NAMES = ("select", "blend", "multiband")
#: per-frame exposure gains within ±4 %, as from flickering light or auto exposure
FLICKER = 0.04


@functools.cache
def _stack(scene: str, noise: float = 0.0) -> SynthStack:
    return render_stack(scene, n_frames=N_FRAMES, size=SIZE, noise_sigma=noise, seed=0)


def _flickered(frames: np.ndarray, amplitude: float = FLICKER, seed: int = 5) -> np.ndarray:
    gain = 1 + amplitude * np.random.default_rng(seed).uniform(-1, 1, len(frames))
    return np.clip(frames * gain[:, None, None, None] + 0.5, 0, 255).astype(np.uint8)


def _compositor(name: str, **params):
    return default_registry().get("composite", name).cls(params)


def _composite(name: str, frames: np.ndarray, index: np.ndarray, **params) -> np.ndarray:
    aligned = AlignedStack(frames=frames, reference=0)
    volume = FocusVolume(np.zeros(frames.shape[:3], np.float32))
    result = DepthResult(index=index.astype(np.float32), confidence=np.ones(index.shape, "f4"))
    return _compositor(name, **params)(result, volume, aligned, Context(jobs=2))


@functools.cache
def _pipeline(scene: str, noise: float, name: str, flicker: bool = False) -> dffcore.Run:
    frames = _stack(scene, noise).frames
    if flicker:
        frames = _flickered(frames)
    spec = dffcore.load_spec({"aggregate": "argmax", "composite": {"name": name}})
    return dffcore.run_pipeline(spec, FocalStack(frames), intermediates=True)


CASES = [("default", 0.0), ("planes", 0.0), ("default", 2.0), ("planes", 2.0)]


@pytest.mark.parametrize(("scene", "noise"), CASES)
def test_psnr_with_the_ground_truth_index(scene: str, noise: float) -> None:
    s = _stack(scene, noise)
    got = {name: psnr(_composite(name, s.frames, s.index), s.all_in_focus) for name in NAMES}
    print(
        f"\n{scene} σ{noise:g}, true index: " + ", ".join(f"{k} {v:.2f} dB" for k, v in got.items())
    )
    assert got["blend"] >= got["select"] - 0.1
    # Only occlusion edges differ (the renderer's frames are identical in focus elsewhere):
    # select keeps the defocused near object's spill there, multiband trades it for
    # a little detail lost within ~2 px of the edge. Bounded, see docs/compositing.md.
    assert got["multiband"] >= got["select"] - 1.0


@pytest.mark.parametrize(("scene", "noise"), CASES)
def test_psnr_through_the_argmax_pipeline(scene: str, noise: float) -> None:
    s = _stack(scene, noise)
    got = {}
    for name in NAMES:
        run = _pipeline(scene, noise, name)
        assert [r.stage for r in run.records][-1] == "composite"
        got[name] = psnr(run.result.all_in_focus, s.all_in_focus)
    print(f"\n{scene} σ{noise:g}, argmax: " + ", ".join(f"{k} {v:.2f} dB" for k, v in got.items()))
    assert got["blend"] == pytest.approx(got["select"])  # argmax gives whole slices
    # The index errs near depth edges; multiband hides part of it and averages noise.
    assert got["multiband"] > got["select"] + (0.2 if noise else -0.05)


@pytest.mark.parametrize("scene", ["default", "planes", "steps"])
def test_multiband_hides_seams_between_frames_of_different_exposure(scene: str) -> None:
    """With an exposure flicker every switch of frame is a step; multiband smooths it."""
    s = _stack(scene)
    sel = _pipeline(scene, 0.0, "select", flicker=True).result
    mb = _pipeline(scene, 0.0, "multiband", flicker=True).result
    np.testing.assert_array_equal(sel.index, mb.index)
    p_sel, p_mb = psnr(sel.all_in_focus, s.all_in_focus), psnr(mb.all_in_focus, s.all_in_focus)
    # seams are low-frequency steps: the error is smoothed (σ 2 px) before its gradient
    g_sel = seam_strength(sel.all_in_focus, s.all_in_focus, smooth=2)
    g_mb = seam_strength(mb.all_in_focus, s.all_in_focus, smooth=2)
    edges = depth_edges(s.index, 2)  # along the true depth edges
    labels = depth_edges(np.rint(sel.index), 2) & ~depth_edges(
        s.index, 4
    )  # switches inside surfaces
    print(
        f"\n{scene} ±{FLICKER:.0%} exposure, argmax: PSNR select {p_sel:.2f} multiband"
        f" {p_mb:.2f} dB; seam at depth edges {g_sel[edges].mean():.2f} vs"
        f" {g_mb[edges].mean():.2f}, at label switches {g_sel[labels].mean():.2f} vs"
        f" {g_mb[labels].mean():.2f}"
    )
    assert p_mb > p_sel + 0.5
    assert g_mb[edges].mean() < g_sel[edges].mean()
    assert g_mb[labels].mean() < 0.6 * g_sel[labels].mean()


def test_multiband_removes_the_steps_of_a_quantised_index_on_a_slant() -> None:
    s = _stack("slant")
    frames = _flickered(s.frames)
    sel = _composite("select", frames, s.index)
    mb = _composite("multiband", frames, s.index)
    steps = depth_edges(np.rint(s.index), 2)
    g_sel = seam_strength(sel, s.all_in_focus, smooth=2)[steps].mean()
    g_mb = seam_strength(mb, s.all_in_focus, smooth=2)[steps].mean()
    assert g_mb < 0.5 * g_sel
    assert psnr(mb, s.all_in_focus) > psnr(sel, s.all_in_focus) + 2


def _frames_as(dtype: str) -> np.ndarray:
    frames = _stack("planes").frames
    if dtype == "uint8":
        return frames
    if dtype == "uint16":
        return frames.astype(np.uint16) * 257
    return (frames / np.float32(255)).astype(dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_dtype_round_trip(name: str, dtype: str) -> None:
    s = _stack("planes")
    frames = _frames_as(dtype)
    out = _composite(name, frames, s.index)
    assert out.dtype == frames.dtype and out.shape == frames.shape[1:]
    if np.issubdtype(out.dtype, np.floating):
        assert np.isfinite(out).all()
        assert frames.min() <= out.min() and out.max() <= frames.max()
    # the same image whatever the dtype (up to rounding)
    unit = {"uint8": 1.0, "uint16": 257.0}.get(dtype, 1 / 255)
    as8 = out.astype(np.float64) / unit
    ref = _composite(name, s.frames, s.index).astype(np.float64)
    assert np.abs(as8 - ref).max() <= 1.0


def test_grey_stacks_work() -> None:
    s = _stack("planes")
    grey = s.frames[..., :1].copy()
    for name in NAMES:
        out = _composite(name, grey, s.index)
        assert out.shape == (*SIZE, 1) and out.dtype == np.uint8


def test_multiband_reconstructs_a_single_frame_exactly() -> None:
    s = _stack("planes")
    frames = s.frames.astype(np.uint16) * 257
    for k in (0, 5):
        out = _composite("multiband", frames, np.full(SIZE, k, np.float32), spread=0.2)
        np.testing.assert_array_equal(out, frames[k])  # weights one-hot: perfect pyramid


@pytest.mark.parametrize("name", ["blend", "multiband"])
def test_invalid_pixels_are_never_used(name: str) -> None:
    """Whatever a frame holds where it has no data, the composite is the same."""
    s = _stack("default")
    k = 6
    index = s.index.copy()
    index[40:110, 50:150] = k + 0.3  # the depth points right into the hole ...
    index[60:80, 70:90] = k  # ... and exactly at the frame
    valid = np.ones(s.frames.shape[:3], bool)
    valid[k, 30:120, 40:160] = False
    outs = []
    for fill in (0, 255):
        frames = s.frames.copy()
        frames[k, 30:120, 40:160] = fill
        aligned = AlignedStack(frames=frames, reference=0, valid=valid)
        volume = FocusVolume(np.ones(frames.shape[:3], np.float32), valid)
        result = DepthResult(index=index, confidence=np.ones(SIZE, np.float32))
        outs.append(_compositor(name)(result, volume, aligned, Context(jobs=2)))
    np.testing.assert_array_equal(outs[0], outs[1])
    # ... and the hole is filled from the neighbouring frames, not left dark or bright
    hole = outs[0][60:80, 70:90].astype(np.float64)
    near = ((s.frames[k - 1] + s.frames[k + 1].astype(np.float64)) / 2)[60:80, 70:90]
    assert np.abs(hole - near).mean() < 8


def test_blend_falls_back_to_the_valid_neighbour() -> None:
    frames = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30, 40)])
    valid = np.ones((4, 4, 4), bool)
    valid[2, 0] = False  # frame 2 has no data in row 0
    valid[1:3, 1] = False  # frames 1 and 2 none in row 1
    aligned = AlignedStack(frames=frames, reference=0, valid=valid)
    index = np.full((4, 4), 1.25, np.float32)
    index[2:] = 1.5
    result = DepthResult(index=index, confidence=index)
    out = _compositor("blend")(result, FocusVolume(np.zeros((4, 4, 4), "f4")), aligned, Context())
    assert (out[0] == 20).all()  # frame 1 alone
    assert (out[1] == 10).all()  # nearest frame with data to 1.25: frame 0
    assert (out[2:] == 25).all()  # halfway between 20 and 30


def test_multiband_weights_skip_frames_far_from_the_depth() -> None:
    from dffcore_plugins.composite.multiband import frame_weights

    index = np.full((32, 40), 3.4, np.float32)
    index[:, 20:] = 9.0
    weight = frame_weights(index, 14, spread=0.5)
    used = {k: weight(k) for k in range(14)}
    assert {k for k, w in used.items() if w is not None} == {2, 3, 4, 8, 9, 10}  # within 3σ = 1.5
    total = sum(w for w in used.values() if w is not None)
    np.testing.assert_allclose(total, 1, atol=1e-5)


@pytest.mark.parametrize("mode", ["focus", "both"])
def test_multiband_focus_weights(mode: str) -> None:
    s = _stack("planes")
    run = _pipeline("planes", 0.0, "select")
    out = _compositor("multiband", weights=mode, spread=1.0)(
        run.result, run.volume, run.aligned, Context(jobs=2)
    )
    assert out.dtype == np.uint8
    assert psnr(out, s.all_in_focus) > 30


def test_multiband_threads_give_the_same_image() -> None:
    s = _stack("default")
    aligned = AlignedStack(frames=s.frames, reference=0)
    volume = FocusVolume(np.zeros(s.frames.shape[:3], np.float32))
    result = DepthResult(index=s.index, confidence=s.index)
    one, two = (_compositor("multiband")(result, volume, aligned, Context(jobs=j)) for j in (1, 2))
    assert np.abs(one.astype(int) - two).max() <= 1


def test_composite_stage_through_the_spec() -> None:
    spec = dffcore.load_spec(
        {
            "aggregate": "argmax",
            "composite": {"name": "multiband", "params": {"spread": 1.0, "levels": 3}},
        }
    )
    assert spec.composite.params.levels == 3
    assert spec.to_dict()["composite"]["name"] == "multiband"
    run = dffcore.run_pipeline(spec, FocalStack(_stack("planes").frames), jobs=2)
    assert run.result.all_in_focus.dtype == np.uint8
    with pytest.raises(dffcore.SpecError, match="weights"):
        dffcore.load_spec({"composite": {"name": "multiband", "params": {"weights": "x"}}})
    with pytest.raises(dffcore.SpecError, match="spred"):
        dffcore.load_spec({"composite": {"name": "blend", "params": {"spred": 1}}})


def test_plugins_lists_the_compositors() -> None:
    proc = dff("plugins", "--kind", "composite", "--json")
    assert proc.returncode == 0, proc.stderr
    comps = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    assert set(NAMES) <= set(comps)
    for name in NAMES:
        assert comps[name]["kind"] == "composite"
        assert comps[name]["summary"] and comps[name]["citation"]
    params = {p["name"]: p for p in comps["multiband"]["params"]}
    assert {"weights", "spread", "levels", "focus_power"} <= set(params)
    assert all(p["doc"] for p in params.values())


def test_select_never_reads_a_frame_without_data() -> None:
    from dffcore_plugins.composite.select import Select

    from dffcore.core.components import Context
    from dffcore.core.data import AlignedStack, DepthResult, FocusVolume

    frames = np.stack([np.full((4, 5, 1), 10 * i, np.uint8) for i in range(4)])
    valid = np.ones((4, 4, 5), bool)
    valid[2, :, :2] = False  # frame 2 has no data on the left
    valid[1, :, :1] = False  # frame 1 neither in the first column
    result = DepthResult(np.full((4, 5), 2.0, np.float32), np.ones((4, 5), np.float32))
    out = Select()(
        result,
        FocusVolume(np.zeros((4, 4, 5), np.float32), valid),
        AlignedStack(frames, 0, valid),
        Context(),
    )
    assert out[0, 4, 0] == 20  # its own frame where valid
    assert out[0, 1, 0] == 10  # the nearest frame with data (frame 1)
    assert out[0, 0, 0] in (0, 30)  # frames 1 and 2 lack data: frame 0 or 3


def test_multiband_sharpest_follows_the_focus_volume_not_the_depth() -> None:
    """``weights: sharpest`` composes each pixel from its sharpest frame, whatever the depth."""
    n, h, w = 4, 32, 48
    frames = np.stack([np.full((h, w, 3), 40 * (k + 1), np.uint8) for k in range(n)])
    focus = np.ones((n, h, w), np.float32)
    focus[2, :, : w // 2] = 5  # left half sharpest in frame 2, right half in frame 3
    focus[3, :, w // 2 :] = 5
    valid = np.ones((n, h, w), bool)
    valid[3, :, -4:] = False  # ... except the last columns, where frame 3 has no data
    focus[3, :, -4:] = np.nan
    result = DepthResult(index=np.zeros((h, w), np.float32), confidence=np.ones((h, w)))
    out = _compositor("multiband", weights="sharpest", spread=0.2, levels=1)(
        result, FocusVolume(focus, valid), AlignedStack(frames, 0, valid), Context()
    )
    assert np.all(out[:, : w // 2] == 120)  # frame 2
    assert np.all(out[:, w // 2 : -4] == 160)  # frame 3
    assert np.all(out[:, -4:] < 160)  # never frame 3 where it has no data
    at_depth = _compositor("multiband", spread=0.2, levels=1)(
        result, FocusVolume(focus, valid), AlignedStack(frames, 0, valid), Context()
    )
    assert np.all(at_depth == 40)  # the default follows the depth (frame 0)


def test_multiband_spread_keeps_a_frame_for_every_depth() -> None:
    """Half-way between two frames both are within the cut: no pixel loses all weight."""
    n, h, w = 4, 16, 16
    frames = np.stack([np.full((h, w, 3), 50 * (k + 1), np.uint8) for k in range(n)])
    out = _composite("multiband", frames, np.full((h, w), 1.5, np.float32), spread=0.2, levels=1)
    assert np.all((out >= 100) & (out <= 150))  # frames 1 and 2, never black
    with pytest.raises(ValueError):  # pydantic: a narrower spread is refused
        _compositor("multiband", spread=0.15)


def test_multiband_fills_holes_of_a_float_stack_without_writing_to_its_frames() -> None:
    """Float32 frames are used as they are (no copy per frame), so the fallback that fills
    a frame's hole must go to a scratch buffer: the stack stays as it was, and whatever
    the hole holds, the composite is the same."""
    s = _stack("default")
    k = 6
    valid = np.ones(s.frames.shape[:3], bool)
    valid[k, 30:120, 40:160] = False
    index = s.index.copy()
    index[40:110, 50:150] = k
    outs = []
    for fill in (0.0, 1.0):
        frames = s.frames.astype(np.float32) / 255
        frames[k, 30:120, 40:160] = fill
        before = frames.copy()
        aligned = AlignedStack(frames=frames, reference=0, valid=valid)
        volume = FocusVolume(np.ones(frames.shape[:3], np.float32), valid)
        result = DepthResult(index=index, confidence=np.ones(SIZE, np.float32))
        outs.append(_compositor("multiband")(result, volume, aligned, Context(jobs=2)))
        np.testing.assert_array_equal(frames, before)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_multiband_one_hot_weights_of_whole_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole-slice depths with a spread that cuts the neighbours (weights 'sharpest'):
    all of a pixel's weight is on its frame, none where that frame has no data (unless
    no frame has), and frames that are nobody's depth are skipped; exactly the weights
    of the Gaussian path. A fractional depth still spreads its weight over two frames."""
    from dffcore_plugins.composite import multiband
    from dffcore_plugins.composite.multiband import frame_weights

    rng = np.random.default_rng(0)
    n = 6
    index = rng.integers(0, n - 1, (20, 30)).astype(np.float32)  # frame 5 never used
    valid = rng.random((n, 20, 30)) > 0.2
    valid[:, :2, :2] = False  # no frame has data: the pixel's own frame still counts
    weight = frame_weights(index, n, valid, spread=0.25)
    assert weight(n - 1) is None
    for k in range(n - 1):
        own = (index == k) & (valid[k] | ~valid.any(axis=0))
        np.testing.assert_array_equal(weight(k), own.astype(np.float32))
    with monkeypatch.context() as m:  # the general (Gaussian) path gives the same
        m.setattr(multiband, "whole_slices", lambda d, depth_weight: False)
        gauss = frame_weights(index, n, valid, spread=0.25)
        for k in range(n):
            a, b = weight(k), gauss(k)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
    index[0, 0] = 2.5
    weight = frame_weights(index, n, None, spread=0.25)
    assert 0 < weight(2)[0, 0] == weight(3)[0, 0] < 1


def test_blend_frames_of_whole_slices_are_the_frames() -> None:
    """No fractional part: ``blend_frames`` is the frames at the index (as float32)."""
    from dffcore_plugins.composite.blend import blend_frames

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 8, 9, 3)).astype(np.uint8)
    index = rng.integers(0, 5, (8, 9)).astype(np.float32)
    expected = np.take_along_axis(frames, index.astype(int)[None, ..., None], 0)[0]
    out = blend_frames(frames, index)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, to_float32(expected))
