"""The run engine's three strategies (whole image, strips, bands) agree."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest

import dffcore
from dffcore.align.apply import warp_frame
from dffcore.core.data import Alignment
from dffcore.core.errors import DffError
from dffcore.core.spec import MIN_MEMORY, parse_memory, validate
from dffcore.eval.synth import render_stack, write_stack
from dffcore.ops.warp import grid, scale_transform, to_map
from dffcore.run import frames as frames_module
from dffcore.run.frames import StreamedFrames, map_rows, released
from dffcore.run.plan import BAND_BUFFERS, BAND_ROW_BYTES, band_rows_for
from dffcore.run.records import Recorder, process_peak_mb

from .conftest import dff

#: local stages only: the banded result must equal the whole-image one
LOCAL = {
    "align": {"name": "ecc", "params": {"motion": "affine", "levels": 2, "crop": True}},
    "focus": {"name": "lapm", "params": {"window": 7}},
    "aggregate": {"name": "gaussian", "params": {"sigma": 2}},
    "regularize": [
        {"name": "weighted-median", "params": {"guide": "image", "radius": 2, "weights": "uniform"}}
    ],
    "composite": "blend",
}


#: the same, without cropping: invalid border pixels reach every stage
UNCROPPED = {**LOCAL, "align": {**LOCAL["align"], "params": {"motion": "affine", "levels": 2}}}


@pytest.fixture(scope="module")
def shaky() -> dffcore.FocalStack:
    """A hand-held synthetic stack: warped frames have invalid borders."""
    s = render_stack("planes", n_frames=6, size=(96, 128), seed=4, shake_px=2.0, shake_deg=0.3)
    return dffcore.FocalStack(s.frames)


def assert_same_result(a: dffcore.Run, b: dffcore.Run) -> None:
    assert a.crop == b.crop
    assert np.array_equal(a.result.index, b.result.index)
    assert np.array_equal(a.result.confidence, b.result.confidence)
    assert np.array_equal(a.result.all_in_focus, b.result.all_in_focus)


@pytest.mark.parametrize("pipeline", [LOCAL, UNCROPPED], ids=["cropped", "uncropped"])
def test_bands_and_strips_of_local_stages_equal_the_whole_image(
    shaky: dffcore.FocalStack, pipeline: dict
) -> None:
    spec = validate(pipeline)
    whole = dffcore.run_pipeline(spec, shaky, jobs=1)
    strips = dffcore.run_pipeline(spec, shaky, jobs=3)
    banded = dffcore.run_pipeline(spec, shaky, band_rows=12)
    assert (whole.plan["mode"], strips.plan["mode"], banded.plan["mode"]) == (
        "whole",
        "strips",
        "bands",
    )
    assert banded.plan["regions"] >= 6 and strips.plan["regions"] == 3
    assert (whole.crop is not None) == (pipeline is LOCAL)
    if pipeline is UNCROPPED:  # the borders are invalid, and their confidence is 0
        assert (whole.result.confidence == 0).sum() > 0
    assert_same_result(whole, strips)
    assert_same_result(whole, banded)


def test_a_run_has_the_same_fields_whatever_the_cores(shaky: dffcore.FocalStack) -> None:
    spec = validate(LOCAL)
    runs = [dffcore.run_pipeline(spec, shaky, jobs=j) for j in (1, 2)]
    for run in runs:
        assert run.volume is None and run.aligned is None  # not asked for
        assert [r.stage for r in run.records] == [
            "align",
            "focus",
            "aggregate",
            "regularize[0]",
            "composite",
        ]
        assert all(r.peak_rss_mb is not None and r.peak_rss_mb > 0 for r in run.records)
    kept = [dffcore.run_pipeline(spec, shaky, jobs=j, intermediates=True) for j in (1, 2)]
    for run in kept:
        assert run.plan["mode"] == "whole"  # the volume exists whole only there
        assert run.volume.data.shape == run.aligned.frames.shape[:3]
        assert run.aligned.frames.shape[1:3] == run.result.index.shape
    assert_same_result(runs[1], kept[1])
    with pytest.raises(DffError, match="memory budget"):
        dffcore.run_pipeline(spec, shaky, band_rows=20, intermediates=True)


def test_each_stage_is_measured_on_its_own(shaky: dffcore.FocalStack) -> None:
    """Strips run stage by stage: every stage has its own time and peak memory."""
    spec = validate(LOCAL)
    run = dffcore.run_pipeline(spec, shaky, jobs=2)
    assert run.plan["mode"] == "strips"
    seconds = [r.seconds for r in run.records]
    assert len(set(seconds)) == len(seconds)  # not one figure shared out
    assert all(s > 0 for s in seconds)


class _SelfWarping(dffcore.Aligner):
    """A third-party aligner that warps its frames itself (here: not at all)."""

    name = "self-warping"

    def __call__(self, stack, ctx):
        return dffcore.AlignedStack(stack.frames, 0)


def test_an_aligner_without_an_alignment_runs_in_memory_not_in_bands(
    shaky: dffcore.FocalStack,
) -> None:
    spec = validate(LOCAL)
    spec.align = dataclasses.replace(spec.align, name="self-warping", cls=_SelfWarping)
    run = dffcore.run_pipeline(spec, shaky)
    assert run.alignment is None and run.result.index.shape == shaky.shape
    with pytest.raises(DffError) as err:
        dffcore.run_pipeline(spec, shaky, band_rows=20)
    message = str(err.value)
    assert message.startswith("align (self-warping): ") and "Alignment" in message
    assert "--memory" in message and "\n" not in message


def test_global_stages_stay_close_in_bands(shaky: dffcore.FocalStack) -> None:
    """MRF and global smoothing see a 64-row overlap: close to, not equal to, whole."""
    spec = dffcore.load_spec(dffcore.find_pipeline("classic"))
    whole = dffcore.run_pipeline(spec, shaky)
    banded = dffcore.run_pipeline(spec, shaky, band_rows=24)
    diff = np.abs(whole.result.index - banded.result.index)
    assert diff.mean() < 0.1  # slices; measured 0.0 here, 0.03 on keyboard (bench_memory.py)


def test_lazy_stack_under_a_budget_matches_the_eager_run(tmp_path: Path) -> None:
    s = render_stack("default", n_frames=5, size=(64, 96), seed=2)
    write_stack(s, tmp_path / "stack")
    spec = validate(LOCAL)
    eager = dffcore.run_pipeline(spec, dffcore.read_stack(tmp_path / "stack"))
    lazy = dffcore.read_stack(tmp_path / "stack", lazy=True)
    assert not isinstance(lazy.frames, np.ndarray) and lazy.frames.shape == (5, 64, 96, 3)
    banded = dffcore.run_pipeline(spec, lazy, memory=parse_memory("1GB"))
    assert banded.plan["mode"] == "bands"
    assert np.array_equal(eager.result.index, banded.result.index)
    assert banded.result.depth is not None  # focus distances travel with the lazy stack


def test_band_height_follows_the_budget() -> None:
    n, h, w = 30, 4000, 6000
    small, large = (band_rows_for(n, h, w, 3, 1, int(b * 1e9), 22) for b in (3, 6))
    assert 8 <= small < large < h
    # one band's frames and buffers fit what the budget leaves after the fixed parts
    per_row = n * w * (3 + 1 + 4 * BAND_BUFFERS) + w * BAND_ROW_BYTES
    assert (small + 44) * per_row < 3e9
    with pytest.raises(DffError) as err:
        band_rows_for(n, h, w, 3, 1, int(0.5e9), 22)
    assert "give at least" in str(err.value) and "\n" not in str(err.value)


def smallest_budget(n: int, h: int, w: int, margin: int) -> float:
    """The budget the error for a too-small one asks for (bytes)."""
    with pytest.raises(DffError) as err:
        band_rows_for(n, h, w, 3, 1, MIN_MEMORY, margin)
    need = parse_memory(str(err.value).rsplit(" ", 1)[-1])
    assert band_rows_for(n, h, w, 3, 1, need, margin) >= 8  # enough, as it says
    return need


def test_the_smallest_budget_grows_with_the_width_not_with_frames_times_pixels() -> None:
    """Doubling the height adds only the outputs (11 bytes a pixel), whatever the frames;
    30 frames of 26 MP with best's overlap (139 rows) fit in 2.2 GB (2.54 GB before
    the warp and the bands stopped being counted together)."""
    for n in (30, 60):
        base = smallest_budget(n, 2000, 6240, 139)
        taller = smallest_budget(n, 4000, 6240, 139)
        assert taller - base <= 2000 * 6240 * 11 + 2e6  # rounding of the figure shown
    assert smallest_budget(30, 4160, 6240, 139) <= 2.2e9


def test_a_dense_map_estimated_small_is_applied_rows_at_a_time(tmp_path: Path) -> None:
    """A residual map estimated at half size warps the frames as the same map upsampled
    to full resolution would, never making the full map; the run keeps no map."""
    rng = np.random.default_rng(3)
    h, w, hs, ws = 300, 200, 150, 100
    small = grid((hs, ws)) + rng.normal(0, 0.7, (hs, ws, 2)).astype(np.float32)
    small[40:44, 50:53] = np.nan  # an occluded patch
    frames = rng.integers(0, 255, (2, h, w, 3), np.uint8)
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in frames])
    alignment = Alignment(0, [None, small], (h, w), interpolation="linear")
    full = dataclasses.replace(alignment, transforms=[None, scale_transform(small, 0.5, (h, w))])
    for ya, yb in ((0, h), (7, 133)):
        exact = scale_transform(small, 0.5, (h, w))[ya:yb, 5:190]
        rows = map_rows(small, 0.5, (h, w), ya, yb, 5, 190)
        assert np.array_equal(np.isnan(rows), np.isnan(exact))
        assert np.nanmax(np.abs(rows - exact)) < 1e-3
    stack = dffcore.FocalStack(frames, [tmp_path / "a.png", tmp_path / "b.png"])
    box = (0, h, 0, w)
    out = StreamedFrames(tmp_path, alignment, box, 3, np.uint8, map_scale=0.5)
    with mock.patch.object(frames_module, "WARP_ROWS", 64):
        out.write(stack, lambda done, total: None)
    with out:
        got = out.rows(0, h)
    want, valid = warp_frame(full, 1, frames[1], box)
    assert np.abs(got.frames[1].astype(int) - want).max() <= 1
    assert np.array_equal(got.valid[1], valid)
    kept = released(alignment, 0.5)
    assert all(np.ndim(t) != 3 for t in kept.transforms)
    assert "dense_map" in kept.diagnostics[1] and "dense_map" not in kept.diagnostics[0]


def test_transforms_estimated_small_apply_at_full_resolution() -> None:
    """A shift of 2 px at half size is 4 px at full size, about pixel centres."""
    t_small = np.array([[1.0, 0, 2.0], [0, 1.0, -1.0], [0, 0, 1]])
    t_full = scale_transform(t_small, 0.5, (40, 60))
    assert np.allclose(t_full, [[1, 0, 4], [0, 1, -2], [0, 0, 1]])
    zoom = scale_transform(np.diag([2.0, 2.0, 1.0]), 0.5, (40, 60))
    # a 2x zoom about small pixel 0, whose centre is full-res pixel 0.5: x -> 2x - 0.5
    assert np.allclose(zoom @ [10, 10, 1], [19.5, 19.5, 1])
    assert np.allclose(zoom @ [0.5, 0.5, 1], [0.5, 0.5, 1])
    flow_small = to_map(t_small, (20, 30))
    flow_full = scale_transform(flow_small, 0.5, (40, 60))
    assert np.allclose(flow_full, to_map(t_full, (40, 60)), atol=1e-4)


def test_temporary_files_are_removed_even_on_error(
    tmp_path: Path, shaky, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spec = validate(LOCAL)
    dffcore.run_pipeline(spec, shaky, band_rows=20)
    assert list(tmp_path.iterdir()) == []
    bad = dffcore.FocalStack(shaky.frames.copy())
    bad.frames[3] = 0  # a black frame: nothing for ECC to align
    spec_bad = validate({**LOCAL, "align": {"name": "ecc", "params": {"fallback": "error"}}})
    with pytest.raises(DffError):
        dffcore.run_pipeline(spec_bad, bad, band_rows=20)
    assert list(tmp_path.iterdir()) == []
    spec_fail = validate({**LOCAL, "focus": {"name": "lapm", "params": {"window": 7}}})
    spec_fail.focus = dataclasses.replace(spec_fail.focus, cls=_Failing)
    with pytest.raises(DffError, match=r"focus .*: broken"):
        dffcore.run_pipeline(spec_fail, shaky, band_rows=20)  # fails after the warp
    assert list(tmp_path.iterdir()) == []


class _Failing(dffcore.FocusMeasure):
    name = "failing"

    def measure(self, frame):
        raise DffError("broken")


def test_memory_in_the_spec_and_on_the_command_line(tmp_path: Path) -> None:
    assert validate({**LOCAL, "memory": "2GB"}).memory == 2 * 10**9
    with pytest.raises(DffError) as err:
        validate({**LOCAL, "memory": "two gigs"})
    assert "memory" in str(err.value)
    s = render_stack("slant", n_frames=4, size=(48, 64), seed=1)
    write_stack(s, tmp_path / "stack")
    res = dff(
        "run", "fast", str(tmp_path / "stack"), "-o", str(tmp_path / "out"), "--memory", "1GB"
    )
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["plan"]["memory_budget_mb"] == 1000 and record["plan"]["mode"] == "bands"
    res = dff("run", "fast", str(tmp_path / "stack"), "-o", str(tmp_path / "o2"), "--memory", "1")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--memory" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux /proc only")
def test_stage_peaks_are_their_own_and_the_process_peak_is_kept() -> None:
    """A big stage then a small one: each gets its own peak, and the process's peak (what
    ``/usr/bin/time -v`` and ``wait4`` report at exit) still holds the big one."""
    recorder = Recorder()
    size = 400 * 2**20

    def big() -> None:
        a = np.ones(size, np.uint8)  # touched: resident
        time.sleep(0.05)
        del a

    recorder.measure("focus", "big", big)
    recorder.measure("aggregate", "small", lambda: time.sleep(0.05))
    first, second = recorder.as_list()
    assert first.peak_rss_mb - second.peak_rss_mb > 300
    assert process_peak_mb() >= first.peak_rss_mb - 1


def test_bands_start_on_even_rows(shaky: dffcore.FocalStack, monkeypatch) -> None:
    """Half-resolution stages (best's local estimate) sample every other row from a
    region's first row: a band that starts on an odd row would sample other rows than
    the whole image does."""
    starts: list[int] = []
    for cls in (frames_module.InMemoryFrames, StreamedFrames):

        def spy(self, a: int, b: int, rows=cls.rows):
            starts.append(a)
            return rows(self, a, b)

        monkeypatch.setattr(cls, "rows", spy)
    spec = validate({**LOCAL, "aggregate": {"name": "gaussian", "params": {"local_sigma": 3}}})
    for band in (11, 12, 13):
        dffcore.run_pipeline(spec, shaky, band_rows=band)
    assert len(starts) > 9 and all(a % 2 == 0 for a in starts), starts


def test_a_failed_stage_stops_its_memory_sampler(shaky: dffcore.FocalStack) -> None:
    import threading

    def sampling() -> int:
        return sum(1 for t in threading.enumerate() if "_sample" in t.name)

    before = sampling()
    recorder = Recorder()
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            recorder.measure("focus", "x", lambda: 1 / 0)
    assert sampling() == before
