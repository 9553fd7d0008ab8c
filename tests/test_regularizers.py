"""Continuous and image-guided regularisers: guided filter, TV, joint weighted median."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dffcore_plugins.regularize._guide import guide_image
from dffcore_plugins.regularize.guided import Guided
from dffcore_plugins.regularize.tv import TV, edge_weights, tv_energy, tv_solve
from dffcore_plugins.regularize.weighted_median import (
    CLASSIC_WEIGHTS,
    WeightedMedian,
    joint_weighted_median,
    spatial_weights,
    weighted_median,
)

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.eval.synth import render_stack
from dffcore.ops.filters import take_frames

from .conftest import dff

N = 12  # frames of the synthetic problems


class Problem:
    """A noisy depth result with known truth and a guide whose edges are the depth edges."""

    def __init__(self, seed: int = 5) -> None:
        s = render_stack("planes", n_frames=N, size=(96, 128), seed=seed)
        h, w = s.index.shape
        self.planes = s.index
        # piecewise smooth: the planes' steps on a gentle ramp
        self.truth = (s.index + np.linspace(0, 1.5, w, dtype=np.float32)[None]).astype(np.float32)
        rng = np.random.default_rng(seed)
        texture = cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 1.5)
        grey = np.clip(0.15 + 0.7 * s.index / (N - 1) + 0.03 * texture / texture.std(), 0, 1)
        self.aif = np.repeat(np.rint(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
        # clumps of garbage with low confidence, small noise with high confidence
        blobs = cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 1.5)
        bad = blobs > np.quantile(blobs, 0.8)
        noisy = self.truth + rng.normal(0, 0.3, (h, w)).astype(np.float32)
        noisy[bad] = rng.uniform(0, N - 1, int(bad.sum()))
        self.result = DepthResult(
            noisy.astype(np.float32), np.where(bad, 0.05, 0.9).astype(np.float32), self.aif
        )
        self.aligned = AlignedStack(np.repeat(self.aif[None], N, axis=0), 0)
        self.volume = FocusVolume(np.zeros((N, h, w), np.float32))
        # pixels within 3 px of a depth edge
        steps = cv2.morphologyEx(s.index, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0.5
        self.band = cv2.dilate(steps.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0

    def run(self, component, result: DepthResult | None = None) -> DepthResult:
        return component(result or self.result, self.volume, self.aligned, Context())

    def mae(self, index: np.ndarray, where: np.ndarray | None = None) -> float:
        err = np.abs(index - self.truth)
        return float(err.mean() if where is None else err[where].mean())


@pytest.fixture(scope="module")
def problem() -> Problem:
    return Problem()


@pytest.mark.parametrize(
    "component",
    [Guided(), TV(), TV({"huber": 0.2}), Guided({"radius": 6, "confidence_power": 2})],
    ids=["guided", "tv", "tv-huber", "guided-r6-p2"],
)
def test_denoises_and_keeps_depth_edges_sharp(problem: Problem, component) -> None:
    out = problem.run(component)
    assert out.index.shape == problem.truth.shape and out.index.dtype == np.float32
    before, after = problem.mae(problem.result.index), problem.mae(out.index)
    assert after <= 0.6 * before, (before, after)  # at least 40 % lower
    band = problem.band
    blur = cv2.GaussianBlur(problem.result.index, (0, 0), 2.0)
    assert problem.mae(out.index, band) < problem.mae(blur, band)
    assert problem.mae(out.index, band) < problem.mae(problem.result.index, band)
    assert out.index.min() >= 0 and out.index.max() <= N - 1
    assert out.confidence.shape == problem.truth.shape
    assert out.confidence.min() >= 0 and out.confidence.max() <= 1


@pytest.mark.parametrize("component", [Guided(), TV()], ids=["guided", "tv"])
def test_zero_confidence_hole_is_filled_from_its_surroundings(problem: Problem, component) -> None:
    truth = problem.truth
    index, conf = truth.copy(), np.ones_like(truth)
    hole = (slice(8, 14), slice(50, 56))  # 6x6, at least 6 px inside the far background
    assert np.ptp(problem.planes[2:20, 44:62]) == 0
    index[hole] = N - 1 - truth[hole] + 3.0  # garbage
    conf[hole] = 0
    out = problem.run(component, problem.result.replace(index=index, confidence=conf))
    assert np.abs(out.index[hole] - truth[hole]).max() < 0.25
    assert np.abs(index[hole] - truth[hole]).min() > 2


def test_tv_energy_decreases_at_every_iteration(problem: Problem) -> None:
    guide = guide_image(problem.result, problem.aligned)
    for w, huber in ((None, 0.0), (edge_weights(guide, 0.1), 0.0), (edge_weights(guide, 0.1), 0.3)):
        d, info = tv_solve(
            problem.result.index,
            problem.result.confidence,
            w,
            lam=2.0,
            huber=huber,
            iterations=80,
            tol=0,
            record_energy=True,
        )
        e = np.array(info.energies)
        assert len(e) == 81 and e[-1] < 0.5 * e[0]
        assert np.all(np.diff(e) <= 1e-6 * e[0]), np.diff(e).max()
        assert tv_energy(d, problem.result.index, problem.result.confidence, w, 2.0, huber) == (
            pytest.approx(e[-1], rel=1e-9)
        )


def test_tv_reaches_the_analytic_rof_solution_of_a_step() -> None:
    # along x, 20 px at 0 then 20 px at 4; c = 1, w = 1: each plateau moves λ/20 inwards
    d0 = np.zeros((6, 40), np.float32)
    d0[:, 20:] = 4.0
    d, info = tv_solve(d0, np.ones_like(d0), None, lam=10.0, iterations=5000, tol=1e-7)
    expect = np.where(np.arange(40) < 20, 0.5, 3.5)
    np.testing.assert_allclose(d, np.broadcast_to(expect, d.shape), atol=2e-3)
    assert info.iterations < 5000


def test_tv_lambda_zero_returns_the_input(problem: Problem) -> None:
    out = problem.run(TV({"lam": 0}))
    np.testing.assert_array_equal(out.index, problem.result.index)
    np.testing.assert_array_equal(out.confidence, problem.result.confidence)


def test_tv_keeps_a_constant_with_uniform_confidence(problem: Problem) -> None:
    const = np.full(problem.truth.shape, 3.25, np.float32)
    res = problem.result.replace(index=const, confidence=np.full_like(const, 0.7))
    for params in ({}, {"huber": 0.1}, {"edge_sigma": 0, "lam": 20}):
        out = problem.run(TV(params), res)
        np.testing.assert_allclose(out.index, 3.25, atol=1e-5)


def test_tv_stops_early_and_reports(problem: Problem) -> None:
    out = problem.run(TV({"iterations": 2000, "tol": 1e-3}))
    diag = out.diagnostics["tv"]
    assert 0 < diag["iterations"] < 2000 and diag["energy"] > 0


def test_guide_is_made_by_selection_when_there_is_no_all_in_focus() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    index = rng.uniform(0, 3, (10, 12)).astype(np.float32)
    res = DepthResult(index, np.ones_like(index))
    grey = guide_image(res, AlignedStack(frames, 0))
    expect = take_frames(frames, np.rint(index)).astype(np.float32) / 255
    expect = cv2.cvtColor(expect, cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(grey, expect, atol=1e-6)
    assert grey.dtype == np.float32


# --- joint weighted median ------------------------------------------------------------


def _reference_joint_median(
    img: np.ndarray, guide: np.ndarray | None, spatial: np.ndarray, range_sigma: float
) -> np.ndarray:
    """Per-pixel loops, float64: lower weighted median of the mirrored window."""
    r = spatial.shape[0] // 2
    if guide is None:
        guide = np.zeros_like(img)
    pi, pg = np.pad(img, r, mode="reflect"), np.pad(guide, r, mode="reflect")
    out = np.empty(img.shape, np.float32)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            vals = pi[y : y + 2 * r + 1, x : x + 2 * r + 1].ravel().astype(np.float64)
            diff = pg[y : y + 2 * r + 1, x : x + 2 * r + 1].ravel() - guide[y, x]
            wts = spatial.ravel() * np.exp(-(diff.astype(np.float64) ** 2) / (2 * range_sigma**2))
            order = np.argsort(vals, kind="stable")
            cum = np.cumsum(wts[order])
            out[y, x] = vals[order][np.searchsorted(cum, cum[-1] / 2)]
    return out


def _wm(params: dict, index: np.ndarray, aif: np.ndarray) -> np.ndarray:
    res = DepthResult(index, np.ones_like(index), aif)
    aligned = AlignedStack(aif[None], 0)
    out = WeightedMedian(params)(
        res, FocusVolume(np.zeros((1, 1, 1), np.float32)), aligned, Context()
    )
    return out.index


def test_weighted_median_without_guide_is_the_classic_filter() -> None:
    rng = np.random.default_rng(7)
    index = rng.integers(0, 16, (37, 53)).astype(np.float32) + rng.uniform(0, 1, (37, 53))
    index = index.astype(np.float32)
    aif = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    classic = weighted_median(index, CLASSIC_WEIGHTS)
    for params in ({}, {"guide": "none"}, {"guide": "none", "weights": "classic", "radius": 3}):
        np.testing.assert_array_equal(_wm(params, index, aif), classic)
    # the float-weight path with the classic kernel and a flat guide is the same median
    flat = np.zeros((37, 53), np.float32)
    np.testing.assert_array_equal(
        joint_weighted_median(index, flat, spatial_weights("classic", 3), chunk_bytes=20_000),
        classic,
    )


def test_joint_weighted_median_keeps_a_corner_the_classic_one_rounds() -> None:
    index = np.zeros((40, 40), np.float32)
    index[20:, 20:] = 5.0
    aif = np.where(index[..., None] > 0, 200, 50).astype(np.uint8).repeat(3, axis=2)
    classic = _wm({}, index, aif)
    assert classic[20, 20] == 0.0  # the corner is eaten
    joint = _wm({"guide": "image"}, index, aif)
    np.testing.assert_array_equal(joint, index)
    gaussian = _wm({"guide": "image", "weights": "gaussian", "radius": 5}, index, aif)
    np.testing.assert_array_equal(gaussian, index)


@pytest.mark.parametrize(
    ("kind", "radius", "levels", "use_guide"),
    [
        ("classic", 3, 0, True),
        ("gaussian", 2, 0, True),
        ("uniform", 1, 0, True),
        ("gaussian", 3, 5, True),
        ("gaussian", 2, 0, False),
    ],
)
def test_joint_weighted_median_matches_a_per_pixel_reference(
    kind: str, radius: int, levels: int, use_guide: bool
) -> None:
    rng = np.random.default_rng(radius + levels)
    img = rng.normal(0, 3, (11, 13)).astype(np.float32)
    if levels:  # many ties, as in an integer label map
        img = rng.integers(0, levels, (11, 13)).astype(np.float32)
    guide = rng.uniform(0, 1, (11, 13)).astype(np.float32) if use_guide else None
    spatial = spatial_weights(kind, radius)
    fast = joint_weighted_median(img, guide, spatial, 0.2, chunk_bytes=2000)  # many chunks
    np.testing.assert_array_equal(fast, _reference_joint_median(img, guide, spatial, 0.2))


def test_classic_weights_are_the_diamond_with_centre_five() -> None:
    """The classic 7x7 kernel: weight max(0, 5 − |dy| − |dx|), 5 at the centre, 81 in all."""
    dy, dx = np.mgrid[-3:4, -3:4]
    np.testing.assert_array_equal(CLASSIC_WEIGHTS, np.maximum(0, 5 - np.abs(dy) - np.abs(dx)))
    assert CLASSIC_WEIGHTS[3, 3] == 5 and CLASSIC_WEIGHTS.sum() == 81


def test_classic_weighted_median_counts_the_centre_five_times() -> None:
    """A 7x7 image whose centre pixel's window is the whole image (no border involved).

    Ones on rows 0-2 (weights 4 + 9 + 16 = 29), at (3, 1) and (3, 2) (3 + 4) and at the
    centre (5): 41 of 81, so the median (the 41st smallest value) is 1. With a centre
    weight of 1 the ones would weigh 37 of 77, a minority: the median would be 0.
    """
    index = np.zeros((7, 7), np.float32)
    index[:3] = 1
    index[3, 1:4] = 1  # (3, 1), (3, 2) and the centre (3, 3)
    assert weighted_median(index, CLASSIC_WEIGHTS)[3, 3] == 1
    aif = np.zeros((7, 7, 3), np.uint8)
    assert _wm({}, index, aif)[3, 3] == 1  # the component's classic filter
    index[3, 3] = 0  # without the centre: 36 of 81 are ones
    assert _wm({}, index, aif)[3, 3] == 0


def test_weighted_median_context_grows_with_the_iterations() -> None:
    """Each pass reads ``radius`` rows around a pixel: ``iterations`` passes need
    radius · iterations rows of context, and with them a band equals the whole image."""
    assert WeightedMedian({}).context() == 3
    assert WeightedMedian({"iterations": 3}).context() == 3 * 3
    assert WeightedMedian({"weights": "uniform", "radius": 2, "iterations": 4}).context() == 8
    rng = np.random.default_rng(4)
    h, w = 40, 24
    index = rng.integers(0, 8, (h, w)).astype(np.float32)  # noisy: every pass moves values
    aif = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for params in ({"iterations": 3}, {"iterations": 3, "guide": "image"}):
        whole = _wm(params, index, aif)
        c = WeightedMedian(params).context()
        a, b = 16, 24  # a band of rows, computed with c rows of context on each side
        band = _wm(params, index[a - c : b + c], aif[a - c : b + c])[c : c + b - a]
        np.testing.assert_array_equal(band, whole[a:b])


def test_iterated_weighted_median_in_bands_equals_the_whole_image() -> None:
    """A run in bands of 6 rows whose other stages declare little more context than they
    need (a 3x3 Laplacian: 1 row; argmax without smoothing: 1): the overlap must come from
    the weighted median's own declaration, which must cover its three passes."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (5, 48, 64, 1), dtype=np.uint8)
    spec = dffcore.load_spec(
        {
            "align": "none",
            "focus": {"name": "log", "params": {"gaussian_ksize": 1, "laplacian_ksize": 1}},
            "aggregate": {"name": "argmax", "params": {"sigma": 0}},
            "regularize": [{"name": "weighted-median", "params": {"iterations": 3}}],
            "composite": "select",
        }
    )
    stack = dffcore.FocalStack(frames)
    whole = dffcore.run_pipeline(spec, stack)
    banded = dffcore.run_pipeline(spec, stack, band_rows=6)
    assert banded.plan["mode"] == "bands" and banded.plan["regions"] == 8
    np.testing.assert_array_equal(banded.result.index, whole.result.index)
    assert banded.plan["overlap_rows"] == 1 + 1 + 3 * 3  # focus, aggregate, 3 passes


