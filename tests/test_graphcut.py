"""Graph-cut regulariser: gco and PyMaxflow moves agree, energies are exact and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dffcore_plugins.aggregate.argmax import Argmax
from dffcore_plugins.regularize._maxflow import solve_maxflow
from dffcore_plugins.regularize.graphcut import (
    GraphCut,
    GraphCutParams,
    build_unary,
    check_gco_energy,
    contrast_weights,
    grid_energy,
    pairwise_matrix,
    pool,
    solve_gco,
    solve_tiled,
)

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.core.errors import DffError
from dffcore.eval.synth import SynthStack

from .conftest import dff, stderr_lines


def _aligned(n: int, h: int, w: int) -> AlignedStack:
    return AlignedStack(np.zeros((n, h, w, 1), np.uint8), 0)


def _result(h: int, w: int, index: np.ndarray | None = None, grey=None) -> DepthResult:
    aif = None if grey is None else (np.asarray(grey)[..., None] * 255).astype(np.uint8)
    index = np.zeros((h, w), np.float32) if index is None else index.astype(np.float32)
    return DepthResult(index, np.ones((h, w), np.float32), aif)


def _run(params: dict, vol: FocusVolume, result: DepthResult | None = None) -> DepthResult:
    n, h, w = vol.data.shape
    result = _result(h, w) if result is None else result
    return GraphCut(params)(result, vol, _aligned(n, h, w), Context(jobs=2))


def _step_volume(noise: float, seed: int = 0) -> FocusVolume:
    """Focus peaks at slice 2 on the left, 6 on the right, plus noise."""
    rng = np.random.default_rng(seed)
    n, h, w = 9, 40, 48
    truth = np.where(np.arange(w) < w // 2, 2, 6)[None, :].repeat(h, 0)
    k = np.arange(n)[:, None, None]
    data = np.exp(-((k - truth[None]) ** 2) / 4.0) + noise * rng.random((n, h, w))
    return FocusVolume(data.astype(np.float32))


def _noisy_unary(seed: int = 0, h: int = 60, w: int = 80, n: int = 8) -> np.ndarray:
    """A blocky multi-label truth, 10 per label of distance, plus uniform noise 0..40."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    truth = (xx // 20 + yy // 15) % n
    dist = np.abs(np.arange(n)[None, None] - truth[..., None])
    return (10 * dist + rng.integers(0, 40, (h, w, n))).astype(np.int32)


# --- moved from test_components.py -----------------------------------------------------


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_graphcut_recovers_a_noisy_step_and_lowers_the_energy(solver: str) -> None:
    vol = _step_volume(noise=1.2)
    frames = np.zeros((9, 40, 48, 1), np.uint8)
    argmax = Argmax({"sigma": 0})(vol, AlignedStack(frames, 0), Context())
    gc = GraphCut({"sigma": 0, "pair_scale": 20, "tile": 0, "cycles": -1, "solver": solver})
    out = gc(argmax, vol, AlignedStack(frames, 0), Context())
    truth = np.where(np.arange(48) < 24, 2, 6)[None, :].repeat(40, 0)
    assert (argmax.index != truth).mean() > 0.2  # the data alone are ambiguous
    assert (out.index != truth).mean() < 0.02
    diag = out.diagnostics["graphcut"]
    assert diag["energy"] > 0 and diag["solver"] == solver and diag["algorithm"] == "expansion"
    assert diag["cycles"] == -1 and diag["seconds"] >= 0


