"""Per-stage time and memory of a run, as ``run.json`` reports them."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: seconds between two samples of the resident size while a stage runs
SAMPLE_SECONDS = 0.01


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
    """Peak resident memory of this process while a stage runs (Linux ``/proc``).

    The process-wide high-water mark (``VmHWM``) is never reset, so the peak the OS
    reports for the whole process (``wait4``'s ``ru_maxrss``, ``/usr/bin/time -v``) stays
    the true one (resetting it with ``/proc/self/clear_refs`` would make it the peak of the
    last stage only). A stage that raises the high-water mark gets it as its peak (exact);
    a stage below an earlier stage's peak gets the largest resident size a thread sampled
    every :data:`SAMPLE_SECONDS` while it ran. Elsewhere :meth:`peak_mb` is None.
    """

    def __init__(self) -> None:
        self.available = os.path.exists("/proc/self/statm")
        self._page_mb = (os.sysconf("SC_PAGE_SIZE") if self.available else 4096) / 2**20
        self._hwm = 0.0
        self._sampled = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        """Start measuring a stage."""
        if not self.available:
            return
        self._finish()
        self._hwm = self._high_water() or 0.0
        self._sampled = self._resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def peak_mb(self) -> float | None:
        """The peak since :meth:`reset` (stops the sampling)."""
        if not self.available:
            return None
        self._finish()
        hwm = self._high_water()
        sampled = max(self._sampled, self._resident())
        if hwm is not None and hwm > self._hwm:
            return hwm
        return sampled

    def _finish(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sampled = max(self._sampled, self._resident())

    def _resident(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page_mb
        except (OSError, ValueError, IndexError):
            return 0.0

    @staticmethod
    def _high_water() -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
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
        try:
            out = work()
        finally:  # stops the sampling thread, also when the stage fails
            peak = self.meter.peak_mb()
        self.add(path, name, time.perf_counter() - t0, peak)
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