def test_classic_weights_need_radius_three() -> None:
    with pytest.raises(ValueError, match="radius 3"):
        WeightedMedian({"radius": 5})
    assert WeightedMedian({"radius": 5, "weights": "gaussian"}).params.radius == 5


# --- through the framework ------------------------------------------------------------


def test_regularizers_run_in_a_pipeline(synth) -> None:
    spec = dffcore.load_spec(
        {
            "aggregate": {"name": "argmax", "params": {"sigma": 2}},
            "regularize": [
                {"name": "tv", "params": {"lam": 1.5}},
                {"name": "guided", "params": {"radius": 3}},
                {"name": "weighted-median", "params": {"guide": "image"}},
            ],
        }
    )
    stack = dffcore.FocalStack(synth.frames)
    run = dffcore.run_pipeline(spec, stack)
    plain = dffcore.run_pipeline(
        dffcore.load_spec({"aggregate": {"name": "argmax", "params": {"sigma": 2}}}), stack
    )
    mae = np.abs(run.result.index - synth.index).mean()
    assert mae < np.abs(plain.result.index - synth.index).mean()
    assert [r.stage for r in run.records][-3:] == [
        "regularize[0]",
        "regularize[1]",
        "regularize[2]",
    ]
    assert "tv" in run.result.diagnostics


def test_listed_by_dff_plugins() -> None:
    proc = dff("plugins", "--kind", "regularize", "--json")
    assert proc.returncode == 0, proc.stderr
    items = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    assert {"graphcut", "weighted-median", "guided", "tv"} <= set(items)
    assert "Chambolle & Pock" in items["tv"]["citation"]
    assert "He, Sun & Tang" in items["guided"]["citation"]
    wm = {p["name"]: p for p in items["weighted-median"]["params"]}
    assert wm["guide"]["default"] == "none" and {"radius", "range_sigma"} <= set(wm)
    tv = {p["name"] for p in items["tv"]["params"]}
    assert {"lam", "iterations", "edge_sigma", "huber"} <= tv
