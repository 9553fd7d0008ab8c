"""Accuracy of pipelines on synthetic stacks with ground truth and on HCI antinous.

    python benchmarks/accuracy.py [PIPELINE ...] [--quick]

Pipelines are files or built-in names (default: every built-in pipeline). Synthetic
scenes come from ``dffcore.synth`` (smooth slant, steps with a textureless band,
planes, the default mix; 8 and 24 slices; with and without noise); errors are in
slices against the rendered ground truth (MAE, RMSE). HCI antinous (``../shared/data``)
is scored in disparity (px): MSE and RMSE against ``gt/disparity.npy``, the slice
index mapped to disparity through ``focus_disparity.txt`` (linear between slices).
Seconds are the pipeline's run time (no I/O).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import dffcore
from dffcore.data import FocalStack
from dffcore.metrics import to_output_grid
from dffcore.spec import builtin_pipelines
from dffcore.synth import render_stack

HCI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "hci_antinous"

SCENES = [  # (label, scene, frames, noise)
    ("slant-8", "slant", 8, 0.0),
    ("slant-24", "slant", 24, 0.0),
    ("steps-8", "steps", 8, 0.0),
    ("steps-24-noise3", "steps", 24, 3.0),
    ("planes-16-noise3", "planes", 16, 3.0),
    ("default-16", "default", 16, 0.0),
]


def synthetic_scores(spec: dffcore.PipelineSpec, quick: bool) -> dict[str, tuple[float, float]]:
    out = {}
    for label, scene, n, noise in SCENES[:3] if quick else SCENES:
        synth = render_stack(scene, n_frames=n, size=(240, 320), noise_sigma=noise, seed=7)
        t0 = time.perf_counter()
        run = dffcore.run_pipeline(spec, FocalStack(synth.frames))
        sec = time.perf_counter() - t0
        err = run.result.index - to_output_grid(synth.index, run.aligned.crop)
        out[label] = (float(np.abs(err).mean()), float(np.sqrt((err**2).mean())), sec)
    return out


def hci_scores(spec: dffcore.PipelineSpec) -> tuple[float, float, float] | None:
    if not (HCI / "stack").is_dir():
        return None
    stack = dffcore.read_stack(HCI / "stack")
    focus = np.loadtxt(HCI / "focus_disparity.txt")
    truth = np.load(HCI / "gt" / "disparity.npy")
    t0 = time.perf_counter()
    run = dffcore.run_pipeline(spec, stack)
    sec = time.perf_counter() - t0
    disparity = np.interp(run.result.index, np.arange(len(focus)), focus)
    mse = float(((disparity - to_output_grid(truth, run.aligned.crop)) ** 2).mean())
    return mse, float(np.sqrt(mse)), sec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="*", help="pipeline files or built-in names")
    ap.add_argument("--quick", action="store_true", help="fewer synthetic scenes")
    args = ap.parse_args()
    names = args.pipelines or sorted(builtin_pipelines())
    specs = {Path(str(n)).stem: dffcore.load_spec(dffcore.find_pipeline(n)) for n in names}
    rows = {name: synthetic_scores(spec, args.quick) for name, spec in specs.items()}
    labels = list(next(iter(rows.values())))
    print("MAE in slices (synthetic, 240x320):")
    print(f"  {'pipeline':<12}" + "".join(f"{lab:>17}" for lab in labels) + f"{'mean':>9}")
    for name, scores in rows.items():
        maes = [scores[lab][0] for lab in labels]
        print(f"  {name:<12}" + "".join(f"{m:17.3f}" for m in maes) + f"{np.mean(maes):9.3f}")
    print("seconds per run (synthetic):")
    for name, scores in rows.items():
        print(f"  {name:<12}" + "".join(f"{scores[lab][2]:17.2f}" for lab in labels))
    print(f"HCI antinous (disparity, px; {HCI}):")
    for name, spec in specs.items():
        res = hci_scores(spec)
        if res is None:
            print("  skipped: folder not found")
            break
        print(f"  {name:<12} MSE {res[0]:.4f}  RMSE {res[1]:.4f}  ({res[2]:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
