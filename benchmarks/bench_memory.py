"""Big stacks: peak memory under a budget, time per megapixel, both cores vs one, focus-stack.

    python benchmarks/bench_memory.py [--frames 30] [--memory 3GB] [--sizes 2MP,24MP]
        [--repeat 1] [--skip-jobs]
    FOCUS_STACK=path/to/focus-stack python benchmarks/bench_memory.py ...

Assembles stacks from the ``keyboard`` frames (``../shared/data``; a synthetic stack
otherwise) resized to the ``--sizes`` (any of 0.5MP, 2MP, 12MP, 24MP; default 2 and 24
megapixels) and written as JPEG (quality 95) to a cache folder in the system's temporary
directory, then runs ``dff run`` (the ``dff`` next to this Python) in a child process, as
a user would, measuring wall seconds and the child's peak resident memory as the OS
reports it (``os.wait4``'s ``ru_maxrss``); each figure is the median of ``--repeat`` runs:

1. ``fast`` with ``--memory 3GB`` on each size: wall seconds, peak RSS, and seconds per
   megapixel-frame (linear cost means equal figures; the largest over the smallest size
   is printed); ``classic`` on the smallest size alongside for the ratio;
2. ``fast`` on 12 MP (whole image in memory) with ``--jobs 1`` and ``--jobs 2``.

When ``FOCUS_STACK`` names the focus-stack binary (built from
https://github.com/PetteriAimonen/focus-stack with its README), each run of 1. alternates
pair by pair with ``focus-stack --no-opencl --output=... --depthmap=... FRAME ...`` on the
same JPEG files (after one untimed warm-up pair), and the table adds focus-stack's median
seconds and peak RSS and the ratios dffcore / focus-stack for time and memory (focus-stack
has no memory budget; below 1: dffcore is faster or smaller). Without it (or when it is
not an executable file) it prints why and skips those columns.

Also prints how close banded runs are to whole-image ones on keyboard (640x360) for
``fast``, ``best`` and ``classic``. Figures are ratios to baselines run alongside, never
timed assertions in tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from _anchor import alternate, dff_run, focus_stack, focus_stack_binary, medians

import dffcore
from dffcore.eval.synth import render_stack

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "keyboard"
SIZES = {"0.5MP": (577, 866), "2MP": (1155, 1732), "12MP": (2828, 4243), "24MP": (4000, 6000)}


def source_frames(n: int) -> list[np.ndarray]:
    """``n`` BGR frames to upscale: keyboard's when present, else a synthetic stack."""
    if DATA.is_dir():
        paths = sorted(DATA.iterdir())[:n]
        return [cv2.imread(str(p)) for p in paths if p.suffix.lower() in (".jpg", ".png")]
    s = render_stack("default", n_frames=n, size=(360, 640), seed=1)
    return [f[..., ::-1] for f in s.frames]


def assemble(label: str, n: int) -> Path:
    """The stack ``label`` of ``n`` frames, written once and reused."""
    h, w = SIZES[label]
    folder = Path(tempfile.gettempdir()) / f"dffcore-bench-{label}-{n}"
    if len(list(folder.glob("*.jpg"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(source_frames(n)):
        big = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"frame_{k:03d}.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def banded_agreement() -> None:
    if not DATA.is_dir():
        print("banded vs whole image: skipped (keyboard not found)\n")
        return
    stack = dffcore.read_stack(DATA)
    print("banded vs whole image, keyboard 640x360 (mean |Δindex| in slices, 99th percentile):")
    for name in ("fast", "best", "classic"):
        spec = dffcore.load_spec(dffcore.find_pipeline(name))
        whole = dffcore.run_pipeline(spec, stack).result.index
        for rows in (120, 180):
            banded = dffcore.run_pipeline(spec, stack, band_rows=rows).result.index
            d = np.abs(whole - banded)
            print(
                f"  {name:<8} bands of {rows} rows: {d.mean():.4f}  p99 {np.percentile(d, 99):.3f}"
            )
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--memory", default="3GB")
    ap.add_argument(
        "--sizes", default="2MP,24MP", help=f"stack sizes, smallest first: {', '.join(SIZES)}"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs (pairs with FOCUS_STACK)")
    ap.add_argument("--skip-jobs", action="store_true", help="no --jobs comparison")
    args = ap.parse_args()
    labels = args.sizes.split(",")
    unknown = [label for label in labels if label not in SIZES]
    if unknown:
        ap.error(f"unknown size {unknown[0]} (known: {', '.join(SIZES)})")
    binary, reason = focus_stack_binary()
    print(f"{os.cpu_count()} cores; stacks of {args.frames} JPEG frames in {tempfile.gettempdir()}")
    banded_agreement()
    runs = f"median of {args.repeat} run{'s' if args.repeat > 1 else ''}"
    if binary is None:
        print(reason)
        print(f"fast with --memory {args.memory} (peak RSS by os.wait4; {runs}):")
        print("| stack | megapixels | seconds | s per MP-frame | peak RSS MB |")
        print("|---|---:|---:|---:|---:|")
    else:
        print(
            f"fast with --memory {args.memory} against {binary.name} --no-opencl "
            f"(peak RSS by os.wait4; {runs}, alternated pair by pair after a warm-up pair):"
        )
        print(
            "| stack | megapixels | seconds | s per MP-frame | peak RSS MB "
            "| focus-stack s | focus-stack MB | time ratio | memory ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for label in labels:
        stack = assemble(label, args.frames)
        h, w = SIZES[label]
        ours_cmd = dff_run("fast", stack, "--memory", args.memory)
        if binary is None:
            ours, theirs = medians(ours_cmd, args.repeat), None
        else:
            ours, theirs = alternate(ours_cmd, focus_stack(binary, stack), args.repeat)
        mp = h * w / 1e6
        rows[label] = ours["wall"] / (mp * args.frames)
        line = (
            f"| {label} {w}x{h} | {mp:.1f} | {ours['wall']:.1f} | {rows[label]:.4f} "
            f"| {ours['rss']:.0f} |"
        )
        if theirs is not None:
            line += (
                f" {theirs['wall']:.1f} | {theirs['rss']:.0f} "
                f"| {ours['wall'] / theirs['wall']:.2f} | {ours['rss'] / theirs['rss']:.2f} |"
            )
        print(line)
    first, last = labels[0], labels[-1]
    if first != last:
        print(f"time per MP-frame, {last} / {first}: {rows[last] / rows[first]:.2f} (1 = linear)")
    classic = medians(dff_run("classic", assemble(first, args.frames)), args.repeat)
    print(
        f"classic on {first} alongside: {classic['wall']:.1f} s, peak RSS {classic['rss']:.0f} MB\n"
    )
    if not args.skip_jobs:
        stack = assemble("12MP", args.frames)
        print("fast on 12 MP, whole image in memory:")
        times = {}
        for jobs in (1, 2):
            r = medians(dff_run("fast", stack, "--jobs", str(jobs)), args.repeat)
            times[jobs] = r["wall"]
            print(f"  --jobs {jobs}: {times[jobs]:.1f} s (peak RSS {r['rss']:.0f} MB)")
        print(f"  speed-up with both cores: {times[1] / times[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
