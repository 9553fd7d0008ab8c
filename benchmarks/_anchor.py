"""Whole-process runs of ``dff`` and of the focus-stack anchor, for the benchmarks.

focus-stack (https://github.com/PetteriAimonen/focus-stack) is the outside baseline: build
it with its README (never vendor its code) and point ``FOCUS_STACK`` at the binary. Every
child is measured the same way: forked from a small launcher process, wall seconds from
fork to ``os.wait4`` and the child's peak resident set size, ``wait4``'s ``ru_maxrss``
(kilobytes on Linux).
Runs of the two sides alternate pair by pair, the order flipped every other pair, after
one untimed warm-up run of each, and the figures are medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from dffcore.io.stack import list_frames

SKIP_HINT = (
    "build PetteriAimonen/focus-stack with its README and set FOCUS_STACK=path/to/focus-stack"
)

DFF = Path(sys.executable).parent / "dff"


def focus_stack_binary() -> tuple[Path | None, str]:
    """The focus-stack binary from ``FOCUS_STACK``, or None and the reason to skip."""
    value = os.environ.get("FOCUS_STACK", "")
    if not value:
        return None, f"FOCUS_STACK not set: skipping the focus-stack comparison ({SKIP_HINT})"
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        return None, (
            f"FOCUS_STACK={value} is not an executable file: skipping the focus-stack "
            f"comparison ({SKIP_HINT})"
        )
    return path, ""


# Runs one command from a fresh, small process and prints its wall seconds, peak RSS (KB)
# and exit code. Linux carries a process's peak RSS across fork and exec (the forked copy of
# the parent's memory counts), so ``wait4`` on a child of this benchmark would report at least
# the benchmark's own peak; forked from this launcher instead, the floor is the launcher's few
# megabytes.
LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_child(cmd: Sequence[str | os.PathLike]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process; its output is discarded."""
    args = [str(c) for c in cmd]
    with tempfile.TemporaryFile() as err:
        res = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=True,
        )
        wall, rss_kb, code = res.stdout.split()
        if int(code) != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{' '.join(args[:3])} ... failed ({code}): {tail}")
    return float(wall), int(rss_kb) / 1024


Command = Callable[[Path], list]
"""Builds a command line given a fresh, empty output folder."""


def dff_run(pipeline: str, stack: Path, *extra: str) -> Command:
    return lambda out: [DFF, "run", pipeline, stack, "-o", out, "-q", *extra]


def focus_stack(binary: Path, stack: Path) -> Command:
    frames = list_frames(stack)  # dffcore's reading order, so both sides see the same stack
    return lambda out: [
        binary,
        "--no-opencl",
        f"--output={out / 'out.jpg'}",
        f"--depthmap={out / 'depth.png'}",
        *frames,
    ]


def alternate(a: Command, b: Command, pairs: int) -> tuple[dict, dict]:
    """Medians of ``pairs`` alternated runs of ``a`` and ``b``: {"wall": s, "rss": MB}."""
    times: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    cmds = (a, b)
    for i in range(-1, pairs):  # -1: the untimed warm-up pair
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            with tempfile.TemporaryDirectory() as out:
                figures = run_child(cmds[side](Path(out)))
            if i >= 0:
                times[side].append(figures)
    a_med, b_med = (
        {
            "wall": statistics.median(w for w, _ in times[s]),
            "rss": statistics.median(r for _, r in times[s]),
        }
        for s in (0, 1)
    )
    return a_med, b_med


def row(label: str, ours: dict, theirs: dict) -> str:
    """``best  1.02 s  243 MB | focus-stack 1.95 s 197 MB | ratio 0.52 time, 1.23 memory``."""
    return (
        f"{label:<10} {ours['wall']:6.2f} s {ours['rss']:6.0f} MB | "
        f"focus-stack {theirs['wall']:6.2f} s {theirs['rss']:6.0f} MB | "
        f"ratio {ours['wall'] / theirs['wall']:.2f} time, {ours['rss'] / theirs['rss']:.2f} memory"
    )


def startup(pairs: int) -> None:
    """``dff plugins`` against ``python -c "import numpy, cv2"`` (issue 15: at most 1.5x).

    One untimed ``dff plugins`` first writes the component index cache
    (``dffcore.core.plugin_cache``), so the timed runs are warm: what a user sees from
    the second command on. A cold run (no cache) loads every plugin, as ``dff run`` does.
    """
    imports = [sys.executable, "-c", "import numpy, cv2"]
    run_child([DFF, "plugins"])  # writes the index cache: the timed runs read it
    ours, base = alternate(lambda _: [DFF, "plugins"], lambda _: imports, pairs)
    print(
        f"start-up (index cache warm), medians of {pairs} alternated pairs: "
        f"dff plugins {ours['wall']:.3f} s "
        f"{ours['rss']:.0f} MB | python -c 'import numpy, cv2' {base['wall']:.3f} s "
        f"{base['rss']:.0f} MB | ratio {ours['wall'] / base['wall']:.2f} time (target <= 1.5), "
        f"{ours['rss'] / base['rss']:.2f} memory"
    )


def medians(cmd: Command, runs: int) -> dict:
    """Medians of ``runs`` runs of one command alone: {"wall": s, "rss": MB}."""
    figures = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            figures.append(run_child(cmd(Path(out))))
    return {
        "wall": statistics.median(w for w, _ in figures),
        "rss": statistics.median(r for _, r in figures),
    }
