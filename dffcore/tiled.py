"""Bounded-memory runs (``--memory``): frames streamed once, the image processed in bands.

A whole-image run holds every frame, the aligned frames and the focus volume in memory:
about ``N·H·W·(2·C + 12)`` bytes, 10 GB for 30 frames of 24 MP. A banded run never holds
more than one decoded frame and one band of rows of every frame:

1. **align**: the aligner runs on the stack downscaled so that it fits a share of the
   budget (full resolution when it fits); its transforms are scaled to full resolution;
2. **warp**: each frame is decoded once, warped, exposure-corrected and appended to a
   raw file in a temporary folder (with its validity mask), which is always removed;
3. **bands**: rows of the output are processed in bands, each with the overlap its
   stages declare (:meth:`dffcore.components.Component.context`): focus measure,
   aggregator, regularisers and compositor run on the band's rows of every frame, read
   back from the file, and the band's own rows are kept.

For stages whose result at a pixel depends only on pixels within their declared context
(every focus measure, ``argmax``/``gaussian``/``parabolic``/``softargmax`` without
``wls_lambda``, ``weighted-median``, ``guided``, ``select``, ``blend``) the banded result
equals the whole-image one; global stages (``sgm``, ``wls_lambda``, ``graphcut``,
``tv``, ``multiband``) get :data:`GLOBAL_MARGIN` rows of overlap and are close to it
(``benchmarks/bench_memory.py`` and ``tests/test_tiled.py`` measure how close).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .align import crop_box, frame_mask
from .components import Context
from .convert import like, to_float32
from .data import AlignedStack, DepthResult, FocalStack
from .errors import DffError
from .warp import grid, is_map, valid_mask, warp

logger = logging.getLogger(__name__)

#: rows of overlap for a stage without a declared context (global stages)
GLOBAL_MARGIN = 64
#: bytes a process needs before any image: Python, NumPy, OpenCV, SciPy, the plugins
BASE_BYTES = 400e6
#: float32 (N, rows, W) buffers a band's stages hold at once (volume, smoothed curves, ...)
BAND_BUFFERS = 4
#: share of the budget the downscaled stack for alignment may take (it holds two copies)
ALIGN_SHARE = 0.25


@dataclass
class _Extent:
    """Shape and dtype of the aligned frames of a banded run (they live in a file)."""

    shape: tuple[int, int, int, int]
    dtype: np.dtype
    ndim: int = 4


@dataclass
class BandPlan:
    """How a banded run splits its work (recorded in ``run.json``)."""

    budget_bytes: int | None
    align_scale: float
    band_rows: int
    margin: int
    bands: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory_budget_mb": None if self.budget_bytes is None else self.budget_bytes // 10**6,
            "align_scale": round(self.align_scale, 4),
            "band_rows": self.band_rows,
            "overlap_rows": self.margin,
            "bands": self.bands,
        }


def align_scale(n: int, h: int, w: int, c: int, itemsize: int, budget: int | None) -> float:
    """Scale at which the stack and its aligned copy fit :data:`ALIGN_SHARE` of the budget."""
    if budget is None:
        return 1.0
    need = n * h * w * (2 * c * itemsize + 8)  # frames, aligned frames, the aligner's floats
    return min(1.0, math.sqrt(ALIGN_SHARE * budget / need))


def band_rows_for(
    n: int, h: int, w: int, c: int, itemsize: int, budget: int | None, margin: int
) -> int:
    """Rows per band so that one band's frames and buffers fit the budget."""
    if budget is None:
        return h
    outputs = h * w * (4 + 4 + c * itemsize)  # index, confidence, all-in-focus
    frame = h * w * c * (itemsize + 4) * 2  # a decoded frame and its warped/float copies
    per_row = n * w * (c * itemsize + 1 + 4 * BAND_BUFFERS)
    free = budget - BASE_BYTES - outputs - frame
    rows = int(free // per_row) - 2 * margin
    if rows < 8:
        need = (BASE_BYTES + outputs + frame + per_row * (8 + 2 * margin)) / 1e9
        raise DffError(
            f"--memory {budget / 1e9:.2f}GB is too small for {n} frames of {w}x{h}: give at "
            f"least {need:.1f}GB"
        )
    return min(h, rows)


def scale_transform(t: Any, s: float, shape: tuple[int, int]) -> Any:
    """A transform estimated on a grid scaled by ``s`` (pixel centres), at full resolution."""
    if t is None or s == 1.0:
        return t
    if is_map(t):  # resample the displacements (smooth, so the borders need no care)
        h, w = shape
        moved = t - grid(t.shape[:2])
        return grid((h, w)) + cv2.resize(moved, (w, h), interpolation=cv2.INTER_LINEAR) / s
    o = 0.5 * s - 0.5
    to_small = np.array([[s, 0, o], [0, s, o], [0, 0, 1]], np.float64)
    return np.linalg.inv(to_small) @ np.asarray(t, np.float64) @ to_small


def run_banded(
    spec: Any,
    stack: FocalStack,
    *,
    memory: int | None,
    band_rows: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    jobs: int = 1,
    temp_dir: str | os.PathLike | None = None,
) -> Any:
    """Run ``spec`` on ``stack`` (eager or lazy frames) within ``memory`` bytes.

    ``band_rows`` overrides the band height computed from the budget (tests,
    benchmarks). Returns a :class:`dffcore.runner.Run` whose ``volume`` is None (the
    focus volume never exists whole) and whose ``aligned.frames`` only has the shape.
    """
    from .runner import Run, StageRecord, _finish, _PeakMemory, _unmeasured, after_alignment, invoke

    n, (h, w), c = stack.n, stack.shape, int(stack.frames.shape[3])
    itemsize = np.dtype(stack.frames.dtype).itemsize
    records: dict[str, StageRecord] = {}
    memory_meter = _PeakMemory()

    def report(label: str) -> Callable[[int, int], None]:
        return lambda done, total: progress(label, done, total) if progress else None

    def record(stage: Any, seconds: float) -> None:
        rec = records.get(stage.path)
        peak = memory_meter.peak_mb()
        if rec is None:
            records[stage.path] = StageRecord(stage.path, stage.name, seconds, peak)
        else:
            rec.seconds += seconds
            rec.peak_rss_mb = max(rec.peak_rss_mb, peak)

    # 1. alignment on a stack small enough for the budget
    scale = align_scale(n, h, w, c, itemsize, memory)
    memory_meter.reset()
    t0 = time.perf_counter()
    small = _small_stack(stack, scale, report(f"align {spec.align.name} (read)"))
    aligner = spec.align.build()
    ctx = Context(report(f"align {spec.align.name}"), jobs, "align")
    aligned_small = invoke(spec.align, aligner, (small,), ctx)
    ref, diagnostics = aligned_small.reference, aligned_small.diagnostics
    transforms = list(aligned_small.transforms) or [None] * n
    del small, aligned_small
    transforms = [scale_transform(t, scale, (h, w)) for t in transforms]
    for i, t in enumerate(transforms):
        if t is not None and not is_map(t):
            diagnostics[i]["transform"] = np.round(t, 6).tolist()
    p = aligner.params
    y0, y1, x0, x1 = 0, h, 0, w
    if getattr(p, "crop", False):  # the frames' masks one at a time
        y0, y1, x0, x1 = crop_box((frame_mask(t, (h, w)) for t in transforms), (h, w))
    crop = None if (y0, y1, x0, x1) == (0, h, 0, w) else (x0, y0, x1 - x0, y1 - y0)
    hh, ww = y1 - y0, x1 - x0
    with tempfile.TemporaryDirectory(prefix="dffcore-", dir=temp_dir) as tmp:
        frames_path, valid_path = Path(tmp) / "aligned.raw", Path(tmp) / "valid.raw"
        box = (y0, y1, x0, x1)
        tick = report("align (warp)")
        _stream_warp(stack, transforms, diagnostics, p, box, frames_path, valid_path, tick)
        record(spec.align, time.perf_counter() - t0)

        # 2. bands
        stages = after_alignment(spec)
        components = [s.build() for s in stages]
        margin = sum(GLOBAL_MARGIN if (m := comp.context()) is None else m for comp in components)
        rows = band_rows or band_rows_for(n, hh, ww, c, itemsize, memory, margin)
        bands = list(range(0, hh, rows))
        plan = BandPlan(memory, scale, rows, margin, len(bands))
        logger.info("banded run: %s", plan.as_dict())
        index = np.empty((hh, ww), np.float32)
        confidence = np.empty((hh, ww), np.float32)
        aif = np.empty((hh, ww, c), stack.frames.dtype)
        tick = report("bands")
        with open(frames_path, "rb") as ff, _opened(valid_path, "rb") as vf:
            for done, a in enumerate(bands, 1):
                b = min(a + rows, hh)
                ra, rb = max(a - margin, 0), min(b + margin, hh)
                frames = _read_rows(ff, (n, hh, ww, c), stack.frames.dtype, ra, rb)
                valid = None
                if vf is not None:
                    valid = _read_rows(vf, (n, hh, ww, 1), np.uint8, ra, rb)[..., 0] > 0
                    valid = None if valid.all() else valid
                band = AlignedStack(frames, ref, valid)
                res = _run_band(stages, components, band, jobs, record, memory_meter.reset)
                keep = slice(a - ra, a - ra + (b - a))
                out = slice(a, b)
                conf = res.confidence[keep].astype(np.float32)
                if valid is not None:
                    conf[_unmeasured(res.index[keep], valid[:, keep])] = 0
                index[out], confidence[out], aif[out] = (
                    res.index[keep],
                    conf,
                    res.all_in_focus[keep],
                )
                del frames, valid, band, res
                tick(done, len(bands))
    extent = _Extent((n, hh, ww, c), stack.frames.dtype)
    aligned = AlignedStack(extent, ref, None, transforms, diagnostics, None, crop)  # type: ignore[arg-type]
    result = DepthResult(index, confidence, aif, diagnostics={"banded": plan.as_dict()})
    result = _finish(result, stack, aligned)
    return Run(spec, stack, aligned, None, result, list(records.values()))


def run_strips(
    stages: list[Any], components: list[Any], aligned: AlignedStack, jobs: int
) -> tuple[DepthResult, dict[str, float]]:
    """Stages whose :meth:`context` is known, on ``jobs`` strips of rows at once.

    Each strip gets its stages' context as overlap, so the result equals the
    whole-image one; strips run in threads (NumPy and OpenCV release the GIL) with one
    OpenCV thread each. Returns the result and each stage's seconds summed over strips.
    """
    h = aligned.frames.shape[1]
    margin = sum(c.context() for c in components)
    rows = -(-h // jobs)
    bands = [(a, min(a + rows, h)) for a in range(0, h, rows)]
    seconds: dict[str, float] = {s.path: 0.0 for s in stages}
    lock = threading.Lock()

    def record(stage: Any, sec: float) -> None:
        with lock:
            seconds[stage.path] += sec

    def work(band: tuple[int, int]) -> tuple[DepthResult, slice]:
        a, b = band
        ra, rb = max(a - margin, 0), min(b + margin, h)
        valid = None if aligned.valid is None else aligned.valid[:, ra:rb]
        strip = AlignedStack(aligned.frames[:, ra:rb], aligned.reference, valid)
        res = _run_band(stages, components, strip, 1, record)
        return res, slice(a - ra, a - ra + (b - a))

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(len(bands)) as pool:
            parts = list(pool.map(work, bands))
    finally:
        cv2.setNumThreads(threads)
    cat = lambda arrays: np.concatenate(arrays, axis=0)  # noqa: E731
    result = DepthResult(
        cat([r.index[k] for r, k in parts]),
        cat([r.confidence[k] for r, k in parts]),
        cat([r.all_in_focus[k] for r, k in parts]),
    )
    return result, seconds


def _small_stack(stack: FocalStack, scale: float, tick: Callable[[int, int], None]) -> FocalStack:
    """The stack in memory, resized by ``scale`` (decoded one frame at a time)."""
    if scale >= 1.0 and isinstance(stack.frames, np.ndarray):
        return stack
    h, w = stack.shape
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    out = np.empty((stack.n, sh, sw, stack.frames.shape[3]), stack.frames.dtype)
    for k in range(stack.n):
        frame = stack.frames[k]
        small = (
            frame
            if (sh, sw) == (h, w)
            else cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        )
        out[k] = small.reshape(out.shape[1:])
        tick(k + 1, stack.n)
    return FocalStack(out, stack.paths, stack.focus_distances, stack.focus_unit, stack.metadata)


def _stream_warp(
    stack: FocalStack,
    transforms: list[Any],
    diagnostics: list[dict[str, Any]],
    p: Any,
    box: tuple[int, int, int, int],
    frames_path: Path,
    valid_path: Path,
    tick: Callable[[int, int], None],
) -> None:
    """Decode, warp into ``box`` (y0, y1, x0, x1), correct exposure, append to a raw file.

    Frames are warped straight into the box (as :func:`dffcore.align.finish` does), so
    banded and whole-image runs see the same pixels. Validity masks go to
    ``valid_path`` when some transform is not the identity.
    """
    from .align import _shifted

    h, w = stack.shape
    y0, y1, x0, x1 = box
    shape = (y1 - y0, x1 - x0)
    moving = any(t is not None for t in transforms)
    interpolation = getattr(p, "interpolation", "cubic")
    with open(frames_path, "wb") as ff, _opened(valid_path, "wb", moving) as vf:
        for k in range(stack.n):
            frame = warp(
                stack.frames[k], _shifted(transforms[k], x0, y0, shape), shape, interpolation
            )
            exposure = diagnostics[k].get("exposure") if k < len(diagnostics) else None
            if exposure:
                gain, offset = np.float32(exposure["gain"]), np.float32(exposure["offset"])
                frame = like(to_float32(frame) * gain + offset, frame.dtype)
            np.ascontiguousarray(frame).reshape(*shape, -1).tofile(ff)
            if vf is not None:
                valid = np.ones(shape, bool)
                if transforms[k] is not None:
                    valid = valid_mask(transforms[k], (h, w), (h, w))[y0:y1, x0:x1]
                np.ascontiguousarray(valid, np.uint8).tofile(vf)
            tick(k + 1, stack.n)


def _run_band(
    stages: list[Any],
    components: list[Any],
    band: AlignedStack,
    jobs: int,
    record: Callable[[Any, float], None],
    reset_memory: Callable[[], None] = lambda: None,
) -> DepthResult:
    """The stages after alignment on one band, as the whole-image runner runs them."""
    from .runner import invoke, run_stages

    def call(stage: Any, component: Any, *args: Any) -> Any:
        reset_memory()
        t0 = time.perf_counter()
        out = invoke(stage, component, args, Context(jobs=jobs, stage=stage.path))
        record(stage, time.perf_counter() - t0)
        return out

    return run_stages(stages, components, band, call)[0]


def _read_rows(
    f: Any, shape: tuple[int, int, int, int], dtype: Any, ra: int, rb: int
) -> np.ndarray:
    """Rows ``ra:rb`` of every frame of a raw (N,H,W,C) file (read, not mapped)."""
    n, h, w, c = shape
    item = np.dtype(dtype).itemsize
    rows = np.empty((n, rb - ra, w, c), dtype)
    for k in range(n):
        f.seek((k * h + ra) * w * c * item)
        f.readinto(memoryview(rows[k]).cast("B"))
    return rows


def _opened(path: Path, mode: str, wanted: bool = True) -> Any:
    """``open(path, mode)``, or a context giving None when not wanted or (to read) absent."""
    if wanted and ("w" in mode or path.exists()):
        return open(path, mode)
    return contextlib.nullcontext()
