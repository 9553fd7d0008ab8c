"""End-to-end seconds of the built-in pipelines on one stack, classic alongside for the ratio.

    python benchmarks/bench_pipelines.py [STACK_DIR] [--repeat 5] [PIPELINE ...]

Each run is what `dff run` does: read the frames, run every stage, write the outputs
(to a temporary folder). Prints the median over ``--repeat`` runs per pipeline, its
stages, and the ratio to the classic pipeline measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dffcore

DEFAULT_STACK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "keyboard"


def timed(spec: dffcore.PipelineSpec, stack_dir: Path) -> tuple[float, dffcore.Run]:
    t0 = time.perf_counter()
    run = dffcore.run_pipeline(spec, dffcore.read_stack(stack_dir))
    with tempfile.TemporaryDirectory() as out:
        dffcore.write_outputs(run, out)
    return time.perf_counter() - t0, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack", nargs="?", default=str(DEFAULT_STACK))
    ap.add_argument("pipelines", nargs="*", default=["fast", "best"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    stack_dir = Path(args.stack)
    if not stack_dir.is_dir():
        print(f"{stack_dir}: no such stack folder (the keyboard stack is in ../shared/data)")
        return 2
    names = ["classic", *[p for p in args.pipelines if p != "classic"]]
    specs = {n: dffcore.load_spec(dffcore.find_pipeline(n)) for n in names}
    for spec in specs.values():  # warm-up: imports, OpenCV's first calls
        timed(spec, stack_dir)
    medians = {}
    for name, spec in specs.items():
        runs = [timed(spec, stack_dir) for _ in range(args.repeat)]
        medians[name] = statistics.median(t for t, _ in runs)
        stages = ", ".join(f"{r.stage} {r.seconds:.3f}" for r in runs[-1][1].records)
        stack = runs[-1][1].stack
        print(
            f"{name:<10} {medians[name]:6.3f} s  ({stack.n} frames "
            f"{stack.shape[1]}x{stack.shape[0]}; {stages})"
        )
    for name in names[1:]:
        print(f"{name}: {medians['classic'] / medians[name]:.1f}x faster than classic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
