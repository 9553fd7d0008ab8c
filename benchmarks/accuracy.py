"""Accuracy of pipelines on synthetic stacks with ground truth and on HCI antinous.

    python benchmarks/accuracy.py [PIPELINE ...] [--quick] [--extra]

Pipelines are files or built-in names (default: every built-in pipeline). Synthetic
scenes come from ``dffcore.eval.synth`` (smooth slant, steps with a textureless band,
planes, the default mix; 8 and 24 slices; with and without noise; seed 7); errors are in
slices against the rendered ground truth (MAE), also split into the error near depth
edges (within 5 px of a jump of the true index by more than half a slice,
:func:`dffcore.eval.metrics.edge_split`; "-" for a scene without edges) and inside
regions (the other pixels). ``--extra`` adds scenes the pipelines
were not tuned on (spheres, cones, a smooth random surface, textureless patches; seed 3).
All-in-focus PSNR (dB) against the rendered sharp image is given for each pipeline as
it is and, as the baseline, with its compositor replaced by hard selection (``select``),
on the clean stacks and with ±2 % exposure flicker (``exposure_flicker=0.02``), capped at
60 dB (:data:`PSNR_CAP`).
HCI antinous (``../shared/data``) is scored in disparity (px): MSE against
``gt/disparity.npy``, the slice index mapped to disparity through
``focus_disparity.txt`` (linear between slices), also split near edges / inside (a jump:
more than half the mean slice spacing in disparity). Seconds are the pipeline's run time
(no I/O).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import dffcore
from dffcore.core.data import FocalStack
from dffcore.core.spec import builtin_pipelines
from dffcore.eval.metrics import edge_split, psnr, to_output_grid
from dffcore.eval.synth import render_stack

HCI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "hci_antinous"
#: PSNR is capped (dB): a composite that copies unwarped frames exactly where the depth is
#: right approaches infinity and would dominate a mean over scenes
PSNR_CAP = 60.0

SCENES = [  # (label, scene, frames, noise, seed)
    ("slant-8", "slant", 8, 0.0, 7),
    ("slant-24", "slant", 24, 0.0, 7),
    ("steps-8", "steps", 8, 0.0, 7),
    ("steps-24-noise3", "steps", 24, 3.0, 7),
    ("planes-16-noise3", "planes", 16, 3.0, 7),
    ("default-16", "default", 16, 0.0, 7),
]
EXTRA = [
    ("spheres-12", "spheres", 12, 0.0, 3),
    ("spheres-20-noise2", "spheres", 20, 2.0, 3),
    ("cones-12", "cones", 12, 0.0, 3),
    ("smooth-20-noise2", "smooth", 20, 2.0, 3),
    ("textureless-12", "textureless", 12, 0.0, 3),
    ("textureless-20-noise2", "textureless", 20, 2.0, 3),
]


def synthetic_scores(
    spec: dffcore.PipelineSpec, scenes: list[tuple], flicker: float = 0.0
) -> dict[str, dict[str, float]]:
    """Per scene: ``mae`` (also ``near`` depth edges and ``inside`` regions), ``rmse``,
    ``seconds`` and all-in-focus ``psnr`` (dB)."""
    out = {}
    for label, scene, n, noise, seed in scenes:
        synth = render_stack(
            scene, n_frames=n, size=(240, 320), noise_sigma=noise, seed=seed,
            exposure_flicker=flicker,
        )  # fmt: skip
        t0 = time.perf_counter()
        run = dffcore.run_pipeline(spec, FocalStack(synth.frames))
        sec = time.perf_counter() - t0
        truth = to_output_grid(synth.index, run.crop)
        err = run.result.index - truth
        near, inside = edge_split(truth)
        sharp = to_output_grid(synth.all_in_focus, run.crop)
        out[label] = {
            "mae": float(np.abs(err).mean()),
            "near": float(np.abs(err[near]).mean()) if near.any() else float("nan"),
            "inside": float(np.abs(err[inside]).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
            "seconds": sec,
            "psnr": min(psnr(run.result.all_in_focus, sharp), PSNR_CAP),
        }
    return out


def hci_scores(spec: dffcore.PipelineSpec) -> dict[str, float] | None:
    """Disparity ``mse`` (also ``near`` depth edges and ``inside`` regions), ``rmse`` and
    ``seconds``; None without the data."""
    if not (HCI / "stack").is_dir():
        return None
    stack = dffcore.read_stack(HCI / "stack")
    focus = np.loadtxt(HCI / "focus_disparity.txt")
    truth = np.load(HCI / "gt" / "disparity.npy")
    t0 = time.perf_counter()
    run = dffcore.run_pipeline(spec, stack)
    sec = time.perf_counter() - t0
    disparity = np.interp(run.result.index, np.arange(len(focus)), focus)
    truth = to_output_grid(truth, run.crop)
    sq = (disparity - truth) ** 2
    near, inside = edge_split(truth, step=0.5 * float(np.abs(np.diff(focus)).mean()))
    mse = float(sq.mean())
    return {
        "mse": mse,
        "near": float(sq[near].mean()),
        "inside": float(sq[inside].mean()),
        "rmse": float(np.sqrt(mse)),
        "seconds": sec,
    }


def table(title: str, rows: dict[str, dict[str, dict[str, float]]], key: str, fmt: str) -> None:
    labels = list(next(iter(rows.values())))
    print(f"{title}:")
    print(f"  {'pipeline':<16}" + "".join(f"{lab:>22}" for lab in labels) + f"{'mean':>9}")
    for name, scores in rows.items():
        vals = [scores[lab][key] for lab in labels]
        cells = "".join(f"{v:22{fmt}}" if np.isfinite(v) else f"{'-':>22}" for v in vals)
        print(f"  {name:<16}{cells}{np.nanmean(vals):9{fmt}}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="*", help="pipeline files or built-in names")
    ap.add_argument("--quick", action="store_true", help="first three scenes, no PSNR tables")
    ap.add_argument("--extra", action="store_true", help="also the scenes not tuned on")
    args = ap.parse_args()
    names = args.pipelines or sorted(builtin_pipelines())
    specs = {Path(str(n)).stem: dffcore.load_spec(dffcore.find_pipeline(n)) for n in names}
    scenes = SCENES[:3] if args.quick else SCENES
    rows = {name: synthetic_scores(spec, scenes) for name, spec in specs.items()}
    table("MAE in slices (synthetic, 240x320)", rows, "mae", ".3f")
    table("MAE in slices within 5 px of a depth edge", rows, "near", ".3f")
    table("MAE in slices inside regions (farther from edges)", rows, "inside", ".3f")
    table("seconds per run (synthetic)", rows, "seconds", ".2f")
    if args.extra:
        extra = {name: synthetic_scores(spec, EXTRA) for name, spec in specs.items()}
        table("MAE in slices, scenes not tuned on (synthetic, 240x320)", extra, "mae", ".3f")
    if not args.quick:
        flick, select = {}, {}
        for name, spec in specs.items():
            if spec.composite is None or spec.composite.name == "select":
                continue
            hard = dffcore.load_spec(dffcore.find_pipeline(name), ["composite={name: select}"])
            select[f"{name}+select"] = synthetic_scores(hard, scenes)
            flick[name] = synthetic_scores(spec, scenes, flicker=0.02)
            flick[f"{name}+select"] = synthetic_scores(hard, scenes, flicker=0.02)
        table("all-in-focus PSNR in dB (clean)", {**rows, **select}, "psnr", ".2f")
        if flick:
            table("all-in-focus PSNR in dB (2 % exposure flicker)", flick, "psnr", ".2f")
    print(f"HCI antinous (disparity, px; {HCI}):")
    for name, spec in specs.items():
        res = hci_scores(spec)
        if res is None:
            print("  skipped: folder not found")
            break
        print(
            f"  {name:<12} MSE {res['mse']:.4f} (near edges {res['near']:.4f}, inside "
            f"{res['inside']:.4f})  RMSE {res['rmse']:.4f}  ({res['seconds']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
