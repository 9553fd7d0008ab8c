"""Alignment that never lies: motion limits, the motion-path fit, the residual test for
motionless stacks, the auto aligner, and the failure modes (blow-up, featureless slices,
tiny crop, silent confidence collapse)."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import dffcore
from dffcore.align.apply import apply_alignment
from dffcore.align.limits import MotionLimits, describe, implausible
from dffcore.align.pairwise import PairwiseAligner
from dffcore.align.path import PairEstimate, fit_path
from dffcore.core.components import Context
from dffcore.core.data import Alignment, FocalStack
from dffcore.core.errors import DffError
from dffcore.eval.synth import render_stack, write_stack

from .conftest import dff

SHAPE = (120, 160)  # (H, W)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    """Scale and rotate about the image centre, then shift (pixels)."""
    h, w = SHAPE
    c = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1.0]])
    r = math.radians(degrees)
    m = np.array(
        [
            [scale * math.cos(r), -scale * math.sin(r), tx],
            [scale * math.sin(r), scale * math.cos(r), ty],
            [0, 0, 1],
        ]
    )
    return c @ m @ np.linalg.inv(c)


def points_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance (px) between where ``a`` and ``b`` send the image's corners."""
    h, w = SHAPE
    pts = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float).T
    pa, pb = a @ pts, b @ pts
    return float(np.abs(pa[:2] / pa[2] - pb[:2] / pb[2]).max())


# -- limits ---------------------------------------------------------------------------
def test_describe_reads_scale_rotation_and_shift() -> None:
    m = describe(similarity(1.02, 0.5, 3.0, -4.0), SHAPE)
    assert m.scale == pytest.approx(0.02, abs=1e-9)
    assert m.anisotropy == pytest.approx(0.0, abs=1e-9)
    assert m.rotation == pytest.approx(0.5, abs=1e-9)
    assert m.shift == pytest.approx(5.0 / math.hypot(*SHAPE), abs=1e-9)  # the centre moves 5 px
    assert m.perspective == pytest.approx(0.0, abs=1e-12)
    stretch = np.diag([1.1, 1.0, 1.0])
    assert describe(stretch, SHAPE).anisotropy == pytest.approx(0.1)


def test_a_blow_up_is_implausible_and_says_why() -> None:
    limits = MotionLimits()
    blow_up = np.diag([8.0, 8.0, 1.0])  # the x-scale of 8 seen on a featureless stack
    reason = implausible(blow_up, SHAPE, limits, step=True)
    assert reason is not None and "magnification change 700.0%" in reason
    assert "scale_step" in reason
    assert implausible(similarity(1.01, 0.2, 1.0, 1.0), SHAPE, limits, step=True) is None
    # breathing that adds up over a sweep: fine relative to the reference, not per step
    assert implausible(similarity(1.16, 0, 0, 0), SHAPE, limits, step=False) is None
    assert "scale_step" in implausible(similarity(1.16, 0, 0, 0), SHAPE, limits, step=True)
    assert "non-finite" in implausible(np.full((3, 3), np.nan), SHAPE, limits, step=False)


# -- the motion path ------------------------------------------------------------------
def breathing_and_shake(n: int, seed: int = 0) -> list[np.ndarray]:
    """Reference (frame 0) -> frame k: 4 % breathing over the sweep plus random shake."""
    rng = np.random.default_rng(seed)
    out = [np.eye(3)]
    for k in range(1, n):
        shake = rng.normal(0, 1.5, 2)
        out.append(similarity(1 + 0.04 * k / (n - 1), rng.normal(0, 0.1), *shake))
    return out


def neighbour_pairs(truth: list[np.ndarray], skip: int = 1) -> list[PairEstimate]:
    n = len(truth)
    return [
        PairEstimate(a, a + s, truth[a + s] @ np.linalg.inv(truth[a]))
        for s in range(1, skip + 1)
        for a in range(n - s)
    ]


def test_the_path_fit_recovers_exact_pairs() -> None:
    truth = breathing_and_shake(8)
    fit = fit_path(8, 0, SHAPE, neighbour_pairs(truth), "affine")
    assert fit.transforms[0] is None and fit.interpolated == []
    for k in range(1, 8):
        assert points_error(fit.transforms[k], truth[k]) < 0.01
    assert max(fit.residual_px) < 0.01


def test_a_frame_without_pairs_is_interpolated_and_the_rest_stays_exact() -> None:
    truth = breathing_and_shake(8, seed=1)
    pairs = [p for p in neighbour_pairs(truth) if (p.a, p.b) not in ((3, 4), (4, 5))]
    pairs.append(PairEstimate(3, 5, truth[5] @ np.linalg.inv(truth[3])))  # a bridge over 4
    fit = fit_path(8, 0, SHAPE, pairs, "affine")
    assert fit.interpolated == [4]  # no estimate reached frame 4
    for k in (1, 2, 3, 5, 6, 7):  # the bridge keeps the rest of the chain exact
        assert points_error(fit.transforms[k], truth[k]) < 0.05, k
    between = 0.5 * (truth[3] + truth[5])  # frame 4 lies between its neighbours
    assert points_error(fit.transforms[4], between) < 3.0
    cut = fit_path(8, 0, SHAPE, pairs[:-1], "affine")  # without the bridge: cut in two
    assert cut.interpolated == [4, 5, 6, 7]
    relative = cut.transforms[7] @ np.linalg.inv(cut.transforms[5])
    assert points_error(relative, truth[7] @ np.linalg.inv(truth[5])) < 0.05