def test_reported_energy_is_gcos_own_energy() -> None:
    vol = _step_volume(noise=1.0, seed=5)
    unary = build_unary(vol, 1.0, 100)
    # whatever the memory layout of the unary, gco must see the same costs as numpy
    view = np.ascontiguousarray(unary.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert not view.flags.c_contiguous
    pair = np.abs(np.subtract.outer(np.arange(9), np.arange(9))).astype(np.int32) * 3
    labels, energy = solve_gco(view, pair, GraphCutParams(cycles=2))
    assert grid_energy(unary, labels, 3) == energy


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_tiled_solve_reaches_the_whole_image_energy(solver: str) -> None:
    vol = _step_volume(noise=1.0, seed=2)
    unary = build_unary(vol, 0, 100)
    pair = np.abs(np.subtract.outer(np.arange(9), np.arange(9))).astype(np.int32) * 5
    p = GraphCutParams(solver=solver, cycles=-1)
    whole = solve_tiled(unary, pair, p.model_copy(update={"tile": 0}), Context())
    tiled = solve_tiled(
        unary, pair, p.model_copy(update={"tile": 16, "tile_overlap": 8}), Context(jobs=2)
    )
    e_whole, e_tiled = grid_energy(unary, whole, 5), grid_energy(unary, tiled, 5)
    assert e_tiled <= e_whole * 1.005


def test_energy_check_raises_instead_of_aborting() -> None:
    unary = np.zeros((4, 4, 3), np.int32)
    unary[0, 0, 0] = 20_000_000
    pair = np.abs(np.subtract.outer(np.arange(3), np.arange(3)))
    with pytest.raises(DffError, match="gco's limit"):
        check_gco_energy(unary, pair)


# --- gco and maxflow on the same integer problem ----------------------------------------


@pytest.mark.parametrize("pairwise", ["linear", "truncated-linear"])
@pytest.mark.parametrize("contrast", [0.0, 0.1])
def test_gco_and_maxflow_agree_and_report_exact_energies(pairwise: str, contrast: float) -> None:
    unary = _noisy_unary()
    h, w, n = unary.shape
    weights = None
    if contrast:
        rng = np.random.default_rng(1)
        yy, xx = np.mgrid[:h, :w]
        grey = ((xx // 20 + yy // 15) % n) / n + 0.05 * rng.random((h, w))
        weights = contrast_weights(grey.astype(np.float32), contrast, 10)
        assert weights[0].min() < 5 and weights[0].max() == 10  # really not uniform
        unary = unary * 10
    pair = pairwise_matrix(n, pairwise, 4, 2).astype(np.int32)
    p = GraphCutParams(cycles=-1, tile=0)
    lg, eg = solve_gco(unary, pair, p, weights)
    lm, em = solve_maxflow(unary, pair, weights, None, "expansion", -1)
    assert grid_energy(unary, lg, pair, weights) == eg  # gco's own compute_energy
    assert grid_energy(unary, lm, pair, weights) == em
    assert abs(em - eg) <= 1e-3 * eg, (eg, em)
    # both are local minima for expansion moves: neither solver improves the other's
    assert solve_maxflow(unary, pair, weights, lg, "expansion", -1)[1] == eg
    assert solve_gco(unary, pair, p, weights, lm)[1] == em
    assert eg < 0.95 * grid_energy(unary, unary.argmin(axis=2), pair, weights)


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_swap_lowers_a_truncated_quadratic_energy(solver: str) -> None:
    unary = _noisy_unary(seed=3, h=40, w=50)
    n = unary.shape[2]
    vol = FocusVolume(-unary.transpose(2, 0, 1).astype(np.float32))  # unary = scaled −focus
    params = {
        "solver": solver,
        "algorithm": "swap",
        "pairwise": "truncated-quadratic",
        "truncation": 2,
        "pair_scale": 4,
        "sigma": 0,
        "cycles": -1,
        "init": "data",
    }
    out = _run(params, vol)
    diag = out.diagnostics["graphcut"]
    u = build_unary(vol, 0, 100)
    pair = pairwise_matrix(n, "truncated-quadratic", 4, 2)
    start = grid_energy(u, u.argmin(axis=2), pair)
    assert diag["algorithm"] == "swap" and diag["pairwise"] == "truncated-quadratic"
    assert diag["energy"] == grid_energy(u, out.index.astype(int), pair)
    assert diag["energy"] < 0.9 * start


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_expansion_with_a_non_metric_pairwise_is_an_error(solver: str) -> None:
    params = {"solver": solver, "pairwise": "truncated-quadratic", "algorithm": "expansion"}
    with pytest.raises(DffError, match=r"regularize\[0\].params: .*truncated-quadratic.*swap"):
        dffcore.load_spec({"regularize": [{"name": "graphcut", "params": params}]})


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"unary_scale": 1e9}, "unary_scale"),
        ({"pair_scale": 3e6}, "pair_scale"),  # 8 × 3e6 > 1e7
        # each factor is fine, the product (≈ 8e10) would overflow int32 inside gco
        ({"contrast_sigma": 0.1, "weight_scale": 90_000, "pair_scale": 1e5}, "weight_scale"),
        ({"solver": "maxflow", "unary_scale": 1e9}, "maxflow's limit"),
        ({"coarse_to_fine": 3, "unary_scale": 1e6}, "coarse_to_fine level"),
    ],
)
def test_energies_that_would_abort_or_overflow_are_errors(params: dict, needle: str) -> None:
    vol = _step_volume(0.5)
    result = _result(40, 48, grey=np.random.default_rng(0).random((40, 48)))
    with pytest.raises(DffError, match=needle) as err:
        _run({"sigma": 0, **params}, vol, result)
    assert "\n" not in str(err.value)


