"""Big stacks: peak memory under a budget, time per megapixel, both cores vs one.

    python benchmarks/bench_memory.py [--frames 30] [--memory 3GB] [--skip-jobs]

Assembles stacks from the ``keyboard`` frames (``../shared/data``; a synthetic stack
otherwise) resized to 2, 12 and 24 megapixels and written as JPEG (quality 95) to a
cache folder in the system's temporary directory, then runs ``dff run`` in a child
process, as a user would:

1. ``fast`` with ``--memory 3GB`` on 24 MP and on 2 MP: wall seconds, peak resident
   memory as the OS measures it (``/usr/bin/time -v``, "Maximum resident set size"),
   and seconds per megapixel-frame (linear cost means equal figures); ``classic`` on the
   2 MP stack alongside for the ratio;
2. ``fast`` on 12 MP (whole image in memory) with ``--jobs 1`` and ``--jobs 2``.

Also prints how close banded runs are to whole-image ones on keyboard (640x360) for
``fast``, ``best`` and ``classic``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import dffcore
from dffcore.eval.synth import render_stack

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "keyboard"
SIZES = {"2MP": (1155, 1732), "12MP": (2828, 4243), "24MP": (4000, 6000)}


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


def dff_run(pipeline: str, stack: Path, *extra: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``dff run`` in a child process."""
    exe = Path(sys.executable).parent / "dff"
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-v", str(exe), "run", pipeline, str(stack), "-o", out, "-q"]
        t0 = time.perf_counter()
        res = subprocess.run([*cmd, *extra], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"dff run failed: {res.stderr.strip().splitlines()[-3:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    return wall, int(rss.group(1)) / 1024 if rss else float("nan")


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
    ap.add_argument("--skip-jobs", action="store_true", help="no --jobs comparison")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; stacks of {args.frames} JPEG frames in {tempfile.gettempdir()}")
    banded_agreement()
    print(f"fast with --memory {args.memory} (peak RSS by /usr/bin/time -v):")
    print("| stack | megapixels | seconds | s per MP-frame | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    for label in ("2MP", "24MP"):
        stack = assemble(label, args.frames)
        h, w = SIZES[label]
        wall, rss = dff_run("fast", stack, "--memory", args.memory)
        mp = h * w / 1e6
        rows[label] = wall / (mp * args.frames)
        print(f"| {label} {w}x{h} | {mp:.1f} | {wall:.1f} | {rows[label]:.4f} | {rss:.0f} |")
    print(f"time per MP-frame, 24 MP / 2 MP: {rows['24MP'] / rows['2MP']:.2f} (1 = linear)")
    wall, rss = dff_run("classic", assemble("2MP", args.frames))
    print(f"classic on 2 MP alongside: {wall:.1f} s, peak RSS {rss:.0f} MB\n")
    if not args.skip_jobs:
        stack = assemble("12MP", args.frames)
        print("fast on 12 MP, whole image in memory:")
        times = {}
        for jobs in (1, 2):
            times[jobs], rss = dff_run("fast", stack, "--jobs", str(jobs))
            print(f"  --jobs {jobs}: {times[jobs]:.1f} s (peak RSS {rss:.0f} MB)")
        print(f"  speed-up with both cores: {times[1] / times[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
