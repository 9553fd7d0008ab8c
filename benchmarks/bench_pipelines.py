"""End-to-end seconds of the built-in pipelines on one stack, classic and focus-stack alongside.

    python benchmarks/bench_pipelines.py [PIPELINE ...] [--stack DIR] [--repeat 5]
    FOCUS_STACK=path/to/focus-stack python benchmarks/bench_pipelines.py --repeat 5

1. In-process: each run is what `dff run` does: read the frames, run every stage, write
   the outputs (to a temporary folder). Each pipeline is measured in its own Python
   process (after one warm-up run), so one pipeline's memory use does not slow the next.
   Prints the median over ``--repeat`` runs, the stages of the last run, and the ratio to
   the classic pipeline measured in the same invocation.
2. Whole processes against focus-stack, when ``FOCUS_STACK`` names its binary (built from
   https://github.com/PetteriAimonen/focus-stack with its README, ``--no-opencl``):
   ``dff run PIPELINE STACK -o TMP -q`` (the ``dff`` next to this Python) and
   ``focus-stack --no-opencl --output=... --depthmap=... FRAME ...`` on the same frames,
   alternated pair by pair (``--repeat`` pairs after a warm-up pair), each child measured
   for wall seconds and peak RSS (``os.wait4``'s ``ru_maxrss``). One row per pipeline:
   the medians of both and the ratios dffcore / focus-stack (below 1: dffcore is faster
   or smaller). Then start-up: ``dff plugins`` against ``python -c "import numpy, cv2"``,
   alternated the same way (issue 15 asks for at most 1.5x). Without ``FOCUS_STACK`` (or
   when it is not an executable file) it prints why and skips part 2's focus-stack rows;
   the start-up comparison runs either way.

Figures are ratios to baselines run alongside, never timed assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _anchor import alternate, dff_run, focus_stack, focus_stack_binary, row, startup

import dffcore

DEFAULT_STACK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "keyboard"


def timed(spec: dffcore.PipelineSpec, stack_dir: Path) -> tuple[float, dffcore.Run]:
    t0 = time.perf_counter()
    run = dffcore.run_pipeline(spec, dffcore.read_stack(stack_dir))
    with tempfile.TemporaryDirectory() as out:
        dffcore.write_outputs(run, out)
    return time.perf_counter() - t0, run


def measure(name: str, stack_dir: Path, repeat: int) -> dict:
    """Warm-up plus ``repeat`` timed runs of one pipeline, in this process."""
    spec = dffcore.load_spec(dffcore.find_pipeline(name))
    timed(spec, stack_dir)
    runs = [timed(spec, stack_dir) for _ in range(repeat)]
    last = runs[-1][1]
    return {
        "median": statistics.median(t for t, _ in runs),
        "stages": [(r.stage, r.seconds) for r in last.records],
        "frames": last.stack.n,
        "size": f"{last.stack.shape[1]}x{last.stack.shape[0]}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="*", default=["fast", "best"])
    ap.add_argument("--stack", default=str(DEFAULT_STACK), help="stack folder (keyboard)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # measure one pipeline, print JSON
    args = ap.parse_args()
    stack_dir = Path(args.stack)
    if not stack_dir.is_dir():
        print(f"{stack_dir}: no such stack folder (the keyboard stack is in ../shared/data)")
        return 2
    if args.one:
        print(json.dumps(measure(args.one, stack_dir, args.repeat)))
        return 0
    names = ["classic", *[p for p in args.pipelines if p != "classic"]]
    results = {}
    for name in names:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--stack",
                str(stack_dir),
                "--repeat",
                str(args.repeat),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = results[name] = json.loads(out.stdout)
        stages = ", ".join(f"{st} {sec:.3f}" for st, sec in r["stages"])
        print(f"{name:<10} {r['median']:6.3f} s  ({r['frames']} frames {r['size']}; {stages})")
    for name in names[1:]:
        ratio = results["classic"]["median"] / results[name]["median"]
        print(f"{name}: {ratio:.1f}x faster than classic")
    print()
    binary, reason = focus_stack_binary()
    if binary is None:
        print(reason)
    else:
        print(
            f"whole processes, medians of {args.repeat} alternated pairs "
            f"(dff run -q | {binary.name} --no-opencl), wall time and peak RSS:"
        )
        anchor = focus_stack(binary, stack_dir)
        for name in names:
            ours, theirs = alternate(dff_run(name, stack_dir), anchor, args.repeat)
            print(row(name, ours, theirs))
    startup(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
