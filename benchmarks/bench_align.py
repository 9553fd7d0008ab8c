"""Seconds per frame and peak memory of every aligner, at 640x360 and at 12 MP.

    python benchmarks/bench_align.py [STACK_DIR] [--repeat 3] [--repeat-12mp 1]
                                     [--frames-12mp 4] [--skip-12mp]

640x360: the keyboard stack (32 frames) from ``../shared/data``, or, when it is absent,
the synthetic ``default`` stack (16 frames). 12 MP (4000x3000): a synthetic stack rendered
at 1000x750, upscaled (cubic) and warped by known small homographies (translation,
rotation, scale, a little perspective; the middle frame is not moved), so the error of
each aligner against the truth is printed too. Each aligner runs with reference
``middle``, on all cores (``Context().jobs``); times are the median of the repeats.

Columns: ``s/frame`` align seconds / frames; ``total s``; ``peak MB`` the resident-memory
high-water mark during the call above the memory held before it (Linux: reset through
``/proc/self/clear_refs`` in this benchmark's own process, after ``malloc_trim`` so
that memory freed by earlier runs does not count as held; the largest over the repeats);
``err px`` median distance between the estimated and the true position of a grid of
reference pixels (synthetic stacks only); ``x classic`` the aligner's time over the whole
classic pipeline's on the same 640x360 stack. ``raft`` runs when it is registered and
torch imports; when it cannot run (no local weights) its row says why.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import dffcore
from dffcore.core.components import Context
from dffcore.core.registry import default_registry
from dffcore.eval.synth import render_stack
from dffcore.ops.warp import is_map, warp
from dffcore.run.records import PeakMemory

HERE = Path(__file__).resolve().parent
DEFAULT_STACK = HERE.parent.parent / "shared" / "data" / "keyboard"
SIZE_12MP = (3000, 4000)  # (H, W)

ALIGNERS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "homography": {"name": "homography"},
    "homography refine=ecc": {"name": "homography", "params": {"refine": "ecc"}},
    "ecc": {"name": "ecc"},
    "flow dis": {"name": "flow", "params": {"method": "dis"}},
    "flow farneback": {"name": "flow", "params": {"method": "farneback"}},
    "flow prealign=ecc": {"name": "flow", "params": {"prealign": "ecc"}},
}


def aligners() -> dict[str, dict[str, Any]]:
    out = dict(ALIGNERS)
    if "raft" in default_registry().names("align"):
        try:
            import torch  # noqa: F401

            out["raft"] = {"name": "raft"}
        except ImportError:
            print("raft: skipped, torch is not installed")
    return out


def build(align: dict[str, Any]) -> Any:
    params = dict(align.get("params", {}))
    if align["name"] != "none":
        params.setdefault("reference", "middle")
    return dffcore.load_spec({"align": {"name": align["name"], "params": params}}).align.build()


def release_free_memory() -> None:
    """Give the allocator's free pages back to the OS, so RSS counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def grid_error(transforms: list[Any], truth: list[np.ndarray], shape: tuple[int, int]) -> float:
    """Median |estimated - true| position (px) of every 16th reference pixel, over the
    frames, on points whose true position lies 20 px inside the frame."""
    h, w = shape
    ys, xs = np.mgrid[8:h:16, 8:w:16].astype(np.float32)
    pts = np.dstack([xs, ys])
    errors = []
    for t, true_t in zip(transforms, truth, strict=True):
        true = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), true_t)
        true = true.reshape(pts.shape)
        if is_map(t):
            est = t[8::16, 8::16]
        else:
            m = np.eye(3) if t is None else t
            est = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), m)
            est = est.reshape(pts.shape)
        inside = (true[..., 0] > 20) & (true[..., 0] < w - 21)
        inside &= (true[..., 1] > 20) & (true[..., 1] < h - 21)
        err = np.linalg.norm(est - true, axis=2)[inside]
        errors.append(err[np.isfinite(err)])
    return float(np.median(np.concatenate(errors)))


def bench(
    stack: dffcore.FocalStack, repeat: int, truth: list[np.ndarray] | None
) -> dict[str, dict[str, Any]]:
    memory, rows = PeakMemory(), {}
    for label, align in aligners().items():
        times, peaks = [], []
        try:
            for _ in range(repeat):
                aligned = None
                release_free_memory()
                before = rss_mb()
                memory.reset()
                t0 = time.perf_counter()
                aligned = build(align)(stack, Context())
                times.append(time.perf_counter() - t0)
                peaks.append(memory.peak_mb() - before)
        except dffcore.DffError as exc:
            rows[label] = {"error": str(exc)}
            print(f"  {label}: failed: {exc}", flush=True)
            continue
        total = statistics.median(times)
        rows[label] = {"total": total, "per_frame": total / stack.n, "peak": max(peaks)}
        if truth is not None:
            rows[label]["err"] = grid_error(aligned.transforms, truth, stack.shape)
        print(f"  {label}: {total:.2f} s", flush=True)
        del aligned
    return rows


