"""The notebook front door (``dffcore.estimate``), built-in names in ``load_spec``, how the
registry calls its hook, and licence notices where users meet them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

import dffcore
from dffcore.core.components import FocusMeasure
from dffcore.core.errors import DffError
from dffcore.core.registry import Registry, Source
from dffcore.eval.synth import SynthStack, render_stack

from .conftest import LICENCE_LINE, dff, stderr_lines

GCO_NOTICE = "graphcut runs gco"


@pytest.fixture(scope="module")
def scene() -> SynthStack:
    return render_stack("default", n_frames=6, size=(64, 80), seed=3)


def test_estimate_takes_a_list_of_rgb_frames(scene: SynthStack) -> None:
    frames = list(scene.frames)  # (H,W,3) uint8 each
    result = dffcore.estimate(frames, "best")
    assert result.index.shape == result.confidence.shape == (64, 80)
    assert result.all_in_focus.shape == (64, 80, 3) and result.all_in_focus.dtype == np.uint8
    assert result.depth is None  # no focus distances given
    assert np.abs(result.index - scene.index).mean() < 0.6  # slices: it is a depth map


def test_estimate_takes_grey_frames_and_pads_a_cropped_result(scene: SynthStack) -> None:
    """fast crops to the region every frame covers; estimate returns the frames' size."""
    shaken = render_stack("default", n_frames=6, size=(64, 80), seed=3, shake_px=2.0)
    grey = [f.mean(axis=2).astype(np.uint8) for f in shaken.frames]  # (H,W) frames
    run = dffcore.run_pipeline(
        dffcore.load_spec("fast"), dffcore.FocalStack(np.stack(grey)[..., None])
    )
    assert run.crop is not None  # the pipeline did crop
    x, y, w, h = run.crop
    result = dffcore.estimate(grey, "fast")
    assert result.index.shape == (64, 80) and result.all_in_focus.shape == (64, 80, 1)
    inside = (slice(y, y + h), slice(x, x + w))
    assert np.array_equal(result.index[inside], run.result.index)
    outside = np.ones((64, 80), bool)
    outside[inside] = False
    assert outside.any() and np.all(result.confidence[outside] == 0)
    assert np.isfinite(result.index).all()
    assert np.array_equal(result.all_in_focus[outside][:, 0], np.stack(grey)[0][outside])


def test_estimate_takes_a_dict_spec_an_array_and_focus_distances(scene: SynthStack) -> None:
    spec = {"focus": {"name": "lapm", "params": {"window": 5}}, "aggregate": "gaussian"}
    frames = scene.frames.astype(np.float64) / 255  # (N,H,W,C) floats in [0, 1]
    result = dffcore.estimate(frames, spec, focus_distances=scene.focus_distances_m)
    assert result.index.shape == (64, 80) and result.all_in_focus.dtype == np.float32
    near, far = scene.focus_distances_m.min(), scene.focus_distances_m.max()
    assert result.depth.shape == (64, 80)
    assert near - 1e-6 <= result.depth.min() and result.depth.max() <= far + 1e-6
    same = dffcore.estimate(list(scene.frames), spec, overrides=["aggregate.params.sigma=0"])
    assert same.index.shape == (64, 80)


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        ([np.zeros((8, 8), np.uint8)], "at least 2 frames"),
        ([np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)], "one shape"),
        ([np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16)], "one dtype"),
        (np.zeros((3, 8, 8), np.int32), "int32"),
        (np.zeros((3, 8, 8, 5), np.uint8), "1 or 3 channels"),
        (np.zeros((3, 8), np.uint8), "(H,W)"),
    ],
)
def test_estimate_refuses_bad_frames_in_one_line(frames, needle: str) -> None:
    with pytest.raises(DffError) as err:
        dffcore.estimate(frames, "fast")
    message = str(err.value)
    assert message.startswith("frames: ") and needle in message and "\n" not in message


def test_load_spec_takes_builtin_names() -> None:
    spec = dffcore.load_spec("best")
    assert spec.focus.name == "mslog" and spec.source.endswith("best.yaml")
    assert dffcore.load_spec("fast", ["aggregate.params.sigma=1"]).aggregate.params.sigma == 1
    with pytest.raises(DffError) as err:
        dffcore.load_spec("bets")
    assert "built-in: best, classic, fast" in str(err.value)


def test_the_register_hook_is_called_through_the_plugin_manager() -> None:
    class Zero(FocusMeasure):
        name = "zero"

        def measure(self, frame: np.ndarray) -> np.ndarray:
            return np.zeros(frame.shape[:2], np.float32)

    plugin = types.ModuleType("zero_plugin")

    @dffcore.hookimpl
    def dffcore_register(registry: dffcore.Registrar) -> None:
        registry.add(Zero)

    plugin.dffcore_register = dffcore_register
    reg = Registry()
    calls: list[str] = []
    reg.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
    reg.register(plugin, Source("zero", "zero-dist", "1.0"))
    assert calls == ["dffcore_register"]
    assert reg.get("focus", "zero").source == Source("zero", "zero-dist", "1.0")

    bad = types.ModuleType("bad_plugin")  # pluggy checks the hook's signature

    @dffcore.hookimpl
    def bad_register(registry, colour) -> None:
        raise AssertionError("never called")

    bad.dffcore_register = bad_register
    reg.register(bad, Source("bad"))
    assert [e.plugin for e in reg.errors] == ["bad"] and "colour" in reg.errors[0].message


def test_run_json_names_the_plugin_of_the_registry_that_ran(
    scene: SynthStack, tmp_path: Path
) -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    log = reg.get("focus", "log").cls
    mine = type("Mine", (log,), {"name": "mine"})
    plugin = types.ModuleType("mine_plugin")
    plugin.dffcore_register = dffcore.hookimpl(lambda registry: registry.add(mine))
    reg.register(plugin, Source("mine", "mine-dist", "2.5"))
    spec = dffcore.load_spec({"focus": "mine"}, registry=reg)
    run = dffcore.run_pipeline(spec, dffcore.FocalStack(scene.frames))
    dffcore.write_outputs(run, tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    focus = next(c for c in record["versions"]["components"] if c["stage"] == "focus")
    assert focus == {
        "stage": "focus",
        "name": "mine",
        "plugin": "mine",
        "distribution": "mine-dist",
        "version": "2.5",
    }


def test_classic_names_the_gco_licence_once(synth_dir: Path, tmp_path: Path) -> None:
    proc = dff("run", "classic", str(synth_dir), "-o", str(tmp_path / "o"), "-q")
    assert proc.returncode == 0, proc.stderr
    notices = [ln for ln in proc.stderr.splitlines() if ln.startswith(LICENCE_LINE)]
    assert len(notices) == 1 and GCO_NOTICE in notices[0] and "research use only" in notices[0]
    assert stderr_lines(proc.stderr) == []
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert len(record["licences"]) == 1 and GCO_NOTICE in record["licences"][0]


def test_licence_notices_follow_the_solver_and_appear_once_per_run(scene: SynthStack) -> None:
    stack = dffcore.FocalStack(scene.frames)
    spec = dffcore.load_spec("classic", ["align=none", "regularize[0].params.solver=maxflow"])
    banded = dffcore.run_pipeline(spec, stack, band_rows=16)  # graphcut runs on every band
    assert banded.plan["regions"] == 4
    assert banded.notices == ["graphcut runs PyMaxflow: GPL-3.0"]
    assert dffcore.run_pipeline(dffcore.load_spec("best"), stack).notices == []
