"""Speed of the classic pipeline against the original course project, same machine, same run.

    python benchmarks/bench_classic.py [STACK_DIR] [--repeat 3] [--no-original] [--converged]

Prints, for dffcore's ``pipelines/classic.yaml`` (read + run + write, median of
``--repeat`` runs) and the original's re-creation (``original_classic.py``): seconds per
step, total, the ratio, the graph-cut energy, and how far each depth map's 6-px border
strips differ from the strips 16 px inside (the original's "frame of wrong depth").
With ``--converged`` it also solves dffcore's graph cut to convergence and reports how
close the default (one expansion cycle) comes to that energy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dffcore
from dffcore.core.components import Context

HERE = Path(__file__).resolve().parent
DEFAULT_STACK = HERE.parent.parent / "shared" / "data" / "keyboard"


def border_error(index: np.ndarray, b: int = 6, k: int = 16) -> float:
    """Worst mean |difference| between a border strip and the strip k px further in."""
    d = index
    return float(
        max(
            np.abs(d[:b] - d[k : k + b]).mean(),
            np.abs(d[-b:] - d[-k - b : -k]).mean(),
            np.abs(d[:, :b] - d[:, k : k + b]).mean(),
            np.abs(d[:, -b:] - d[:, -k - b : -k]).mean(),
        )
    )


def run_dffcore(stack_dir: Path, repeat: int) -> tuple[dict[str, float], dffcore.Run]:
    spec = dffcore.load_spec(dffcore.find_pipeline("classic"))
    totals, runs = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            stack = dffcore.read_stack(stack_dir)
            t1 = time.perf_counter()
            run = dffcore.run_pipeline(spec, stack, intermediates=True)  # the volume, below
            t2 = time.perf_counter()
            dffcore.write_outputs(run, out)
            t3 = time.perf_counter()
        steps = {"read": t1 - t0, **{r.stage: r.seconds for r in run.records}, "write": t3 - t2}
        totals.append((t3 - t0, steps))
        runs.append(run)
    totals.sort(key=lambda x: x[0])
    median_total, steps = totals[len(totals) // 2]
    return {**steps, "total": median_total}, runs[-1]


def converged_energy(run: dffcore.Run) -> tuple[int, float]:
    from dffcore_plugins.regularize.graphcut import (
        build_unary,
        grid_energy,
        solve_tiled,
    )

    p = run.spec.regularize[0].params
    unary = build_unary(run.volume, p.sigma, p.unary_scale)
    n = unary.shape[2]
    pair = (p.pair_scale * np.abs(np.subtract.outer(np.arange(n), np.arange(n)))).astype(np.int32)
    t0 = time.perf_counter()
    labels = solve_tiled(unary, pair, p.model_copy(update={"cycles": -1, "tile": 0}), Context())
    return grid_energy(unary, labels, p.pair_scale), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack", nargs="?", default=str(DEFAULT_STACK))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-original", action="store_true", help="skip the original (≈ 30-60 s)")
    ap.add_argument("--converged", action="store_true", help="also solve gco to convergence")
    args = ap.parse_args()
    stack_dir = Path(args.stack)
    if not stack_dir.is_dir():
        print(f"{stack_dir}: no such stack folder (the keyboard stack is in ../shared/data)")
        return 2

    ours, run = run_dffcore(stack_dir, args.repeat)
    energy = run.result.diagnostics["graphcut"]["energy"]
    print(
        f"dffcore classic on {stack_dir.name} ({run.stack.n} frames "
        f"{run.stack.shape[1]}x{run.stack.shape[0]}), median of {args.repeat}:"
    )
    for step, sec in ours.items():
        print(f"  {step:<16} {sec:7.3f} s")
    print(
        f"  graph-cut energy {energy}, border-strip error {border_error(run.result.index):.2f}"
        " slices"
    )
    if args.converged:
        e_conv, sec = converged_energy(run)
        print(
            f"  gco to convergence (whole image): energy {e_conv} in {sec:.1f} s; "
            f"default is {100 * (energy - e_conv) / e_conv:+.3f} % above it"
        )
    if not args.no_original:
        sys.path.insert(0, str(HERE))
        from original_classic import run_original

        t0 = time.perf_counter()
        orig = run_original(str(stack_dir))
        total = time.perf_counter() - t0
        print("original course project (re-created, benchmarks/original_classic.py):")
        for step, sec in orig["seconds"].items():
            print(f"  {step:<16} {sec:7.3f} s")
        print(f"  {'total':<16} {total:7.3f} s")
        print(
            f"  graph-cut energy {orig['energy']}, border-strip error "
            f"{border_error(orig['index']):.2f} slices"
        )
        print(f"speed-up of dffcore classic over the original: {total / ours['total']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