def print_table(title: str, rows: dict[str, dict[str, Any]], classic: float | None) -> None:
    print(f"\n{title}")
    print(
        f"  {'aligner':<24} {'s/frame':>8} {'total s':>8} {'peak MB':>8} {'err px':>7}"
        f"{' x classic' if classic else ''}"
    )
    for label, r in rows.items():
        if "error" in r:
            print(f"  {label:<24} failed: {r['error']}")
            continue
        err = f"{r['err']:7.2f}" if "err" in r else f"{'-':>7}"
        ratio = f" {r['total'] / classic:9.2f}" if classic else ""
        print(
            f"  {label:<24} {r['per_frame']:8.3f} {r['total']:8.2f} {r['peak']:8.0f} {err}{ratio}"
        )


def classic_seconds(stack: dffcore.FocalStack, repeat: int) -> float:
    spec = dffcore.load_spec(dffcore.find_pipeline("classic"))
    return statistics.median(dffcore.run_pipeline(spec, stack).seconds for _ in range(repeat))


def random_homography(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A small camera shake: ±20 px, ±0.2°, ±0.3 % scale, a little perspective."""
    h, w = shape
    a, s = np.deg2rad(rng.uniform(-0.2, 0.2)), 1 + rng.uniform(-0.003, 0.003)
    c = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    r = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
    g = c @ r @ np.linalg.inv(c)
    g[:2, 2] += rng.uniform(-20, 20, 2)
    g[2, :2] = rng.uniform(-2e-8, 2e-8, 2)
    return g


def synthetic_12mp(n: int, seed: int = 0) -> tuple[dffcore.FocalStack, list[np.ndarray]]:
    """Upscaled synthetic stack, frame i = frame resampled at G_i(x); truth T_i = G_i^-1."""
    h, w = SIZE_12MP
    small = render_stack("default", n_frames=n, size=(h // 4, w // 4))
    rng, ref = np.random.default_rng(seed), (n - 1) // 2
    frames = np.empty((n, h, w, 3), np.uint8)
    truth = []
    for i, f in enumerate(small.frames):
        g = np.eye(3) if i == ref else random_homography(rng, (h, w))
        frames[i] = warp(cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC), g, (h, w))
        truth.append(np.linalg.inv(g))
    return dffcore.FocalStack(frames), truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack", nargs="?", default=str(DEFAULT_STACK), help="640x360 stack folder")
    ap.add_argument("--repeat", type=int, default=3, help="runs at 640x360 (median)")
    ap.add_argument("--repeat-12mp", type=int, default=1, help="runs at 12 MP (median)")
    ap.add_argument("--frames-12mp", type=int, default=4, help="frames of the 12 MP stack")
    ap.add_argument("--skip-12mp", action="store_true", help="only the 640x360 part")
    args = ap.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores (load average {load}), OpenCV {cv2.__version__}")

    if Path(args.stack).is_dir():
        stack, truth = dffcore.read_stack(args.stack), None
        name = Path(args.stack).name
    else:
        print(f"{args.stack}: no such stack folder; using the synthetic 'default' stack")
        synth = render_stack("default", n_frames=16, size=(360, 640))
        stack, name = dffcore.FocalStack(synth.frames), "synthetic default"
        truth = [np.eye(3)] * stack.n
    h, w = stack.shape
    print(f"\n{name}, {stack.n} frames {w}x{h}, median of {args.repeat}:")
    rows = bench(stack, args.repeat, truth)
    classic = classic_seconds(stack, args.repeat)
    print_table(f"{name} ({stack.n} frames {w}x{h}), median of {args.repeat}", rows, classic)
    print(f"  classic pipeline (align + focus + aggregate + regularize): {classic:.2f} s")

    if not args.skip_12mp:
        t0 = time.perf_counter()
        big, truth = synthetic_12mp(args.frames_12mp)
        print(
            f"\nsynthetic 12 MP stack, {big.n} frames 4000x3000, made in "
            f"{time.perf_counter() - t0:.1f} s; median of {args.repeat_12mp}:"
        )
        rows = bench(big, args.repeat_12mp, truth)
        print_table(
            f"synthetic 12 MP ({big.n} frames 4000x3000), median of {args.repeat_12mp}", rows, None
        )
        print(f"  12 MP part: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
