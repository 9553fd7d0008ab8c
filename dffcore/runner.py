"""Run a pipeline spec on a focal stack, stage by stage, with timing and memory."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .components import Context
from .data import AlignedStack, DepthResult, FocalStack, FocusVolume
from .errors import DffError
from .filters import take_frames
from .spec import PipelineSpec, StageSpec

logger = logging.getLogger(__name__)

#: progress(stage label, done, total)
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class StageRecord:
    stage: str  # YAML path: align, focus, aggregate, regularize[0], ...
    name: str
    seconds: float
    peak_rss_mb: float


@dataclass
class Run:
    """Everything a run produced: the result, the intermediate objects and the records.

    A bounded-memory run (:mod:`dffcore.tiled`) has no ``volume`` (it never exists
    whole) and its ``aligned.frames`` only carries the shape.
    """

    spec: PipelineSpec
    stack: FocalStack
    aligned: AlignedStack
    volume: FocusVolume | None
    result: DepthResult
    records: list[StageRecord] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)


class _PeakMemory:
    """Peak resident memory of this process during a stage, as the OS measures it.

    On Linux the high-water mark is reset per stage (``/proc/self/clear_refs``);
    elsewhere the process-wide peak so far is reported.
    """

    def __init__(self) -> None:
        self._resettable = os.path.exists("/proc/self/clear_refs")

    def reset(self) -> None:
        if self._resettable:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self._resettable = False

    def peak_mb(self) -> float:
        if self._resettable:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(
    spec: PipelineSpec,
    stack: FocalStack,
    *,
    progress: ProgressCallback | None = None,
    jobs: int | None = None,
    memory: int | None = None,
    band_rows: int | None = None,
) -> Run:
    """Run every stage of ``spec`` on ``stack`` and return a :class:`Run`.

    ``jobs`` threads (default: every core) for the stages' thread pools and OpenCV.
    With a memory budget (``memory`` bytes, else ``spec.memory``), or a stack read with
    ``lazy=True``, the run is banded (:func:`dffcore.tiled.run_banded`): frames are
    streamed and the image is processed in bands of rows that fit the budget
    (``band_rows`` forces the band height).
    """
    jobs = jobs or os.cpu_count() or 1
    budget = memory if memory is not None else spec.memory
    threads = cv2.getNumThreads()
    cv2.setNumThreads(jobs)  # OpenCV's own threads: no more than the jobs asked for
    try:
        if budget is not None or band_rows is not None or not isinstance(stack.frames, np.ndarray):
            from .tiled import run_banded

            return run_banded(
                spec, stack, memory=budget, band_rows=band_rows, progress=progress, jobs=jobs
            )
        return _run_whole(spec, stack, progress, jobs)
    finally:
        cv2.setNumThreads(threads)


def _run_whole(
    spec: PipelineSpec, stack: FocalStack, progress: ProgressCallback | None, jobs: int
) -> Run:
    memory = _PeakMemory()
    records: list[StageRecord] = []

    def call(stage: StageSpec, component: Any, *args: Any) -> Any:
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(f"{stage.path} {stage.name}", done, total)

        memory.reset()
        t0 = time.perf_counter()
        out = invoke(stage, component, args, Context(progress=report, jobs=jobs, stage=stage.path))
        seconds = time.perf_counter() - t0
        records.append(StageRecord(stage.path, stage.name, seconds, memory.peak_mb()))
        logger.info("%s %s: %.3f s", stage.path, stage.name, seconds)
        return out

    aligned: AlignedStack = call(spec.align, spec.align.build(), stack)
    stages = after_alignment(spec)
    components = [stage.build() for stage in stages]
    if jobs > 1 and all(c.context() is not None for c in components):
        from .tiled import run_strips  # local stages: one strip of rows per core

        t0 = time.perf_counter()
        memory.reset()
        result, seconds = run_strips(stages, components, aligned, jobs)
        peak = memory.peak_mb()
        scale = (time.perf_counter() - t0) / max(sum(seconds.values()), 1e-9)
        for stage in stages:  # wall time of the strips, shared in proportion to stage time
            records.append(StageRecord(stage.path, stage.name, seconds[stage.path] * scale, peak))
        return Run(spec, stack, aligned, None, _finish(result, stack, aligned), records)
    result, volume = run_stages(stages, components, aligned, call)
    return Run(spec, stack, aligned, volume, _finish(result, stack, aligned), records)


def after_alignment(spec: PipelineSpec) -> list[StageSpec]:
    """The stages that work on aligned frames: focus, aggregate, regularisers, composite."""
    tail = [spec.composite] if spec.composite is not None else []
    return [spec.focus, spec.aggregate, *spec.regularize, *tail]


def invoke(stage: StageSpec, component: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``component(*args, ctx)``, its user errors prefixed with the stage's YAML path."""
    try:
        return component(*args, ctx)
    except DffError as exc:
        raise DffError(f"{stage.path} ({stage.name}): {exc}") from None