def _tiny_pipeline(tmp_path: Path, solver: str = "gco") -> str:
    spec = tmp_path / "gc.yaml"
    spec.write_text(
        "focus: {name: log}\naggregate: {name: argmax, params: {sigma: 2}}\n"
        f"regularize:\n  - {{name: graphcut, params: {{solver: {solver}}}}}\n"
    )
    return str(spec)


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["pair_scale=1e7"], ("gco's limit", "pair_scale")),
        (
            ["contrast_sigma=0.1", "weight_scale=90000", "pair_scale=1e5"],
            ("gco's limit", "weight × pairwise", "weight_scale"),
        ),
    ],
)
def test_cli_reports_a_bad_graphcut_in_one_line(
    tmp_path: Path, synth_dir: Path, overrides: list[str], needles: tuple[str, ...]
) -> None:
    args = [a for o in overrides for a in ("--set", f"regularize[0].params.{o}")]
    spec = _tiny_pipeline(tmp_path)
    proc = dff("run", spec, str(synth_dir), "-o", str(tmp_path / "o"), *args)
    lines = stderr_lines(proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for needle in ("regularize[0] (graphcut)", *needles):
        assert needle in lines[0], lines[0]


def test_non_metric_expansion_is_refused_before_any_work(tmp_path: Path, synth_dir: Path) -> None:
    spec = _tiny_pipeline(tmp_path)
    for args in (["validate", spec], ["run", spec, str(synth_dir), "-o", str(tmp_path / "o")]):
        proc = dff(*args, "--set", "regularize[0].params.pairwise=truncated-quadratic")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "set algorithm: swap" in proc.stderr
        assert "regularize[0].params" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_cli_runs_maxflow_and_lists_both_licences(tmp_path: Path, synth_dir: Path) -> None:
    proc = dff("run", _tiny_pipeline(tmp_path, "maxflow"), str(synth_dir), "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert '"solver": "maxflow"' in (tmp_path / "run.json").read_text()
    listing = dff("plugins", "--kind", "regularize").stdout
    assert "research use only" in listing and "PyMaxflow is GPL-3.0" in listing


# --- contrast, coarse-to-fine, initial labels, sub-frame --------------------------------


def test_contrast_weights_keep_the_depth_edge_on_the_intensity_edge() -> None:
    rng = np.random.default_rng(1)
    n, h, w = 9, 48, 64
    yy, xx = np.mgrid[:h, :w]
    edge = w // 2 + np.round(4 * np.sin(yy / 5.0)).astype(int)  # a wavy boundary
    left = xx < edge
    truth = np.where(left, 2, 6)
    k = np.arange(n)[:, None, None]
    amp = np.where(left, 1.0, 0.25)  # textured left, faint right: its focus bleeds across
    data = amp * np.exp(-((k - truth[None]) ** 2) / 2.0) + 0.15 * rng.random((n, h, w))
    vol = FocusVolume(data.astype(np.float32))
    result = _result(h, w, grey=np.where(left, 0.8, 0.2))
    base = {"sigma": 3, "pair_scale": 10, "tile": 0, "cycles": -1}
    wrong = {}
    for contrast in (0.0, 0.1):
        out = _run({**base, "contrast_sigma": contrast}, vol, result)
        wrong[contrast] = int((out.index != truth).sum())
    assert wrong[0.1] < 0.6 * wrong[0.0], wrong


def test_pooled_energy_is_the_fine_energy_of_the_upsampled_labels() -> None:
    rng = np.random.default_rng(0)
    unary = rng.integers(0, 50, (13, 17, 5)).astype(np.int32)  # odd sizes
    weights = (rng.integers(0, 9, (12, 17)), rng.integers(0, 9, (13, 16)))
    pair = pairwise_matrix(5, "truncated-linear", 3, 2)
    coarse_u, coarse_w = pool(unary, weights)
    labels = rng.integers(0, 5, coarse_u.shape[:2])
    fine = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)[:13, :17]
    e_coarse = grid_energy(coarse_u, labels, pair, coarse_w)
    assert e_coarse == grid_energy(unary, fine, pair, weights)


def _wavy_volume(h: int, w: int, n: int = 12, noise: float = 0.6, seed: int = 0) -> FocusVolume:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    surface = (n - 1) / 2 * (1 + np.sin(xx / 23.0) * np.cos(yy / 31.0))
    k = np.arange(n)[:, None, None]
    data = np.exp(-((k - surface[None]) ** 2) / 2.0) + noise * rng.random((n, h, w))
    return FocusVolume(data.astype(np.float32))


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_coarse_to_fine_reaches_the_single_level_energy(solver: str) -> None:
    vol = _wavy_volume(256, 320, n=16, noise=2.5)
    base = {"solver": solver, "sigma": 1, "pair_scale": 15, "cycles": 1, "tile": 0}
    single = _run(base, vol).diagnostics["graphcut"]
    multi = _run({**base, "coarse_to_fine": 2}, vol).diagnostics["graphcut"]
    assert [lv["level"] for lv in multi["levels"]] == [2, 1, 0]
    assert multi["levels"][0]["shape"] == [64, 80]
    assert all(lv["seconds"] >= 0 for lv in multi["levels"])
    assert multi["energy"] <= 1.01 * single["energy"], (multi["energy"], single["energy"])


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_init_result_starts_from_the_given_labels(solver: str) -> None:
    vol = _wavy_volume(40, 56, n=8, seed=3)
    base = {"solver": solver, "sigma": 1, "pair_scale": 6, "tile": 0}
    best = _run({**base, "cycles": -1}, vol)
    again = _run({**base, "cycles": 1, "init": "result"}, vol, best)
    np.testing.assert_array_equal(again.index, best.index)
    assert again.diagnostics["graphcut"]["energy"] == best.diagnostics["graphcut"]["energy"]
    zero = _run({**base, "cycles": 1}, vol)  # from label 0, one cycle lands elsewhere
    assert zero.diagnostics["graphcut"]["energy"] >= best.diagnostics["graphcut"]["energy"]


def test_subframe_refinement_recovers_fractional_peaks() -> None:
    n, h, w = 10, 48, 64
    yy, xx = np.mgrid[:h, :w]
    surface = 2.0 + 5.0 * xx / (w - 1) + 0.5 * np.sin(yy / 7.0)  # smooth, in [1.5, 7.5]
    k = np.arange(n)[:, None, None]
    vol = FocusVolume(np.exp(-((k - surface[None]) ** 2) / (2 * 1.5**2)).astype(np.float32))
    base = {"sigma": 0, "pair_scale": 1, "tile": 0, "cycles": -1}
    mae = {}
    for method in ("none", "parabolic", "gaussian"):
        out = _run({**base, "subframe": method}, vol)
        mae[method] = float(np.abs(out.index - surface).mean())
    assert 0.2 < mae["none"] < 0.3, mae
    assert mae["gaussian"] < 0.1 and mae["parabolic"] < mae["none"], mae


# --- the classic pipeline's graph cut on either solver ----------------------------------


def test_classic_graphcut_on_gco_and_maxflow_agree(synth: SynthStack) -> None:
    from dffcore_plugins.focus.log import LoG

    aligned = AlignedStack(synth.frames, 0)
    vol = LoG({"gaussian_ksize": 5, "laplacian_ksize": 5})(aligned, Context())
    result = Argmax({"sigma": 7})(vol, aligned, Context())
    classic = {"sigma": 2, "unary_scale": 100, "pair_scale": 1, "cycles": 1}
    energies = {}
    for solver in ("gco", "maxflow"):
        out = GraphCut({**classic, "solver": solver})(result, vol, aligned, Context(jobs=2))
        energies[solver] = out.diagnostics["graphcut"]["energy"]
        assert out.index.dtype == np.float32 and np.all(out.index == np.rint(out.index))
    assert abs(energies["maxflow"] - energies["gco"]) <= 1e-3 * energies["gco"], energies


@pytest.mark.parametrize("solver", ["gco", "maxflow"])
def test_degenerate_problems_do_not_abort(solver: str) -> None:
    one_label = FocusVolume(np.random.default_rng(0).random((1, 7, 9)).astype(np.float32))
    assert np.all(_run({"solver": solver}, one_label).index == 0)  # gco aborts on 1 label
    unary = _noisy_unary(h=5, w=7, n=4)
    pair = pairwise_matrix(4, "linear", 1, 1)
    p = GraphCutParams(solver=solver, tile=1, tile_overlap=0)  # 1x1 tiles: no edges
    np.testing.assert_array_equal(solve_tiled(unary, pair, p, Context()), unary.argmin(axis=2))
