"""Accuracy, seams and speed of the all-in-focus compositors; the figure of the docs.

    python benchmarks/composite_figure.py [--figure docs/images/composite_seams.png]
                                          [--data ../shared/data] [--repeat 5]

Renders synthetic stacks with ground truth (:mod:`dffcore.eval.synth`, 16 frames 240x320)
and prints Markdown tables for ``docs/compositing.md``:

- PSNR of ``select``, ``blend`` and ``multiband`` against the ground-truth all-in-focus
  image, with the ground-truth fractional index as the depth and with the index of the
  pipeline ``{aggregate: argmax}``;
- seam strength: the mean gradient magnitude of the (σ = 2 px smoothed) error image
  along the true depth edges and along the places where the depth label switches
  inside a surface;
- milliseconds per call on 32 frames of 640x360 RGB uint8 (``keyboard`` from the data
  folder when it is there, otherwise a synthetic stack of that size).

"±4 % exposure" rows multiply each frame by a random gain in [0.96, 1.04] (flickering
light, auto exposure): the renderer's frames otherwise differ only by defocus. The
figure is a zoomed crop across depth edges of such a stack: select, multiband, ground
truth and the depth labels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

import dffcore
from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocalStack, FocusVolume
from dffcore.core.registry import default_registry
from dffcore.eval.metrics import depth_edges, psnr, seam_strength
from dffcore.eval.synth import SynthStack, render_stack
from dffcore.io.images import write_image
from dffcore.io.outputs import side_by_side

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("select", "blend", "multiband")
N_FRAMES, SIZE, FLICKER = 16, (240, 320), 0.04
CASES = (  # label, scene, noise σ (8-bit levels), exposure flicker
    ("default", "default", 0.0, 0.0),
    ("planes", "planes", 0.0, 0.0),
    ("steps", "steps", 0.0, 0.0),
    ("default σ2", "default", 2.0, 0.0),
    ("default ±4 % exposure", "default", 0.0, FLICKER),
    ("planes ±4 % exposure", "planes", 0.0, FLICKER),
    ("steps ±4 % exposure", "steps", 0.0, FLICKER),
)
#: the figure's crop (y, x, h, w) of the "steps ±4 % exposure" stack, shown 4x
CROP = (70, 100, 80, 120)


def flicker(frames: np.ndarray, amplitude: float, seed: int = 5) -> np.ndarray:
    """Each frame times a random gain in [1 - amplitude, 1 + amplitude]."""
    if not amplitude:
        return frames
    gain = 1 + amplitude * np.random.default_rng(seed).uniform(-1, 1, len(frames))
    return np.clip(frames * gain[:, None, None, None] + 0.5, 0, 255).astype(np.uint8)


def composite(
    name: str, frames: np.ndarray, index: np.ndarray, volume: FocusVolume | None = None
) -> np.ndarray:
    cls = default_registry().get("composite", name).cls
    aligned = AlignedStack(frames=frames, reference=0)
    volume = volume or FocusVolume(np.zeros(frames.shape[:3], np.float32))
    result = DepthResult(index=index.astype(np.float32), confidence=np.ones(index.shape, "f4"))
    return cls()(result, volume, aligned, Context())


def evaluate(s: SynthStack, frames: np.ndarray) -> tuple[dict, dict, dict, np.ndarray]:
    """PSNR per (index, compositor), seam strengths with the argmax index, its labels."""
    run = dffcore.run_pipeline(
        dffcore.load_spec({"aggregate": "argmax"}), FocalStack(frames), intermediates=True
    )
    argmax = run.result.index
    edges = depth_edges(s.index, 2)
    switches = depth_edges(np.rint(argmax), 2) & ~depth_edges(s.index, 4)
    scores, seams, images = {}, {}, {}
    for name in NAMES:
        for label, index in (("true", s.index), ("argmax", argmax)):
            img = composite(name, frames, index, run.volume)
            scores[label, name] = psnr(img, s.all_in_focus)
            images[label, name] = img
        g = seam_strength(images["argmax", name], s.all_in_focus, smooth=2.0)
        raw = seam_strength(images["true", name], s.all_in_focus, smooth=0)
        seams[name] = (float(g[edges].mean()), float(g[switches].mean()), float(raw[edges].mean()))
    return scores, seams, images, argmax


def figure(path: Path, s: SynthStack, images: dict, argmax: np.ndarray) -> None:
    y, x, h, w = CROP

    def zoom(img: np.ndarray) -> np.ndarray:
        return cv2.resize(
            img[y : y + h, x : x + w], None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST
        )

    grey = (np.clip(argmax / (N_FRAMES - 1), 0, 1) * 255).astype(np.uint8)
    labels = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    panel = side_by_side(
        [
            zoom(images["argmax", "select"]),
            zoom(images["argmax", "multiband"]),
            zoom(s.all_in_focus),
            zoom(labels),
        ],
        ["select", "multiband", "ground truth", "depth labels (argmax)"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, panel)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)\n")


def timing_stack(data: Path) -> tuple[str, FocalStack]:
    folder = data / "keyboard"
    if folder.is_dir():
        stack = dffcore.read_stack(folder)
        if stack.n == 32 and stack.shape == (360, 640):
            return "keyboard", stack
    s = render_stack("default", n_frames=32, size=(360, 640), seed=0)
    return "synthetic default", FocalStack(s.frames)


def bench(data: Path, repeat: int) -> None:
    label, stack = timing_stack(data)
    run = dffcore.run_pipeline(
        dffcore.load_spec({"aggregate": "argmax"}), stack, intermediates=True
    )
    ctx = Context()
    n, h, w, c = stack.frames.shape
    print(f"{label}: {n} frames {w}x{h}x{c} {stack.frames.dtype}, argmax depth, ")
    print(f"{os.cpu_count()} cores, ctx.jobs {ctx.jobs}, cv2 threads {cv2.getNumThreads()}, ")
    print(f"median (min) of {repeat} calls\n")
    print("| compositor | ms |")
    print("|---|---:|")
    variants = [(name, {}) for name in NAMES]
    variants.append(("multiband", {"weights": "both"}))
    variants.append(("multiband", {"spread": 1.0}))
    for name, params in variants:
        comp = default_registry().get("composite", name).cls(params)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            comp(run.result, run.volume, run.aligned, ctx)
            times.append(time.perf_counter() - t0)
        shown = name + "".join(f" {k}={v}" for k, v in params.items())
        print(f"| `{shown}` | {1000 * statistics.median(times):.0f} ({1000 * min(times):.0f}) |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", type=Path, default=ROOT / "docs/images/composite_seams.png")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()

    rows, seam_rows = [], []
    for label, scene, noise, amp in CASES:
        s = render_stack(scene, n_frames=N_FRAMES, size=SIZE, noise_sigma=noise, seed=0)
        frames = flicker(s.frames, amp)
        scores, seams, images, argmax = evaluate(s, frames)
        rows.append((label, scores))
        seam_rows.append((label, seams))
        if scene == "steps" and amp:
            figure(args.figure, s, images, argmax)

    print(
        f"PSNR (dB) against the ground-truth all-in-focus image; {N_FRAMES} frames"
        f" {SIZE[1]}x{SIZE[0]}, seed 0\n"
    )
    print(
        "| stack | "
        + " | ".join(f"true index: {n}" for n in NAMES)
        + " | "
        + " | ".join(f"argmax: {n}" for n in NAMES)
        + " |"
    )
    print("|---|" + "---:|" * 6)
    for label, scores in rows:
        cells = [f"{scores[ix, n]:.2f}" for ix in ("true", "argmax") for n in NAMES]
        best_true = max(scores["true", n] for n in NAMES)
        best_arg = max(scores["argmax", n] for n in NAMES)
        cells = [
            f"**{c}**" if float(c) == round(best, 2) else c
            for c, best in zip(cells, [best_true] * 3 + [best_arg] * 3, strict=True)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print(
        "Seam strength, the mean gradient magnitude of the error image (lower is better):"
        " smoothed (σ 2 px) with the argmax index along true depth edges / along label"
        " switches inside surfaces; raw with the true index along true depth edges\n"
    )
    print("| stack | " + " | ".join(NAMES) + " | raw: " + " | raw: ".join(NAMES) + " |")
    print("|---|" + "---:|" * 6)
    for label, seams in seam_rows:
        cells = [f"{seams[n][0]:.2f} / {seams[n][1]:.2f}" for n in NAMES]
        cells += [f"{seams[n][2]:.1f}" for n in NAMES]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    if not args.skip_timing:
        bench(args.data, args.repeat)


if __name__ == "__main__":
    main()
