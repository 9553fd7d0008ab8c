"""Aggregators against known peaks, rendered ground truth and their own contracts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dffcore_plugins.aggregate import Argmax, Gaussian, Parabolic, SoftArgmax
from dffcore_plugins.focus.log import LoG, MultiScaleLoG

import dffcore
from dffcore.core.components import Aggregator, Context
from dffcore.core.data import AlignedStack, DepthResult, FocalStack, FocusVolume
from dffcore.eval.synth import SynthStack, render_stack

from .conftest import dff

SUBFRAME = (Gaussian, Parabolic, SoftArgmax)
ALL = (Argmax, *SUBFRAME)
CONFIDENCES = ("prominence", "ratio", "curvature")


def _aggregate(
    cls: type[Aggregator],
    frames: np.ndarray,
    volume: np.ndarray,
    valid: np.ndarray | None = None,
    **params,
) -> DepthResult:
    aligned = AlignedStack(frames, 0, valid)
    return cls(params)(FocusVolume(volume.astype(np.float32), valid), aligned, Context())


def _run(cls: type[Aggregator], curves: np.ndarray, valid=None, **params) -> DepthResult:
    """Aggregate a focus volume that has no image behind it."""
    return _aggregate(cls, np.zeros((*curves.shape, 1), np.uint8), curves, valid, **params)


def _curves(centres: np.ndarray, n: int, width: float = 1.5) -> np.ndarray:
    """Gaussian focus curves (N,H,W) peaking at the fractional slices ``centres`` (H,W)."""
    k = np.arange(n, dtype=np.float64)[:, None, None]
    return (3 * np.exp(-((k - centres) ** 2) / (2 * width**2))).astype(np.float32)


def _log_volume(frames: np.ndarray) -> np.ndarray:
    return LoG()(AlignedStack(frames, 0), Context()).data


def _mae(cls: type[Aggregator], stack: SynthStack, volume: np.ndarray, **params) -> float:
    res = _aggregate(cls, stack.frames, volume, **params)
    return float(np.abs(res.index - stack.index).mean())


@pytest.fixture(scope="module")
def slant() -> tuple[SynthStack, np.ndarray]:
    stack = render_stack("slant", n_frames=8, size=(96, 128), seed=2)
    return stack, _log_volume(stack.frames)


@pytest.fixture(scope="module")
def steps() -> tuple[SynthStack, np.ndarray]:
    """``steps`` with noise: its nearly uniform band (t = 0.55) holds no usable texture."""
    stack = render_stack("steps", n_frames=8, size=(96, 128), noise_sigma=3, seed=2)
    return stack, _log_volume(stack.frames)


# --- known focus curves ---------------------------------------------------------------


def test_fits_recover_known_fractional_peaks() -> None:
    n = 12
    centres = np.linspace(1, n - 2, 8 * 50).reshape(8, 50)
    data = _curves(centres, n)
    err = {cls.name: np.abs(_run(cls, data, sigma=0).index - centres) for cls in ALL}
    assert err["gaussian"].max() < 0.02  # exact for a Gaussian curve
    assert err["parabolic"].max() < 0.1
    assert err["softargmax"].max() < 0.15 and err["softargmax"].mean() < 0.1
    # the argmax is quantised: uniform fractional parts give a mean error of 1/4 slice
    assert err["argmax"].max() <= 0.5 and err["argmax"].mean() == pytest.approx(0.25, abs=0.02)


def test_argmax_ties_go_to_the_first_frame() -> None:
    """Equal focus values at several frames: the argmax picks the lowest of them, for the
    index and for the all-in-focus colour, also where the first tie is an invalid frame."""
    n, h, w = 4, 6, 5
    volume = np.zeros((n, h, w), np.float32)  # columns 0 and 4: all four frames tie
    volume[1:, :, 1] = 2.0  # column 1: frames 1, 2, 3 tie above frame 0
    volume[[0, 2], :, 2] = 3.0  # column 2: frames 0 and 2 tie
    volume[[2, 3], :, 3] = 1.0  # column 3: frames 2 and 3 tie
    valid = np.ones((n, h, w), bool)
    valid[0, :, 4] = False  # column 4: frame 0 has no data, frame 1 is the first tie
    frames = np.broadcast_to(
        (10 * np.arange(1, n + 1, dtype=np.uint8))[:, None, None, None], (n, h, w, 3)
    ).copy()  # frame k is grey 10 (k + 1)
    res = _aggregate(Argmax, frames, volume, valid, sigma=0)
    expected = [0, 1, 0, 2, 1]
    np.testing.assert_array_equal(res.index, np.broadcast_to(expected, (h, w)))
    np.testing.assert_array_equal(
        res.all_in_focus[..., 0], np.broadcast_to(10 * (np.array(expected) + 1), (h, w))
    )
    # identical slices stay identical after smoothing: every pixel ties, frame 0 wins
    same = np.broadcast_to(np.random.default_rng(0).random((h, w)), (n, h, w))
    res = _aggregate(Argmax, frames, same, sigma=2)
    assert np.all(res.index == 0) and np.all(res.all_in_focus == 10)


@pytest.mark.parametrize("cls", ALL)
def test_ends_of_the_stack(cls: type[Aggregator]) -> None:
    n = 8
    centres = np.array([[0.0, n - 1.0, -0.8, n - 0.3, 0.3, n - 1.7]])
    res = _run(cls, _curves(centres, n), sigma=0)
    assert np.all(np.isfinite(res.index)) and np.all((res.index >= 0) & (res.index <= n - 1))
    # the fits give no offset on the first / last slice (0.3 -> 0), the soft argmax is
    # pulled inwards there
    np.testing.assert_allclose(res.index, np.clip(centres, 0, n - 1), atol=0.35)
    if cls in (Gaussian, Parabolic):  # a peak on the first / last slice stays there
        assert res.index[0, 0] == 0 and res.index[0, 1] == n - 1
    if cls is Gaussian:  # next to the end, both neighbours exist
        assert res.index[0, 5] == pytest.approx(n - 1.7, abs=1e-3)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_invalid_frames_never_win_nor_enter_the_fit(cls: type[Aggregator], sigma: float) -> None:
    n, centre = 9, 2.3
    data = _curves(np.full((6, 10), centre), n)
    valid = np.ones(data.shape, bool)
    data[6, :, :5] = 1e3  # a huge value where frame 6 has no data
    valid[6, :, :5] = False
    res = _run(cls, data, valid, sigma=sigma)
    assert np.all(np.abs(res.index[:, :5] - centre) < 0.5)  # frame 6 never wins
    if cls is not Argmax:
        np.testing.assert_allclose(res.index[:, :5], res.index[:, 5:], atol=1e-4)
    if cls is Gaussian:
        np.testing.assert_allclose(res.index, centre, atol=1e-3)
    # a missing neighbour of the peak: no sub-frame offset across it
    valid[3, :, 5:] = False
    res = _run(cls, data, valid, sigma=sigma)
    if cls in (Gaussian, Parabolic):
        assert np.all(res.index[:, 5:] == 2)


# --- rendered stacks ------------------------------------------------------------------


def test_gaussian_fit_removes_the_quantisation_on_a_smooth_surface(slant) -> None:
    stack, volume = slant
    argmax = _mae(Argmax, stack, volume)
    assert argmax > 0.2  # quantisation alone costs about a quarter slice
    assert _mae(Gaussian, stack, volume) < 0.7 * argmax
    assert _mae(Gaussian, stack, volume) < 0.7 * _mae(Argmax, stack, volume, sigma=3)
    assert _mae(SoftArgmax, stack, volume) < 0.7 * argmax


def test_guided_aggregation_does_not_degrade_planes() -> None:
    stack = render_stack("planes", n_frames=8, size=(96, 128), seed=2)
    volume = _log_volume(stack.frames)
    plain = _mae(Gaussian, stack, volume)
    guided = _mae(Gaussian, stack, volume, sigma=0, guided_radius=4)
    assert guided <= 1.02 * plain
    valid = np.ones(volume.shape, bool)
    valid[:3, :, :20] = False  # runs with a mask, and keeps the frames' missing data out
    res = _aggregate(Gaussian, stack.frames, volume, valid, sigma=0, guided_radius=4)
    assert np.all(np.isfinite(res.index)) and np.all(res.index[:, :20] >= 3)


# --- confidence -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_confidence_lies_in_the_unit_interval(cls: type[Aggregator], steps) -> None:
    stack, volume = steps
    rng = np.random.default_rng(0)
    valid = rng.random(volume.shape) > 0.3
    options = [{}] if cls is Argmax else [{"confidence": c} for c in CONFIDENCES]
    for params in options:
        for v in (None, valid):
            res = _aggregate(cls, stack.frames, volume, v, **params)
            assert res.confidence.dtype == np.float32 and res.index.dtype == np.float32
            assert res.confidence.min() >= 0 and res.confidence.max() <= 1
            assert (res.all_in_focus is None) == (cls is not Argmax)


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_confidence_is_zero_without_texture(confidence: str, slant) -> None:
    stack, _ = slant
    frames = stack.frames.copy()
    frames[:, 30:80, 40:100] = 128  # a uniform patch, noise-free: no focus signal at all
    volume = _log_volume(frames)
    res = _aggregate(Gaussian, frames, volume, confidence=confidence)
    assert res.confidence[45:65, 55:85].max() == 0  # the patch away from its edges
    assert res.confidence[:, :20].mean() > 0.1


def _band_masks(stack: SynthStack) -> tuple[np.ndarray, np.ndarray]:
    """The uniform band of ``steps`` (its middle) and the textured bands away from it."""
    w = stack.index.shape[1]
    band = np.zeros(stack.index.shape, bool)
    band[:, int(0.44 * w) : int(0.56 * w)] = True
    textured = np.abs(stack.index - 0.55 * (len(stack.frames) - 1)) > 1e-3
    textured[:, int(0.35 * w) : int(0.65 * w)] = False
    assert np.all(~textured | ~band) and textured.sum() > band.sum() > 0
    return band, textured


@pytest.mark.parametrize("confidence", ["prominence", "ratio"])
def test_confidence_is_low_on_a_noisy_textureless_band(confidence: str, steps) -> None:
    stack, volume = steps
    band, textured = _band_masks(stack)
    res = _aggregate(Gaussian, stack.frames, volume, confidence=confidence)
    err = np.abs(res.index - stack.index)
    assert err[band].mean() > 3 * err[textured].mean()  # the band's depth is unknowable
    assert res.confidence[band].mean() < 0.6 * res.confidence[textured].mean()


def test_curvature_cannot_tell_noise_from_a_focus_peak(steps) -> None:
    """Documented limitation: a noise spike is as sharp as a focus peak."""
    stack, volume = steps
    band, textured = _band_masks(stack)
    res = _aggregate(Gaussian, stack.frames, volume, confidence="curvature")
    assert res.confidence[band].mean() > 0.5 * res.confidence[textured].mean()


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_confident_pixels_have_smaller_errors(confidence: str, steps) -> None:
    stack, volume = steps
    res = _aggregate(Gaussian, stack.frames, volume, confidence=confidence)
    err = np.abs(res.index - stack.index)
    high = res.confidence >= np.median(res.confidence)
    assert 0 < high.sum() < high.size
    assert err[high].mean() < 0.75 * err[~high].mean()


# --- as components --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("argmax", {}),
        ("gaussian", {"confidence": "ratio"}),
        ("parabolic", {"sigma": 1.5, "confidence": "curvature"}),
        ("softargmax", {"temperature": 0.1, "window": 2}),
        ("gaussian", {"sigma": 0, "guided_radius": 3, "guided_eps": 1e-2}),
    ],
)
def test_every_aggregator_runs_in_a_pipeline(name: str, params: dict, synth: SynthStack) -> None:
    spec = dffcore.load_spec({"aggregate": {"name": name, "params": params}})
    run = dffcore.run_pipeline(spec, FocalStack(synth.frames))
    result: DepthResult = run.result
    assert result.index.shape == result.confidence.shape == synth.index.shape
    assert result.all_in_focus is not None and result.all_in_focus.shape == synth.frames.shape[1:]
    assert np.abs(result.index - synth.index).mean() < 1.0


def test_unknown_parameters_are_rejected() -> None:
    with pytest.raises(dffcore.DffError, match="temperature"):
        dffcore.load_spec({"aggregate": {"name": "gaussian", "params": {"temperature": 1}}})
    with pytest.raises(dffcore.DffError, match="confidence"):
        dffcore.load_spec({"aggregate": {"name": "gaussian", "params": {"confidence": "pkr"}}})


def test_plugins_lists_the_aggregators() -> None:
    proc = dff("plugins", "--kind", "aggregate", "--json")
    assert proc.returncode == 0, proc.stderr
    items = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    assert {"argmax", "gaussian", "parabolic", "softargmax"} <= set(items)


def test_edge_aware_aggregation_removes_the_halo_of_a_strong_edge() -> None:
    """A strongly textured near region (slice 1) borders a weakly textured far one (slice 3).

    The near region's focus response spills a few pixels across the border (as an edge's
    |LoG| does); Gaussian smoothing spreads it further and, being ~100x stronger, it wins
    there: a halo of near depth on the far side. Edge-aware aggregation of the
    normalised curves, guided by the image (bright near, dark far), keeps the two sides
    apart.
    """
    n, h, w, border = 5, 40, 80, 40
    rng = np.random.default_rng(0)
    x = np.arange(w)
    near = np.where(x < border, 1.0, np.exp(-((x - border + 1) ** 2) / (2 * 3.0**2)))  # spill
    volume = np.empty((n, h, w), np.float32)
    for k in range(n):
        volume[k] = 100 * near * np.exp(-((k - 1) ** 2) / 2) + np.exp(-((k - 3) ** 2) / 2)
    volume *= rng.uniform(0.8, 1.2, volume.shape).astype(np.float32)  # texture
    frames = np.where(x < border, 200, 30).astype(np.uint8)[None, None, :, None]
    frames = np.broadcast_to(frames, (n, h, w, 3)).copy()
    far = x >= border
    plain = _aggregate(Gaussian, frames, volume, sigma=3)
    aware = _aggregate(Gaussian, frames, volume, sigma=1, wls_lambda=300)
    gated = _aggregate(Gaussian, frames, volume, sigma=1, wls_lambda=300, local_gate=2)
    halo_plain = (np.rint(plain.index[:, far]) == 1).mean()
    halo_aware = (np.rint(aware.index[:, far]) == 1).mean()
    assert halo_plain > 0.15  # the far side loses more than 6 of its 40 columns
    assert halo_aware < 0.03  # ... and keeps them with the edge-aware aggregation
    assert (np.rint(gated.index[:, far]) == 1).mean() < 0.03  # the local estimate disagrees
    assert np.all(np.abs(aware.index[:, ~far] - 1) < 0.5)  # the near side is untouched


def test_edge_aware_aggregation_keeps_invalid_frames_missing() -> None:
    n, h, w = 4, 12, 64
    curves = _curves(np.full((h, w), 2.0), n)
    valid = np.ones((n, h, w), bool)
    valid[2, :, :8] = False  # the peak frame has no data on the left
    res = _run(Gaussian, curves, valid, sigma=1, wls_lambda=50)  # reach ≈ 7 px
    assert np.all(np.isfinite(res.index))
    assert np.all(np.rint(res.index[:, :8]) != 2)  # never picks the missing frame
    assert np.allclose(res.index[:, 40:], 2.0, atol=0.05)  # far from it: unaffected


def test_local_gate_reduces_the_fronto_parallel_bias_on_curved_surfaces() -> None:
    """Wide edge-aware pooling flattens a sphere's cap; averaging with the local estimate
    where both agree brings part of the curvature back."""
    s = render_stack("spheres", n_frames=12, size=(96, 128), seed=3)
    volume = MultiScaleLoG()(AlignedStack(s.frames, 0), Context()).data
    pooled = _mae(Gaussian, s, volume, sigma=0, wls_lambda=300)
    gated = _mae(Gaussian, s, volume, sigma=0, wls_lambda=300, local_gate=2)
    assert gated < 0.9 * pooled  # measured 0.626 vs 0.733


@pytest.mark.parametrize("scene", ["spheres", "steps"])
def test_local_estimate_at_half_resolution_matches_the_full_one(scene, monkeypatch) -> None:
    """From local_sigma 2 px on, the local estimate is computed at half resolution; its
    depth stays as accurate as the full-resolution one's (forced by raising the switch),
    and the two differ little, also where frames lack data."""
    from dffcore_plugins.aggregate import peak

    s = render_stack(scene, n_frames=12, size=(96, 128), seed=3)
    volume = MultiScaleLoG()(AlignedStack(s.frames, 0), Context()).data
    valid = np.ones(volume.shape, bool)
    valid[:6, :, :10] = False  # the near frames miss a strip on the left
    params = dict(sigma=0, wls_lambda=300, local_gate=2, local_sigma=5)
    coarse = _aggregate(Gaussian, s.frames, volume, valid, **params).index
    monkeypatch.setattr(peak, "COARSE_SIGMA", 1e9)
    fine = _aggregate(Gaussian, s.frames, volume, valid, **params).index
    err_coarse, err_fine = (float(np.abs(i - s.index).mean()) for i in (coarse, fine))
    assert err_coarse < 1.02 * err_fine + 0.005
    assert float(np.abs(coarse - fine).mean()) < 0.05
    assert np.isfinite(coarse).all()