def test_one_wrong_pair_loses_its_pull_where_estimates_are_redundant() -> None:
    truth = breathing_and_shake(10, seed=2)
    pairs = neighbour_pairs(truth, skip=2)
    bad = next(i for i, p in enumerate(pairs) if (p.a, p.b) == (4, 5))
    wrong = similarity(1.0, 0.0, 6.0, -5.0) @ pairs[bad].transform  # 7.8 px off
    pairs[bad] = PairEstimate(4, 5, wrong)
    fit = fit_path(10, 0, SHAPE, pairs, "affine")
    for k in range(1, 10):
        assert points_error(fit.transforms[k], truth[k]) < 0.5, k
    assert fit.residual_px[bad] > 5  # and it stands out


# -- aligners that check themselves -------------------------------------------------
class _Scripted(PairwiseAligner):
    """Returns ``pairs[(a, b)]`` (or a failure) instead of estimating."""

    name = "test-scripted"
    pairs: ClassVar[dict[tuple[int, int], np.ndarray]] = {}

    @property
    def path_model(self) -> str:
        return "affine"

    def prepare(self, stack: FocalStack) -> Any:
        return None

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[np.ndarray | None, dict]:
        t = self.pairs.get((a, b))
        return (t, {}) if t is not None else (None, {"failure": "scripted failure"})


@pytest.fixture(scope="module")
def moving() -> tuple[FocalStack, list[np.ndarray]]:
    """A synthetic stack with breathing and shake, and its true transforms."""
    s = render_stack("planes", n_frames=6, size=SHAPE, seed=3, shake_px=1.5, focus_breathing=0.03)
    return FocalStack(s.frames), list(s.transforms)


def test_a_blown_up_pair_is_left_out_and_bridged(moving) -> None:
    stack, truth = moving
    pairs = {(a, a + 1): truth[a + 1] @ np.linalg.inv(truth[a]) for a in range(5)}
    pairs[(2, 3)] = np.diag([8.0, 5700.0, 1.0])  # the blow-up of chained affine ECC
    pairs[(2, 4)] = truth[4] @ np.linalg.inv(truth[2])  # the bridge the aligner asks for
    aligner = _Scripted({"still_test": 0})
    aligner.pairs = pairs
    alignment = aligner.estimate(stack, Context())
    d3 = alignment.diagnostics[3]
    assert "implausible" in d3["failure"] and d3["fallback"] == "interpolate"
    assert d3["bridged_by"] == [2, 4] and "interpolated" not in d3
    for k in range(1, 6):  # every frame keeps its true motion
        assert points_error(alignment.transforms[k], truth[k]) < 0.05, k
    assert "4/5 pairs aligned, " in alignment.summary and "1 pairs failed" in alignment.summary
    del pairs[(2, 4)]  # no bridge: frames 3-5 keep their relative motion, 3 is guessed
    cut = aligner.estimate(stack, Context())
    assert [i for i, d in enumerate(cut.diagnostics) if d.get("interpolated")] == [3, 4, 5]
    assert implausible(cut.transforms[3], SHAPE, MotionLimits(), step=False) is None
    assert "3 frames interpolated" in cut.summary


def test_no_usable_pair_is_a_clear_error(moving) -> None:
    stack, _ = moving
    aligner = _Scripted()
    aligner.pairs = {}
    with pytest.raises(DffError) as err:
        aligner.estimate(stack, Context())
    message = str(err.value)
    assert "no pair of frames could be aligned" in message and "align: none" in message
    assert "frame 1 (#1) to frame 0: scripted failure" in message and "\n" not in message


def test_the_residual_test_tells_still_stacks_from_moving_ones(moving) -> None:
    still = render_stack("planes", n_frames=6, size=SHAPE, seed=3)
    ecc = dffcore.load_spec({"align": {"name": "ecc", "params": {"motion": "affine"}}})
    quiet = ecc.align.build().estimate(FocalStack(still.frames), Context())
    assert not quiet.moves and quiet.summary.startswith("no camera motion")
    moved = ecc.align.build().estimate(moving[0], Context())
    assert moved.moves
    errors = [points_error(moved.transforms[k], moving[1][k]) for k in range(1, 6)]
    assert max(errors) < 1.0, errors


