"""Confidence of stacks without focus information: noise, constant and identical frames."""

from __future__ import annotations

import numpy as np
import pytest

import dffcore
from dffcore.core.data import FocalStack, FocusVolume
from dffcore.eval.synth import render_stack
from dffcore.ops.evidence import (
    OFFSET,
    RHO_FULL,
    CurveSums,
    curve_coherence,
    curve_correlation,
    focus_evidence,
)

from .conftest import data_folder

NO_ALIGN = ["align={name: none}"]


def test_curve_correlation_by_hand() -> None:
    # two pixels, four frames: a smooth peak (+) and an alternating curve (-)
    data = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 3.0], [2.0, 1.0]], np.float32)[:, None, :]
    rho = curve_correlation(FocusVolume(data))
    # centred: [-1, 0, 1, 0] and [1, -1, 1, -1] (both over the volume mean 2)
    a, b = np.array([-1, 0, 1, 0.0]), np.array([1, -1, 1, -1.0])
    expected = (a[:-1] @ a[1:] + b[:-1] @ b[1:]) / (a @ a + b @ b)
    assert rho == pytest.approx(expected)
    assert curve_correlation(FocusVolume(np.ones((5, 3, 3), np.float32))) == 0.0


def test_focus_evidence_is_zero_for_noise_and_one_for_a_focal_sweep() -> None:
    rng = np.random.default_rng(1)
    for n in (4, 8, 32):  # i.i.d. curves: rho ~ -1/n
        noise = rng.random((n, 40, 50)).astype(np.float32)
        assert focus_evidence(FocusVolume(noise)) < 0.1, n
    z = np.arange(12, dtype=np.float32)[:, None, None]
    peak = np.exp(-0.5 * ((z - rng.uniform(0, 11, (1, 40, 50))) / 2.0) ** 2)
    assert curve_correlation(FocusVolume(peak.astype(np.float32))) > RHO_FULL
    assert focus_evidence(FocusVolume(peak.astype(np.float32))) == 1.0
    assert focus_evidence(FocusVolume(rng.random((3, 8, 8)).astype(np.float32))) == 1.0


def test_a_sparse_sweep_with_one_frame_peaks_counts_by_its_coherence_in_space() -> None:
    # depth of field thinner than the frame spacing: each curve is a one-frame spike
    # (anticorrelated across frames, like noise), but the spike's frame is coherent in
    # space: columns of constant depth
    rng = np.random.default_rng(2)
    n, h, w = 10, 60, 200
    depth = np.repeat(np.arange(w) // 40, 1)[None, :].repeat(h, axis=0)  # 5 steps of 40 px
    data = 0.1 * rng.random((n, h, w)).astype(np.float32)
    np.put_along_axis(data, depth[None], 1.0 + rng.random((1, h, w)).astype(np.float32), 0)
    volume = FocusVolume(data)
    assert curve_correlation(volume) < 0
    assert curve_coherence(volume) > 0.5
    assert focus_evidence(volume) == 1.0
    # the same spikes at frames drawn independently per pixel: no focus information
    scattered = 0.1 * rng.random((n, h, w)).astype(np.float32)
    np.put_along_axis(scattered, rng.integers(0, n, (1, h, w)), 1.0, 0)
    assert abs(curve_coherence(FocusVolume(scattered))) < 0.03
    assert focus_evidence(FocusVolume(scattered)) < 0.1


def test_sums_over_bands_equal_the_whole_image() -> None:
    data = np.random.default_rng(3).random((6, 70, 90)).astype(np.float32)
    data[:, :, OFFSET:] += data[:, :, :-OFFSET]  # some coherence
    whole = CurveSums.for_image(70, 90)
    whole.add(FocusVolume(data))
    bands = CurveSums.for_image(70, 90)
    for a, b in ((0, 23), (23, 51), (51, 70)):  # with 5 rows of overlap on each side
        ra, rb = max(a - 5, 0), min(b + 5, 70)
        bands.add(FocusVolume(data[:, ra:rb]), slice(a - ra, b - ra), ra)
    assert bands.pixels == whole.pixels and bands.pairs == whole.pairs
    assert bands.correlation() == pytest.approx(whole.correlation())
    assert bands.coherence() == pytest.approx(whole.coherence())


@pytest.mark.parametrize("pipeline", ["best", "fast"])
def test_stacks_without_focus_information_get_confidence_near_zero(
    pipeline: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    sweep = render_stack("default", n_frames=8, size=(90, 120), seed=7).frames
    stacks = {
        "noise": rng.integers(0, 256, (8, 90, 120, 3)).astype(np.uint8),
        "constant": np.full((8, 90, 120, 3), 77, np.uint8),
        "identical": np.repeat(sweep[3:4], 8, axis=0),
        "identical+noise": np.clip(
            np.repeat(sweep[3:4].astype(np.float32), 8, axis=0) + rng.normal(0, 2, sweep.shape),
            0,
            255,
        ).astype(np.uint8),
    }
    spec = dffcore.load_spec(pipeline, NO_ALIGN)
    for name, frames in stacks.items():
        caplog.clear()
        run = dffcore.run_pipeline(spec, FocalStack(frames))
        assert run.result.confidence.mean() < 0.01, (name, run.result.confidence.mean())
        if name != "constant" and name != "identical":  # those say: all confidence 0
            assert "almost no focus information" in caplog.text, name
    real = dffcore.run_pipeline(spec, FocalStack(sweep))
    assert real.result.confidence.mean() > 0.3


@pytest.mark.parametrize(
    ("name", "pipeline"),
    [("pcb_macro", "best"), ("pcb_macro", "fast"), ("keyboard", "fast")],
)
def test_real_stacks_keep_their_confidence(name: str, pipeline: str) -> None:
    # pcb_macro: a sparse macro sweep whose one-frame peaks look like noise across frames
    # (lag-1 correlation < 0.15); its coherence in space must still count it as real
    stack = dffcore.read_stack(data_folder(name))
    frames = stack.frames[:, 400:912, 700:1212] if name == "pcb_macro" else stack.frames
    run = dffcore.run_pipeline(dffcore.load_spec(pipeline), FocalStack(frames.copy()))
    assert run.result.diagnostics["focus_evidence"] == 1.0
