"""Per-stage time and memory of a run, as ``run.json`` reports them."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class StageRecord:
    """One stage of a run: wall seconds and the peak resident memory (MB) of the process
    while it ran, summed and maximised over the stage's calls (one per band in a banded
    run). ``peak_rss_mb`` is None where the OS gives no per-stage high-water mark."""

    stage: str  # YAML path: align, focus, aggregate, regularize[0], ...
    name: str
    seconds: float
    peak_rss_mb: float | None


class PeakMemory:
    """Peak resident memory of this process since the last :meth:`reset`, from the OS.

    On Linux the high-water mark is reset per stage (``/proc/self/clear_refs``), so each
    stage's peak is its own; elsewhere there is no such reset and :meth:`peak_mb` is
    None (not measured per stage).
    """

    def __init__(self) -> None:
        self.resettable = os.path.exists("/proc/self/clear_refs")

    def reset(self) -> None:
        if self.resettable:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.resettable = False

    def peak_mb(self) -> float | None:
        if not self.resettable:
            return None
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None


def process_peak_mb() -> float:
    """Peak resident memory of the whole process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    """Times stage calls and measures their memory; a stage called again (the next
    band) adds its seconds and keeps the larger peak. Stages must not overlap in time:
    the engine runs one stage at a time (its strips in parallel inside it)."""

    def __init__(self) -> None:
        self.meter = PeakMemory()
        self.records: dict[str, StageRecord] = {}

    def measure(self, path: str, name: str, work: Callable[[], T]) -> T:
        """``work()``, recorded as stage ``path`` (component ``name``)."""
        self.meter.reset()
        t0 = time.perf_counter()
        out = work()
        self.add(path, name, time.perf_counter() - t0, self.meter.peak_mb())
        return out

    def add(self, path: str, name: str, seconds: float, peak: float | None) -> None:
        rec = self.records.get(path)
        if rec is None:
            self.records[path] = StageRecord(path, name, seconds, peak)
            return
        rec.seconds += seconds
        if peak is not None:
            rec.peak_rss_mb = peak if rec.peak_rss_mb is None else max(rec.peak_rss_mb, peak)

    def as_list(self) -> list[StageRecord]:
        return list(self.records.values())
