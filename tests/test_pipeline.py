"""End to end: the classic pipeline, the output contract, the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import dffcore
from dffcore.eval.synth import SynthStack

from .conftest import PIPELINES, data_folder, dff

CONTRACT = {
    "depth_index.npy",
    "depth.png",
    "depth_color.png",
    "confidence.npy",
    "all_in_focus.png",
    "run.json",
}


def test_api_runs_classic_on_synthetic_stack(synth: SynthStack, synth_dir: Path) -> None:
    spec = dffcore.load_spec(PIPELINES / "classic.yaml")
    stack = dffcore.read_stack(synth_dir)
    assert stack.focus_unit == "m" and stack.focus_distances is not None
    seen: list[str] = []
    run = dffcore.run_pipeline(spec, stack, progress=lambda s, d, t: seen.append(s))
    res = run.result
    assert res.index.shape == (96, 128) and res.index.dtype == np.float32
    assert res.confidence.min() >= 0 and res.confidence.max() <= 1
    assert res.all_in_focus.shape == (96, 128, 3) and res.all_in_focus.dtype == np.uint8
    mae = np.abs(res.index - synth.index).mean()
    assert mae < 0.8, mae  # 8 slices; a random answer would be ≈ 2.6
    # metric depth is derived from the sidecar's focus distances
    assert res.depth is not None
    assert np.abs(res.depth - synth.depth_m).mean() < 0.05
    assert {s.split()[0] for s in seen} == {
        "align",
        "focus",
        "aggregate",
        "regularize[0]",
        "regularize[1]",
    }
    assert [r.stage for r in run.records] == [
        "align",
        "focus",
        "aggregate",
        "regularize[0]",
        "regularize[1]",
    ]


def test_cli_writes_the_output_contract(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = dff(
        "run",
        str(PIPELINES / "classic.yaml"),
        str(synth_dir),
        "-o",
        str(out),
        "--set",
        "regularize[0].params.cycles=2",
    )
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert CONTRACT <= names
    assert not [n for n in names if n.startswith(".")]  # no temporaries left behind
    index = np.load(out / "depth_index.npy")
    assert index.dtype == np.float32 and index.shape == (96, 128)
    png = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16
    np.testing.assert_allclose(png / 65535 * 7, index, atol=1e-3)
    record = json.loads((out / "run.json").read_text())
    assert record["spec"]["regularize"][0]["params"]["cycles"] == 2  # --set applied, resolved
    assert record["spec"]["regularize"][0]["params"]["unary_scale"] == 100  # defaults filled
    assert next(s["stage"] for s in record["stages"]) == "align"
    assert all(s["seconds"] >= 0 and s["peak_rss_mb"] > 0 for s in record["stages"])
    assert record["versions"]["packages"]["dffcore"]
    assert record["reference_frame"] == 0 and len(record["stack"]["frames"]) == 8
    assert record["diagnostics"]["graphcut"]["energy"] > 0
    assert set(record["outputs"]) >= CONTRACT


@pytest.mark.data
def test_classic_on_keyboard(tmp_path: Path) -> None:
    folder = data_folder("keyboard")
    out = tmp_path / "kb"
    proc = dff("run", "classic", str(folder), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert CONTRACT <= {p.name for p in out.iterdir()}
    d = np.load(out / "depth_index.npy")
    assert d.shape == (360, 640) and d.dtype == np.float32
    assert np.isfinite(d).all() and d.min() >= 0 and d.max() <= 31
    # no frame of wrong depth: each 6-px border strip agrees with the strip 16 px inside
    b, k = 6, 16
    sides = [
        np.abs(d[:b] - d[k : k + b]).mean(),
        np.abs(d[-b:] - d[-k - b : -k]).mean(),
        np.abs(d[:, :b] - d[:, k : k + b]).mean(),
        np.abs(d[:, -b:] - d[:, -k - b : -k]).mean(),
    ]
    assert max(sides) < 2.0, sides
    # the keyboard recedes from bottom (frame 31 in focus) to top (frame 0)
    assert np.median(d[-60:, 200:440]) > np.median(d[60:120, 200:440]) + 8
    record = json.loads((out / "run.json").read_text())
    assert {s["stage"] for s in record["stages"]} >= {"align", "focus", "aggregate"}
    assert record["spec"]["align"]["name"] == "homography"
