"""How a run splits its work over the image: the three strategies of the run engine.

=========== ==================================================================
``whole``   the image at once, frames in memory; the only mode that can hand
            back the aligned frames and the focus volume (``intermediates``)
``strips``  frames in memory, one strip of rows per core, each with the
            overlap its stages declare (:meth:`~dffcore.core.components.
            Component.context`); every stage runs on all strips at once, then
            the next stage. Chosen when every stage is local and ``jobs > 1``;
            the result equals the whole-image one.
``bands``   a memory budget (``--memory``) or a stack read frame by frame:
            frames are streamed once to a temporary file
            (:mod:`dffcore.run.frames`) and bands of rows sized to the budget
            are processed one after the other, each by every stage.
=========== ==================================================================

For stages whose result at a pixel depends only on pixels within their declared context
(every focus measure, ``argmax``/``gaussian``/``parabolic``/``softargmax`` without
``wls_lambda``, ``weighted-median``, ``guided``, ``select``, ``blend``) a band's result
equals the whole-image one; global stages (``sgm``, ``wls_lambda``, ``graphcut``,
``tv``, ``multiband``) get :data:`GLOBAL_MARGIN` rows of overlap and are close to it
(``benchmarks/bench_memory.py`` and ``tests/test_run_modes.py`` measure how close).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dffcore.core.components import Component
from dffcore.core.errors import DffError
from dffcore.core.spec import MIN_MEMORY, format_memory

#: rows of overlap for a stage without a declared context (global stages)
GLOBAL_MARGIN = 64
#: bytes a process needs before any image: Python, NumPy, OpenCV, SciPy, the plugins
#: (also the smallest budget ``--memory`` accepts)
BASE_BYTES = float(MIN_MEMORY)
#: float32 (N, rows, W) buffers a band's stages hold at once (volume, smoothed curves,
#: pyramids, ...) and bytes per pixel of a band's own (rows, W) buffers (depth, the
#: all-in-focus pyramids): ``best`` (``wls_lambda`` aggregation, ``multiband``
#: composite) on 26 MP bands measured 169, 271 and 543 bytes per pixel of a band with
#: 4, 8 and 30 frames, under the 224, 288 and 640 these give
BAND_BUFFERS = 3
BAND_ROW_BYTES = 160
#: share of the budget the downscaled stack for alignment may take (it holds two copies)
ALIGN_SHARE = 0.25

Mode = Literal["whole", "strips", "bands"]


@dataclass(frozen=True)
class RunPlan:
    """The strategy of a run and its numbers (recorded in ``run.json`` as ``plan``)."""

    mode: Mode
    #: output rows per region (the last one may be shorter)
    rows: int
    #: rows of overlap above and below each region
    margin: int
    budget_bytes: int | None = None
    #: scale of the frames the aligner saw (bands: downscaled to fit the budget)
    align_scale: float = 1.0

    @property
    def parallel(self) -> bool:
        """Strips run side by side, stage by stage; bands one after the other."""
        return self.mode == "strips"

    def regions(self, height: int) -> list[tuple[int, int]]:
        """``(a, b)``: the output rows of each region, top to bottom."""
        return [(a, min(a + self.rows, height)) for a in range(0, height, self.rows)]

    def as_dict(self, height: int) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "memory_budget_mb": None if self.budget_bytes is None else self.budget_bytes // 10**6,
            "align_scale": round(self.align_scale, 4),
            "region_rows": self.rows,
            "overlap_rows": self.margin,
            "regions": len(self.regions(height)),
        }


def local_margin(components: list[Component]) -> int | None:
    """Overlap that makes a region's result exact, or None if a stage is global."""
    total = 0
    for component in components:
        m = component.context()
        if m is None:
            return None
        total += m
    return total


def band_margin(components: list[Component]) -> int:
    """Overlap of bands: each stage's context, :data:`GLOBAL_MARGIN` for a global one."""
    return sum(GLOBAL_MARGIN if (m := c.context()) is None else m for c in components)


def in_memory_plan(components: list[Component], height: int, jobs: int, whole: bool) -> RunPlan:
    """``strips`` when every stage is local and there are several cores, else ``whole``."""
    margin = local_margin(components)
    if whole or jobs <= 1 or margin is None:
        return RunPlan("whole", height, 0)
    return RunPlan("strips", -(-height // jobs), margin)


def align_scale(shape: tuple[int, ...], dtype: np.dtype, budget: int | None) -> float:
    """Scale at which a stack of ``shape`` (N, H, W, C) and its aligned copy fit
    :data:`ALIGN_SHARE` of the budget."""
    if budget is None:
        return 1.0
    n, h, w, c = shape
    # frames, aligned frames, the aligner's floats
    need = n * h * w * (2 * c * np.dtype(dtype).itemsize + 8)
    return min(1.0, math.sqrt(ALIGN_SHARE * budget / need))


def band_plan(
    shape: tuple[int, int, int, int],
    dtype: np.dtype,
    components: list[Component],
    budget: int | None,
    rows: int | None,
    scale: float,
) -> RunPlan:
    """Bands over aligned frames of ``shape`` (N, H, W, C): ``rows`` high, else as many
    rows as fit the budget, with each stage's overlap (:func:`band_margin`)."""
    n, h, w, c = shape
    margin = band_margin(components)
    rows = rows or band_rows_for(n, h, w, c, np.dtype(dtype).itemsize, budget, margin)
    return RunPlan("bands", rows, margin, budget, scale)


def band_rows_for(
    n: int, h: int, w: int, c: int, itemsize: int, budget: int | None, margin: int
) -> int:
    """Rows per band so that one band's frames and buffers fit the budget.

    Two phases never overlap: the warp (:mod:`dffcore.run.frames`: a decoded frame, the
    next one decoded meanwhile, its warped copy and validity mask; no float copy) before
    any output exists, and the bands (the outputs, plus one band of rows and its overlap
    for every frame: the previous band is released before the next is read). The
    smallest budget is therefore ``BASE_BYTES`` + 11 bytes a pixel for the outputs + one
    band of 8 rows and its overlap of every frame: it grows with the width times the
    frames, and with the height only through the outputs."""
    if budget is None:
        return h
    outputs = h * w * (4 + 4 + c * itemsize)  # index, confidence, all-in-focus
    warp = h * w * (3 * c * itemsize + 1)  # two decoded frames, a warped one, its mask
    per_row = n * w * (c * itemsize + 1 + 4 * BAND_BUFFERS) + w * BAND_ROW_BYTES
    free = budget - BASE_BYTES - outputs
    rows = int(free // per_row) - 2 * margin
    if rows < 8 or budget < BASE_BYTES + warp:
        need = BASE_BYTES + max(warp, outputs + per_row * (8 + 2 * margin))
        raise DffError(
            f"--memory {format_memory(budget, up=False)} is too small for {n} frames of "
            f"{w}x{h}: give at least {format_memory(need)}"
        )
    return min(h, rows)
