"""``dff compare``: pipelines x stacks, scores against ground truth, cache, report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image  # a dependency of matplotlib

from dffcore import hookimpl
from dffcore.core.components import Aggregator, Params
from dffcore.core.errors import DffError, SpecError
from dffcore.core.registry import Registry
from dffcore.core.spec import load_spec
from dffcore.eval.cache import cache_key
from dffcore.eval.compare import compare
from dffcore.eval.sources import dataset_stacks, parse_size, synthetic_stacks
from dffcore.eval.synth import SCENES, render_stack, write_stack
from dffcore.eval.variants import PipelineVariant, parse_grid, pipeline_variants
from dffcore.io.images import read_image, write_image
from dffcore.report.figures import edge_crop

from .conftest import data_folder, dff

CHEAP = "description: cheap\nalign: none\nfocus: lapm\naggregate: argmax\n"
BAD = CHEAP + "regularize:\n  - {name: graphcut, params: {unary_scale: 1.0e9}}\n"
SYNTH = ["--synth", "default", "--frames", "6", "--size", "48x64"]


def table(report: str, title: str) -> dict[str, list[str]]:
    """The rows (pipeline -> cells) of the first table under the heading ``### title:``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {title}:"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 4 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("*")] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(cell.strip("*"))


def rows_by_pair(report_dir: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((report_dir / "results.json").read_text())
    return {(r["pipeline"], r["stack"]): r for r in data["rows"]}


def cache_entries(report_dir: Path) -> dict[str, int]:
    """Run entries of the cache -> mtime of their metrics.json."""
    return {
        p.name: (p / "metrics.json").stat().st_mtime_ns
        for p in (report_dir / "cache").iterdir()
        if (p / "metrics.json").is_file()
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    (root / "cheap.yaml").write_text(CHEAP)
    (root / "bad.yaml").write_text(BAD)
    return root


@pytest.fixture(scope="module")
def two_runs(work: Path) -> dict:
    """``dff compare cheap`` then ``dff compare cheap fast`` into the same report folder."""
    out = work / "report"
    first = dff("compare", str(work / "cheap.yaml"), *SYNTH, "-o", str(out))
    assert first.returncode == 0, first.stderr
    before = cache_entries(out)
    rows_before = rows_by_pair(out)
    second = dff("compare", str(work / "cheap.yaml"), "fast", *SYNTH, "-o", str(out))
    assert second.returncode == 0, second.stderr
    return {
        "out": out,
        "before": before,
        "rows_before": rows_before,
        "second": second,
    }


# -- 1. the report, checked against `dff run` ------------------------------------------
def test_report_files_and_mae_match_dff_run(work: Path, two_runs: dict) -> None:
    out = two_runs["out"]
    for name in ("report.md", "report.html", "results.csv", "results.json"):
        assert (out / name).is_file(), name
    for kind in ("depth", "error", "aif"):
        png = out / f"{kind}_default.png"
        assert read_image(png).shape[2] == 3
        with Image.open(png) as im:
            assert im.info["dpi"] == pytest.approx((150, 150), abs=0.1)
    # the same stack, written to disk and run by `dff run`
    stack = work / "stack"
    write_stack(render_stack("default", n_frames=6, size=(48, 64)), stack)
    truth = np.load(stack / "ground_truth" / "index.npy")
    report = (out / "report.md").read_text()
    maes = table(report, "mae")
    expected = {}
    for name, pipeline in (("cheap", str(work / "cheap.yaml")), ("fast", "fast")):
        res = work / f"run_{name}"
        proc = dff("run", pipeline, str(stack), "-o", str(res), "-q")
        assert proc.returncode == 0, proc.stderr
        index = np.load(res / "depth_index.npy")
        crop = json.loads((res / "run.json").read_text())["crop"]
        t = truth if crop is None else truth[crop["y"] :, crop["x"] :][: crop["h"], : crop["w"]]
        expected[name] = float(np.abs(index.astype(np.float64) - t).mean())
        assert number(maes[name][0]) == pytest.approx(expected[name], rel=1e-3)  # "%.4g"
        assert number(maes[name][1]) == pytest.approx(expected[name], rel=1e-3)  # the mean
        exact = rows_by_pair(out)[name, "default"]["metrics"]["slice.mae"]
        assert exact == pytest.approx(expected[name], rel=1e-6)
    best = min(expected, key=expected.get)
    assert maes[best][0].startswith("**") and not maes[max(expected, key=expected.get)][
        0
    ].startswith("**")
    # results.csv: one row per pipeline x stack with the same numbers
    lines = (out / "results.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert len(lines) == 3 and {"pipeline", "stack", "slice.mae", "seconds"} <= set(head)
    for line in lines[1:]:
        cells = dict(zip(head, line.split(","), strict=False))
        assert float(cells["slice.mae"]) == pytest.approx(expected[cells["pipeline"]], rel=1e-6)
        assert float(cells["seconds"]) > 0 and cells["status"] == "done"
    html = (out / "report.html").read_text()
    assert '<img src="depth_default.png"' in html and "<style>" in html
    assert "<script" not in html and "<link" not in html  # self-contained
    assert "dffcore" in report and "## Protocol" in report and "×100" in report


# -- 2. the cache ------------------------------------------------------------------------
def test_second_run_computes_only_the_new_pipeline(work: Path, two_runs: dict) -> None:
    out, before = two_runs["out"], two_runs["before"]
    after = cache_entries(out)
    assert len(before) == 1 and len(after) == 2
    (old,) = before
    assert after[old] == before[old]  # the cheap entry was not rewritten
    rows = rows_by_pair(out)
    assert rows["cheap", "default"]["cached"] is True and rows["fast", "default"]["cached"] is False
    assert (
        rows["cheap", "default"]["metrics"]
        == two_runs["rows_before"]["cheap", "default"]["metrics"]
    )
    assert "1 computed, 1 cached, 0 failed" in two_runs["second"].stdout
    # --force (Python API) recomputes both, with the same scores
    variants = pipeline_variants([str(work / "cheap.yaml"), "fast"])
    stacks = synthetic_stacks("default", frames=6, size=(48, 64))
    calls: list[tuple[str, int, int]] = []
    forced = compare(variants, stacks, out, force=True, progress=lambda *a: calls.append(a))
    assert calls == [("compare", 1, 2), ("compare", 2, 2)]
    assert [r["cached"] for r in forced] == [False, False]
    assert all(cache_entries(out)[k] > after[k] for k in after)
    for r in forced:
        assert r["metrics"] == pytest.approx(rows[r["pipeline"], "default"]["metrics"])


# -- 3. failures -------------------------------------------------------------------------
def test_invalid_spec_is_one_line_before_anything_runs(work: Path) -> None:
    out = work / "never"
    proc = dff("compare", "fast", *SYNTH, "--set", "aggregate.params.sigma=-1", "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dff: error: ")
    assert "aggregate.params.sigma" in lines[0] and "greater than or equal to 0" in lines[0]
    assert not out.exists()
    proc = dff("compare", "fast", "--data", str(work), "--frames", "4", "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "dff: error: --frames applies to --synth stacks, not to --data"
    )
    assert not out.exists()


def test_failed_runs_are_reported_and_the_others_complete(work: Path) -> None:
    data = work / "ds"
    for i, name in enumerate(("a", "b")):
        write_stack(render_stack("planes", n_frames=4, size=(40, 48), seed=i), data / name)
    corrupt = data / "b" / "frame_002.png"
    corrupt.write_bytes(b"not a png")
    out = work / "failures"
    proc = dff(
        "compare",
        str(work / "cheap.yaml"),
        str(work / "bad.yaml"),
        "--data",
        str(data),
        "-o",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr
    rows = rows_by_pair(out)
    assert rows["cheap", "a"]["status"] == "done"
    assert rows["bad", "a"]["status"] == "failed" and "graphcut" in rows["bad", "a"]["error"]
    for p in ("cheap", "bad"):
        assert rows[p, "b"]["status"] == "failed" and str(corrupt) in rows[p, "b"]["error"]
    for r in rows.values():
        assert "\n" not in r["error"]
    report = (out / "report.md").read_text()
    mae = table(report, "mae")
    assert mae["bad"] == ["failed", "failed", "–"] and mae["cheap"][1:] == ["failed", "–"]
    assert math.isfinite(number(mae["cheap"][0]))
    assert "## Failures" in report and "above gco's limit" in report
    assert (out / "depth_a.png").is_file() and not (out / "depth_b.png").exists()
    assert "failed: bad on a: regularize[0] (graphcut)" in proc.stdout
    with pytest.raises(DffError, match="report folder is inside the dataset"):
        compare(pipeline_variants(["fast"]), dataset_stacks(data), data / "report")
    assert not (data / "report").exists()


class BoomParams(Params):
    pass


class Boom(Aggregator):
    """Test-only aggregator that raises an internal (non-DffError) exception."""

    name = "boom"
    Params = BoomParams

    def __call__(self, volume, aligned, ctx):
        raise RuntimeError("boom\nsecond line")


def test_internal_error_of_a_component_is_recorded(tmp_path: Path) -> None:
    class TestPlugin:
        @hookimpl
        def dffcore_register(self, registry):
            registry.add(Boom)

    reg = Registry()
    reg.load_entry_points(third_party=False)
    reg.register(TestPlugin(), "test-boom")
    spec = {"align": "none", "focus": "lapm", "aggregate": "boom"}
    variants = [
        PipelineVariant("boom", load_spec(spec, registry=reg)),
        PipelineVariant("ok", load_spec({**spec, "aggregate": "argmax"}, registry=reg)),
    ]
    stacks = synthetic_stacks(["default"], frames=4, size=(32, 40))
    rows = compare(variants, stacks, tmp_path / "r")
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert rows[0]["error"] == (
        "aggregate (boom, from plugin test-boom): plugin raised RuntimeError: boom; second line"
    )
    assert not (tmp_path / "r" / rows[0]["cache"]).exists()  # failures are not cached


# -- 4. --grid ---------------------------------------------------------------------------
def test_grid_expands_one_pipeline_into_named_variants(tmp_path: Path) -> None:
    variants = pipeline_variants(
        ["fast"],
        overrides=["focus.params.window=5", "aggregate.params.sigma=9"],
        grid=["aggregate.params.sigma=1,2.5", "focus.params.window=3,7"],
    )
    assert [v.name for v in variants] == [
        "fast[aggregate.params.sigma=1,focus.params.window=3]",
        "fast[aggregate.params.sigma=1,focus.params.window=7]",
        "fast[aggregate.params.sigma=2.5,focus.params.window=3]",
        "fast[aggregate.params.sigma=2.5,focus.params.window=7]",
    ]
    got = [(v.spec.aggregate.params.sigma, v.spec.focus.params.window) for v in variants]
    assert got == [(1.0, 3), (1.0, 7), (2.5, 3), (2.5, 7)]  # the grid wins over --set
    assert variants[0].spec.align.name == "auto"  # the rest of fast.yaml is kept
    assert parse_grid("regularize[0].params.w=[1,2],[3,4]") == (
        "regularize[0].params.w",
        ["[1,2]", "[3,4]"],
    )
    with pytest.raises(DffError, match=r"expands one pipeline.*2 are named"):
        pipeline_variants(["fast", "best"], grid=["aggregate.params.sigma=1,2"])
    with pytest.raises(DffError, match="expected KEY=V1,V2"):
        pipeline_variants(["fast"], grid=["aggregate.params.sigma"])
    with pytest.raises(DffError, match="given twice"):
        pipeline_variants(["fast"], grid=["aggregate.params.sigma=1", "aggregate.params.sigma=2"])
    with pytest.raises(DffError, match="empty value"):
        pipeline_variants(["fast"], grid=["aggregate.params.sigma=1,,2"])
    with pytest.raises(SpecError, match=r"aggregate\.params\.sigma"):
        pipeline_variants(["fast"], grid=["aggregate.params.sigma=1,-1"])
    names = [v.name for v in pipeline_variants(["fast", "fast", "best"])]
    assert names == ["fast", "fast-2", "best"]
    # the variants run under their names, each with its own cache entry
    (tmp_path / "cheap.yaml").write_text(CHEAP)
    grid = pipeline_variants([tmp_path / "cheap.yaml"], grid=["aggregate.params.sigma=0,2"])
    rows = compare(grid, synthetic_stacks("default", frames=4, size=(32, 40)), tmp_path / "r")
    assert [r["pipeline"] for r in rows] == [
        "cheap[aggregate.params.sigma=0]",
        "cheap[aggregate.params.sigma=2]",
    ]
    assert rows[0]["cache"] != rows[1]["cache"]
    assert "cheap[aggregate.params.sigma=2]" in (tmp_path / "r" / "report.md").read_text()


def test_stack_sources_and_options() -> None:
    assert [s.name for s in synthetic_stacks("all")] == list(SCENES)
    assert [s.name for s in synthetic_stacks("slant,default,slant")] == ["slant", "default"]
    with pytest.raises(DffError, match=r"unknown scene.*Did you mean 'planes'"):
        synthetic_stacks("plane")
    a, b = (synthetic_stacks("default", noise=n)[0] for n in (0.0, 2.0))
    variant = pipeline_variants(["fast"])[0]
    assert cache_key(variant.spec, a.identity) != cache_key(variant.spec, b.identity)
    assert parse_size("48x64") == (48, 64)
    with pytest.raises(DffError, match="expected HxW"):
        parse_size("48-64")


def test_edge_crop_by_hand() -> None:
    truth = np.zeros((200, 300), np.float32)
    truth[:, 70:] = 3.0  # np.gradient is 1.5 at columns 69 and 70; the first wins
    assert edge_crop(truth) == (69 - 64, 0, 128, 128)
    truth[:] = 0
    truth[:, 100:] = 1.0  # a weak edge ...
    truth[:, 290:] = 5.0  # ... and a strong one near the right border: the box stays inside
    assert edge_crop(truth) == (300 - 128, 0, 128, 128)
    truth[:] = 0
    truth[100:, :] = 2.0  # horizontal edge: rows 99 and 100, first pixel (99, 0)
    assert edge_crop(truth) == (0, 99 - 64, 128, 128)
    truth[:] = 0
    truth[150:, :] = 2.0  # (149, 0): y0 = 85 would overflow the 200 rows, so 200 - 128
    assert edge_crop(truth) == (0, 200 - 128, 128, 128)
    assert edge_crop(np.zeros((50, 60))) == (0, 0, 60, 50)  # no edge, smaller image


# -- 5. the HCI disparity protocol on a hand-made replica -------------------------------
FOCUS = [-1.0, -0.5, 0.0, 0.5, 1.0]  # disparity of slices 0..4
H, W = 40, 48


def make_hci(folder: Path, disparity: np.ndarray) -> None:
    """Slice 2 textured, the others flat grey: a focus measure peaks at slice 2 everywhere."""
    (folder / "stack").mkdir(parents=True)
    (folder / "gt").mkdir()
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    for k in range(len(FOCUS)):
        frame = sharp if k == 2 else np.full((H, W, 3), 128, np.uint8)
        write_image(folder / "stack" / f"slice_{k:02d}.png", frame)
    (folder / "focus_disparity.txt").write_text("".join(f"{f:.6f}\n" for f in FOCUS))
    np.save(folder / "gt" / "disparity.npy", disparity.astype(np.float32))
    write_image(folder / "gt" / "all_in_focus.png", sharp)


def test_hci_disparity_protocol_by_hand(work: Path) -> None:
    data = work / "hci"
    flat = np.full((H, W), 0.5)
    flat[20, 20] = np.nan  # never scored
    make_hci(data / "flat", flat)
    edge = np.full((H, W), 0.5)
    edge[:10] = 2.0  # beyond the last slice: index 4 + (2 - 1) / 0.5 = 6, outside the sweep
    make_hci(data / "edge", edge)
    out = work / "hci_report"
    proc = dff("compare", str(work / "cheap.yaml"), "--data", str(data), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = rows_by_pair(out)
    # the prediction is slice 2 everywhere: disparity 0.0
    m = rows["cheap", "flat"]["metrics"]
    assert m["disparity.mse"] == pytest.approx(0.25) and m["disparity.rmse"] == pytest.approx(0.5)
    assert m["disparity.bump"] == pytest.approx(0.0, abs=1e-9)  # a constant error: flat
    assert m["slice.mae"] == pytest.approx(1.0)  # truth 0.5 px = slice 3
    assert m["slice.bad_1"] == 0.0 and m["slice.outside_sweep"] == 0.0
    assert m["aif.ssim"] == pytest.approx(1.0) and m["aif.psnr"] > 100  # slice 2 is the truth
    m = rows["cheap", "edge"]["metrics"]
    n_out, n = 10 * W, H * W  # 480 pixels at 2.0 px (error 2 px, 4 slices), the rest 0.5 px
    assert m["disparity.mse"] == pytest.approx((n_out * 4 + (n - n_out) * 0.25) / n)  # 1.1875
    assert m["slice.mae"] == pytest.approx((n_out * 4 + (n - n_out) * 1) / n)  # not clipped
    assert m["slice.outside_sweep"] == pytest.approx(n_out / n)
    # the truth jumps between rows 9 and 10 (1.5 px, more than half the 0.5-px spacing;
    # 3 slices): rows 4..15 lie within 5 px of it, 6 rows on each side
    assert m["disparity.mse_edges"] == pytest.approx((6 * 4 + 6 * 0.25) / 12)
    assert m["disparity.mse_inside"] == pytest.approx((4 * 4 + (H - 16) * 0.25) / (H - 12))
    assert m["slice.mae_edges"] == pytest.approx((6 * 4 + 6 * 1) / 12)
    assert m["slice.mae_inside"] == pytest.approx((4 * 4 + (H - 16) * 1) / (H - 12))
    flat_m = rows["cheap", "flat"]["metrics"]  # no depth edge: no near-edge score
    assert flat_m["disparity.mse_edges"] is None and flat_m["slice.mae_edges"] is None
    assert flat_m["disparity.mse_inside"] == pytest.approx(0.25)
    # the error steps by 1.5 px between rows 9 and 10: the unnormalised second difference
    # is ±1.5 on rows 8..11 (clipped to 0.05) and 0 elsewhere -> 100 * 4 * 0.05 / 40 rows
    assert m["disparity.bump"] == pytest.approx(100 * 4 * W * 0.05 / n)
    mse = table((out / "report.md").read_text(), "mse")
    assert mse["cheap"][0] == "1.188" and mse["cheap"][1] == "0.25"  # edge, flat (sorted)
    assert "HCI tables show this ×100" in (out / "report.md").read_text()


# -- 6. the real HCI antinous stack --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.data
def test_hci_antinous_fast(tmp_path: Path) -> None:
    folder = data_folder("hci_antinous")
    out = tmp_path / "report"
    proc = dff("compare", "fast", "--data", str(folder), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    m = row["metrics"]
    assert 0 < m["disparity.mse"] < 10 and 0 < m["disparity.bump"] < 10
    # independent check from the cached index: np.interp over the focus disparities
    index = np.load(out / row["cache"] / "depth_index.npy")
    focus = np.loadtxt(folder / "focus_disparity.txt")
    truth = np.load(folder / "gt" / "disparity.npy")
    if row["crop"]:
        x, y, w, h = row["crop"]
        truth = truth[y : y + h, x : x + w]
    pred = np.interp(index, np.arange(len(focus)), focus)
    ok = np.isfinite(truth)
    assert m["disparity.mse"] == pytest.approx(float(((pred - truth)[ok] ** 2).mean()), rel=1e-5)
    report = (out / "report.md").read_text()
    assert "## Disparity (px)" in report and "### bump:" in report
    assert (out / "depth_hci_antinous.png").is_file()
    assert os.path.getsize(out / "aif_hci_antinous.png") > 0
