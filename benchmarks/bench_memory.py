"""Big stacks: peak memory under a budget, time per megapixel, both cores vs one, focus-stack.

    python benchmarks/bench_memory.py [--frames 30] [--memory 3GB] [--sizes 2MP,24MP]
        [--pipelines fast] [--repeat 1] [--skip-jobs]
    FOCUS_STACK=path/to/focus-stack python benchmarks/bench_memory.py ...

Assembles stacks from the ``keyboard`` frames (``../shared/data``; a synthetic stack
otherwise) resized to the ``--sizes`` (any of 0.5MP, 2MP, 12MP, 24MP, 26MP (4160x6240);
default 2 and 24 megapixels) and written as JPEG (quality 95) to a cache folder in the
system's temporary directory, then runs ``dff run`` (the ``dff`` next to this Python) in
a child process, as a user would, measuring wall seconds and the child's peak resident
memory as the OS reports it (``os.wait4``'s ``ru_maxrss``; ``dffcore.run.records`` never
resets the process's high-water mark, so this is the whole run's peak); each figure is the
median of ``--repeat`` runs:

1. each of ``--pipelines`` (default ``fast``; e.g. ``fast,best``) with ``--memory 3GB``
   on each size: wall seconds, peak RSS, and seconds per megapixel-frame (linear cost
   means equal figures; the largest over the smallest size is printed); ``classic`` on
   the smallest size alongside for the ratio;
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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _anchor import dff_run, focus_stack, focus_stack_binary, medians

import dffcore
from dffcore.eval.synth import render_stack

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "keyboard"
SIZES = {
    "0.5MP": (577, 866),
    "2MP": (1155, 1732),
    "12MP": (2828, 4243),
    "24MP": (4000, 6000),
    "26MP": (4160, 6240),
}


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


def sampled(cmd: list) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one ``dff run`` child: the largest of its
    VmRSS sampled every 20 ms and the stages' ``peak_rss_mb`` in its ``run.json``."""
    with tempfile.TemporaryDirectory() as out:
        args = [str(c) for c in cmd(Path(out))]
        t0 = time.perf_counter()
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0.0
        while child.poll() is None:
            try:
                with open(f"/proc/{child.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            peak = max(peak, int(line.split()[1]) / 1024)
            except OSError:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        if child.returncode != 0:
            tail = child.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{' '.join(args[:3])} ... failed ({child.returncode}): {tail}")
        run = json.loads((Path(out) / "run.json").read_text())
        stages = [s.get("peak_rss_mb") or 0.0 for s in run.get("stages", [])]
        return wall, max(peak, *stages)


def sampled_medians(cmd: list, repeat: int) -> dict[str, float]:
    runs = [sampled(cmd) for _ in range(repeat)]
    return {
        "wall": statistics.median(w for w, _ in runs),
        "rss": statistics.median(r for _, r in runs),
    }


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
    ap.add_argument(
        "--pipelines", default="fast", help="pipelines run under the budget, e.g. fast,best"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each")
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
    pipelines = args.pipelines.split(",")
    if binary is None:
        print(reason)
    print(
        f"{', '.join(pipelines)} with --memory {args.memory} (peak RSS: sampled and run.json; "
        f"{runs}){'' if binary is None else ', focus-stack --no-opencl (wait4)'}:"
    )
    head = "| pipeline | stack | megapixels | seconds | s per MP-frame | peak RSS MB |"
    rule = "|---|---|---:|---:|---:|---:|"
    if binary is not None:
        head += " focus-stack s | focus-stack MB | time ratio | memory ratio |"
        rule += "---:|---:|---:|---:|"
    print(head)
    print(rule)
    rows = {}
    theirs_by_size = {}
    for label in labels:
        stack = assemble(label, args.frames)
        h, w = SIZES[label]
        mp = h * w / 1e6
        for pipeline in pipelines:
            ours = sampled_medians(dff_run(pipeline, stack, "--memory", args.memory), args.repeat)
            if binary is not None and label not in theirs_by_size:
                theirs_by_size[label] = medians(focus_stack(binary, stack), args.repeat)
            theirs = theirs_by_size.get(label)
            per = ours["wall"] / (mp * args.frames)
            rows.setdefault(pipeline, {})[label] = per
            line = (
                f"| {pipeline} | {label} {w}x{h} | {mp:.1f} | {ours['wall']:.1f} | {per:.4f} "
                f"| {ours['rss']:.0f} |"
            )
            if theirs is not None:
                line += (
                    f" {theirs['wall']:.1f} | {theirs['rss']:.0f} "
                    f"| {ours['wall'] / theirs['wall']:.2f} | {ours['rss'] / theirs['rss']:.2f} |"
                )
            print(line, flush=True)
    first, last = labels[0], labels[-1]
    if first != last:
        for pipeline, per in rows.items():
            ratio = per[last] / per[first]
            print(f"{pipeline}: time per MP-frame, {last} / {first}: {ratio:.2f} (1 = linear)")
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
