"""Alignment where the truth is known: motionless stacks and hand shake with breathing.

    python benchmarks/align_synthetic.py [PIPELINE ...] [--part still|hci|shake]

Three parts (default: all):

- ``still``: motionless synthetic stacks whose sweep starts far in front of the scene
  (``sweep_m=(0.45, 1.25)`` for a scene at 0.8-1.25 m), so the first slices are
  defocused everywhere and almost featureless: every pipeline with its own aligner
  against the same pipeline with ``align: none`` (depth MAE in slices; ratio; a run that
  stops is reported with its error).
- ``hci``: the same comparison on ``../shared/data/hci_antinous`` (disparity MSE, px²).
- ``shake``: every scene of ``benchmarks/accuracy.py`` rendered still and with hand shake
  plus focus breathing (1.5 px shift and 0.15° rotation std per frame, 1.2 % zoom over
  the sweep), both as JPEG frames (quality 90): each pipeline's mean depth error on the
  shaken stack against the still one (ratio), and the same pipeline given the true
  transforms (``oracle``: what any aligner could reach at best with the pipeline's
  interpolation). Errors are measured on the pixels every shaken frame covers (the rest
  has no data in some frame); the whole-image error is printed too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

import dffcore
from dffcore.align.apply import apply_alignment
from dffcore.core.components import Aligner, Context
from dffcore.core.data import AlignedStack, Alignment, FocalStack
from dffcore.eval.metrics import to_output_grid
from dffcore.eval.synth import SynthStack, render_stack
from dffcore.ops.warp import valid_mask

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy import HCI, SCENES  # noqa: E402

STILL_SCENES = [("default", 10, 5), ("planes", 10, 6), ("steps", 12, 7)]  # scene, frames, seed
SWEEP = (0.45, 1.25)
SHAKE = {"shake_px": 1.5, "shake_deg": 0.15, "focus_breathing": 0.012}
JPEG_QUALITY = 90


def jpeg(frames: np.ndarray) -> np.ndarray:
    """The frames as a camera would save them (JPEG, quality 90, decoded again)."""
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        _, buf = cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return out


def mae(run: dffcore.Run, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    err = np.abs(run.result.index - to_output_grid(truth, run.crop))
    return float(err.mean() if mask is None else err[to_output_grid(mask, run.crop)].mean())


def run_or_error(spec: dffcore.PipelineSpec, stack: FocalStack) -> dffcore.Run | str:
    try:
        return dffcore.run_pipeline(spec, stack)
    except dffcore.DffError as exc:
        return f"stopped: {exc}"[:110]


def part_still(names: list[str]) -> None:
    print(f"motionless stacks, sweep {SWEEP} m in front of a 0.8-1.25 m scene (MAE, slices):")
    print(f"  {'pipeline':<10} {'stack':<18} {'own aligner':>12} {'align none':>11} {'ratio':>7}")
    for name in names:
        for scene, n, seed in STILL_SCENES:
            s = render_stack(scene, n_frames=n, size=(256, 320), seed=seed, sweep_m=SWEEP)
            stack = FocalStack(s.frames)
            own = run_or_error(dffcore.load_spec(name), stack)
            none = run_or_error(dffcore.load_spec(name, ["align=none"]), stack)
            label = f"{scene}-{n}"
            if isinstance(own, str) or isinstance(none, str):
                print(f"  {name:<10} {label:<18} {own if isinstance(own, str) else none}")
                continue
            a, b = mae(own, s.index), mae(none, s.index)
            print(f"  {name:<10} {label:<18} {a:12.3f} {b:11.3f} {a / b:7.3f}")


def part_hci(names: list[str]) -> None:
    if not (HCI / "stack").is_dir():
        print("hci_antinous: skipped (../shared/data/hci_antinous not found)")
        return
    stack = dffcore.read_stack(HCI / "stack")
    focus = np.loadtxt(HCI / "focus_disparity.txt")
    truth = np.load(HCI / "gt" / "disparity.npy")
    print("hci_antinous (disparity MSE, px²):")
    print(f"  {'pipeline':<10} {'own aligner':>12} {'align none':>11} {'ratio':>7}  aligner says")
    for name in names:
        scores = []
        runs = [run_or_error(dffcore.load_spec(name, o), stack) for o in ([], ["align=none"])]
        if any(isinstance(r, str) for r in runs):
            print(f"  {name:<10} {next(r for r in runs if isinstance(r, str))}")
            continue
        for run in runs:
            disparity = np.interp(run.result.index, np.arange(len(focus)), focus)
            scores.append(float(((disparity - to_output_grid(truth, run.crop)) ** 2).mean()))
        says = runs[0].alignment.summary if runs[0].alignment else ""
        print(
            f"  {name:<10} {scores[0]:12.4f} {scores[1]:11.4f} {scores[0] / scores[1]:7.3f}  {says}"
        )


class Oracle(Aligner):
    """The true transforms of a synthetic stack, applied as any aligner would."""

    name = "oracle"

    def __init__(self, transforms: np.ndarray, interpolation: str) -> None:
        super().__init__()
        self.transforms = [None if np.allclose(t, np.eye(3)) else t for t in transforms]
        self.interpolation = interpolation

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        truth = Alignment(0, self.transforms, stack.shape, interpolation=self.interpolation)
        return apply_alignment(stack, truth, jobs=ctx.jobs)


def with_oracle(spec: dffcore.PipelineSpec, synth: SynthStack) -> dffcore.PipelineSpec:
    interpolation = getattr(spec.align.params, "interpolation", "cubic")
    oracle = Oracle(synth.transforms, interpolation)
    out = dataclasses.replace(spec)
    out.align = dataclasses.replace(spec.align, name="oracle", cls=lambda params: oracle)
    return out


def part_shake(names: list[str]) -> None:
    print(
        "hand shake (1.5 px, 0.15°) + 1.2 % breathing, JPEG q90 (MAE in slices on the pixels "
        "every frame covers; whole image in brackets):"
    )
    print(
        f"  {'pipeline':<10} {'scene':<18} {'still':>7} {'shaken':>15} {'ratio':>6} "
        f"{'oracle':>7} {'ratio':>6}"
    )
    for name in names:
        ratios = []
        for label, scene, n, noise, seed in SCENES:
            kw = {"n_frames": n, "size": (240, 320), "noise_sigma": noise, "seed": seed}
            still, shaken = render_stack(scene, **kw), render_stack(scene, **kw, **SHAKE)
            cover = np.ones((240, 320), bool)
            for t in shaken.transforms:
                cover &= valid_mask(t, (240, 320), (240, 320))
            spec = dffcore.load_spec(name)
            r_still = dffcore.run_pipeline(spec, FocalStack(jpeg(still.frames)))
            r_shaken = dffcore.run_pipeline(spec, FocalStack(jpeg(shaken.frames)))
            r_oracle = dffcore.run_pipeline(
                with_oracle(spec, shaken), FocalStack(jpeg(shaken.frames))
            )
            a, b, c = (mae(r, shaken.index, cover) for r in (r_still, r_shaken, r_oracle))
            whole = mae(r_shaken, shaken.index)
            ratios.append(b / a)
            print(
                f"  {name:<10} {label:<18} {a:7.3f} {b:7.3f} ({whole:5.3f}) {b / a:6.2f} "
                f"{c:7.3f} {c / a:6.2f}"
            )
        print(f"  {name:<10} {'mean ratio':<18} {np.mean(ratios):39.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="*", default=["classic", "fast", "best"])
    ap.add_argument("--part", choices=["still", "hci", "shake"], action="append")
    args = ap.parse_args()
    parts = args.part or ["still", "hci", "shake"]
    for part in parts:
        {"still": part_still, "hci": part_hci, "shake": part_shake}[part](args.pipelines)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
