"""Speed of every registered focus measure on one frame, at 12 MP and at 640x360.

    python benchmarks/bench_focus.py [--repeat 3] [--only lape,teng,...]

Prints a Markdown table: milliseconds per frame (median of ``--repeat`` calls of
``measure``, default parameters) on a synthetic RGB uint8 texture of 4000x3000 and of
640x360, and each time relative to ``log`` (the classic pipeline's measure).
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from dffcore_plugins.focus import COMPONENTS

SIZES = {"12 MP": (3000, 4000), "640x360": (360, 640)}


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Multi-scale colour noise, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float32)
    for scale in (1, 4, 16, 64):
        small = rng.standard_normal((-(-h // scale), -(-w // scale), 3)).astype(np.float32)
        acc += cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    acc *= 40 / acc.std()
    return np.clip(acc + 128, 0, 255).astype(np.uint8)


def time_ms(measure, frame: np.ndarray, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        measure(frame)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated measure names")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    classes = [c for c in COMPONENTS if not only or c.name in only or c.name == "log"]
    frames = {label: texture(*size) for label, size in SIZES.items()}
    ms = {
        c.name: {label: time_ms(c().measure, f, args.repeat) for label, f in frames.items()}
        for c in classes
    }
    ref = ms["log"]
    print(f"cv2 threads: {cv2.getNumThreads()}, median of {args.repeat}, RGB uint8 frames\n")
    print("| measure | 12 MP ms | × log | 640x360 ms | × log |")
    print("|---|---:|---:|---:|---:|")
    for name, t in ms.items():
        big, small = t["12 MP"], t["640x360"]
        print(
            f"| {name} | {big:.0f} | {big / ref['12 MP']:.2f} "
            f"| {small:.2f} | {small / ref['640x360']:.2f} |"
        )


if __name__ == "__main__":
    main()