def run_stages(
    stages: list[StageSpec],
    components: list[Any],
    aligned: AlignedStack,
    call: Callable[..., Any],
) -> tuple[DepthResult, FocusVolume]:
    """Run :func:`after_alignment`'s stages on ``aligned`` through
    ``call(stage, component, *args)`` (which times and records them); the composite
    is selection at the final depth when the spec has none and the aggregator made none.
    Whole-image runs, bands and strips all go through here."""
    volume: FocusVolume = call(stages[0], components[0], aligned)
    _check_volume(volume, aligned, stages[0])
    result: DepthResult = call(stages[1], components[1], volume, aligned)
    for stage, component in zip(stages[2:], components[2:], strict=True):
        out = call(stage, component, result, volume, aligned)
        result = result.replace(all_in_focus=out) if stage.kind == "composite" else out
    if result.all_in_focus is None:
        aif = take_frames(aligned.frames, np.rint(result.index), aligned.valid)
        result = result.replace(all_in_focus=aif)
    return result, volume


def _check_volume(volume: FocusVolume, aligned: AlignedStack, stage: StageSpec) -> None:
    if volume.data.shape != aligned.frames.shape[:3]:
        raise DffError(
            f"{stage.path} ({stage.name}): returned a focus volume of shape "
            f"{volume.data.shape}, expected {aligned.frames.shape[:3]}"
        )


def _finish(result: DepthResult, stack: FocalStack, aligned: AlignedStack) -> DepthResult:
    """Clip the index to the stack, make sure dtypes hold, add metric depth when known.

    A pixel whose depth lies at or next to a frame that has no data there (outside it
    after warping, or occluded) gets confidence 0: its depth was not measured.
    """
    index = np.clip(np.nan_to_num(result.index, nan=0.0), 0, stack.n - 1).astype(np.float32)
    confidence = np.clip(np.nan_to_num(result.confidence, nan=0.0), 0, 1).astype(np.float32)
    if aligned.valid is not None:
        confidence[_unmeasured(index, aligned.valid)] = 0
    depth = result.depth
    if depth is None and stack.focus_distances is not None:
        depth = index_to_depth(index, stack.focus_distances, stack.focus_unit or "m")
    return result.replace(index=index, confidence=confidence, depth=depth)


def _unmeasured(index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels where the frame at, before or after the depth has no data: not measured."""
    n = valid.shape[0]
    near = np.rint(index).astype(np.intp)
    out = np.zeros(index.shape, bool)
    for k in (near - 1, near, near + 1):
        out |= ~np.take_along_axis(valid, np.clip(k, 0, n - 1)[None], axis=0)[0]
    return out


def index_to_depth(index: np.ndarray, distances: np.ndarray, unit: str) -> np.ndarray:
    """Fractional slice index -> depth in metres, interpolating linearly in diopters.

    ``distances`` are the frames' focus distances in ``unit`` (``m`` or ``diopter``);
    0 diopters (focus at infinity) gives an infinite depth.
    """
    diopters = 1.0 / np.asarray(distances, np.float64) if unit == "m" else np.asarray(distances)
    d = np.interp(index, np.arange(len(diopters)), diopters)
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.maximum(d, 1e-300), np.inf).astype(np.float32)