# -- the failure modes, through whole pipelines ------------------------------------------
def test_featureless_slices_align_as_well_as_none() -> None:
    """A motionless sweep that starts far in front of the scene: its first slices have
    almost no features. Every pipeline runs, and no worse than without alignment."""
    s = render_stack("default", n_frames=8, size=(256, 320), seed=5, sweep_m=(0.45, 1.25))
    stack = FocalStack(s.frames)
    for name in ("classic", "fast", "best"):
        run = dffcore.run_pipeline(dffcore.load_spec(name), stack)
        none = dffcore.run_pipeline(dffcore.load_spec(name, ["align=none"]), stack)
        assert run.result.index.shape == (256, 320), name  # nothing cropped away
        mae = np.abs(run.result.index - s.index).mean()
        mae_none = np.abs(none.result.index - s.index).mean()
        assert mae <= 1.05 * mae_none, (name, mae, mae_none)


def test_a_tiny_crop_is_a_one_line_error() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 60, 80, 3), np.uint8)
    shifted = [None, similarity(1, 0, 70, 0), similarity(1, 0, -70, 50)]
    alignment = Alignment(0, shifted, (60, 80), crop=True)
    with pytest.raises(DffError) as err:
        apply_alignment(FocalStack(frames), alignment)
    message = str(err.value)
    assert "hardly overlap" in message and "crop: false" in message and "\n" not in message


class _Drifting(dffcore.Aligner):
    """Leaves the last two frames 70 % outside the reference grid."""

    name = "test-drifting"

    def __call__(self, stack: FocalStack, ctx: Context) -> dffcore.AlignedStack:
        w = stack.shape[1]
        shifted = np.array([[1, 0, 0.7 * w], [0, 1, 0], [0, 0, 1.0]])
        t = [None] * (stack.n - 2) + [shifted, shifted]
        return apply_alignment(stack, Alignment(0, t, stack.shape), jobs=ctx.jobs)


def test_a_confidence_collapse_is_never_silent(caplog: pytest.LogCaptureFixture) -> None:
    s = render_stack("slant", n_frames=4, size=(64, 80), seed=1)
    spec = dffcore.load_spec({"aggregate": "argmax"})
    spec.align = spec.align.__class__(
        "align", "test-drifting", None, "align", _Drifting, spec.align.source
    )
    with caplog.at_level(logging.WARNING, logger="dffcore.run.engine"):
        run = dffcore.run_pipeline(spec, FocalStack(s.frames))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(re.search(r"frames 2 \(#2, 2\d%\), 3 \(#3, 2\d%\) cover less", w) for w in warnings)
    unreliable = (run.result.confidence == 0).mean()
    assert unreliable > 0.5 and any("pixels are unreliable" in w for w in warnings)


# -- auto and the command line -----------------------------------------------------
def test_auto_decides_per_stack(moving) -> None:
    auto = dffcore.load_spec("best").align.build()
    still = render_stack("planes", n_frames=6, size=SHAPE, seed=3)
    quiet = auto.estimate(FocalStack(still.frames), Context())
    assert not quiet.moves and quiet.diagnostics[0]["auto"]["decision"] == "none"
    glob = auto.estimate(moving[0], Context())
    assert glob.diagnostics[0]["auto"]["decision"] == "global"  # no parallax: one path
    assert glob.diagnostics[0]["auto"]["residual_px"] < 1.0
    forced = dffcore.load_spec("best", ["align.params.parallax=always"]).align.build()
    dense = forced.estimate(moving[0], Context())
    assert dense.diagnostics[0]["auto"]["decision"] == "global + residual flow"
    assert dense.transforms[1].shape == (*SHAPE, 2)  # a dense map per frame
    assert "residual flow" in dense.summary


def test_setting_a_stage_name_resets_its_parameters(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dffcore.core.spec"):
        spec = dffcore.load_spec("fast", ["align.params.reference=middle", "align.name=flow"])
    assert spec.align.name == "flow" and spec.align.params.reference == "middle"
    assert spec.align.params.occlusion_check is True  # flow's own defaults
    notes = [r.getMessage() for r in caplog.records]
    assert any("the parameters of auto" in n and "flow" in n for n in notes), notes
    assert dffcore.load_spec("classic", ["regularize[1].name=tv"]).regularize[1].name == "tv"


def test_the_command_line_prints_what_the_aligner_decided(tmp_path: Path) -> None:
    write_stack(render_stack("default", n_frames=5, size=(64, 80), seed=2), tmp_path / "s")
    proc = dff("run", "best", str(tmp_path / "s"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "dff: align (auto): no camera motion" in proc.stderr
    quiet = dff("run", "best", str(tmp_path / "s"), "-o", str(tmp_path / "q"), "-q")
    assert "align (auto)" not in quiet.stderr


def test_occlusion_holes_in_a_dense_map_do_not_shrink_the_crop() -> None:
    """A map's occluded pixels are holes inside the frame, not its border."""
    from dffcore.align.apply import crop_box
    from dffcore.ops.warp import grid

    shifted = grid(SHAPE) + np.float32([3.0, 0.0])  # frame 1 lies 3 px to the right
    shifted[40:80, 60:100] = np.nan  # an occluded patch in the middle
    box = crop_box(Alignment(0, [None, shifted], SHAPE, crop=True))
    y0, y1, x0, x1 = box
    assert (y0, y1, x0) == (0, SHAPE[0], 0) and SHAPE[1] - 6 <= x1 < SHAPE[1]
