"""The notebook front door: frames in memory to a depth map in one call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dffcore.core.data import DepthResult, FocalStack, FocusUnit
from dffcore.core.errors import DffError
from dffcore.core.spec import PipelineSpec, load_spec
from dffcore.ops.convert import frame_dtype
from dffcore.ops.depth import index_to_depth
from dffcore.run.engine import run_pipeline


def estimate(
    frames: Sequence[np.ndarray] | np.ndarray,
    pipeline: str | Path | dict[str, Any] | PipelineSpec = "best",
    *,
    focus_distances: Sequence[float] | np.ndarray | None = None,
    focus_unit: FocusUnit = "m",
    overrides: Sequence[str] = (),
    jobs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> DepthResult:
    """Depth, confidence and all-in-focus image of a focal stack held in memory.

    Parameters
    ----------
    frames : sequence of arrays, or array
        ``N >= 2`` frames of one size in focus order, each ``(H,W)`` grey, ``(H,W,1)``,
        or ``(H,W,3)`` RGB (an ``(H,W,4)`` alpha channel is dropped); or one array
        ``(N,H,W)`` / ``(N,H,W,C)``. uint8, uint16 or float (in [0, 1]); float16 and
        float64 are computed in float32.
    pipeline : str, Path, dict or PipelineSpec
        A built-in pipeline name (``"best"``, ``"fast"``, ``"classic"``), a YAML file or
        a spec dict (``{"focus": {"name": "lapm"}, ...}``).
    focus_distances : sequence of float, optional
        Each frame's focus distance in ``focus_unit`` (``"m"`` or ``"diopter"``); with
        them the result's ``depth`` holds metres.
    overrides : sequence of str
        ``KEY=VALUE`` assignments, as ``dff run --set`` takes them.
    jobs : int, optional
        Worker threads (default: every core).
    progress : callable, optional
        ``progress(stage_label, done, total)``.

    Returns
    -------
    DepthResult
        ``index`` (fractional frame index, 0 = first frame), ``confidence`` in [0, 1],
        ``all_in_focus`` and, with focus distances, ``depth`` in metres; always of the
        frames' size, in the reference frame's pixel grid. Where an aligner cropped to the
        region every frame covers, the pixels outside it get confidence 0, the index of
        the nearest pixel inside and the reference frame's colour.
    """
    stack = FocalStack(as_frames(frames))
    if focus_distances is not None:
        stack.focus_distances = np.asarray(focus_distances, np.float64).reshape(-1)
        stack.focus_unit = focus_unit
        if stack.focus_distances.size != stack.n:
            raise DffError(
                f"focus_distances: {stack.focus_distances.size} values for {stack.n} frames"
            )
    spec = pipeline if isinstance(pipeline, PipelineSpec) else load_spec(pipeline, overrides)
    run = run_pipeline(spec, stack, jobs=jobs, progress=progress)
    result = run.result
    if run.crop is not None:
        result = uncrop(result, run.crop, stack.frames[run.reference])
        if result.depth is not None:
            depth = index_to_depth(result.index, stack.focus_distances, focus_unit)
            result = result.replace(depth=depth)
    return result


def as_frames(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``(N,H,W,C)`` frames (C = 1 or 3) in a dtype the pipeline computes in."""
    items = list(frames) if not isinstance(frames, np.ndarray) else None
    if items is not None:
        if len(items) < 2:
            raise DffError(f"frames: a focal stack needs at least 2 frames, got {len(items)}")
        shapes = {np.shape(f) for f in items}
        if len(shapes) > 1:
            raise DffError(f"frames: all frames must have one shape, got {sorted(shapes)}")
        arrays = [np.asarray(f) for f in items]
        dtypes = {a.dtype for a in arrays}
        if len(dtypes) > 1:
            raise DffError(
                f"frames: all frames must have one dtype, got {sorted(map(str, dtypes))}"
            )
        stack = np.stack(arrays)
    else:
        stack = frames
    if stack.ndim == 3:
        stack = stack[..., None]
    if stack.ndim != 4 or stack.shape[0] < 2:
        raise DffError(
            f"frames: expected N >= 2 frames of (H,W) or (H,W,C), got an array of shape "
            f"{stack.shape}"
        )
    if stack.shape[3] == 4:
        stack = stack[..., :3]
    if stack.shape[3] not in (1, 3):
        raise DffError(f"frames: expected 1 or 3 channels (grey or RGB), got {stack.shape[3]}")
    try:
        dtype = frame_dtype(stack.dtype)
    except ValueError as exc:
        raise DffError(f"frames: {exc}") from None
    return np.ascontiguousarray(stack, dtype)


def uncrop(
    result: DepthResult, crop: tuple[int, int, int, int], reference: np.ndarray
) -> DepthResult:
    """A result computed on the ``crop`` (x, y, w, h) of the reference grid, placed in the
    whole grid: outside it the nearest index, confidence 0 and the reference's colour."""
    x, y, w, h = crop
    full_h, full_w = reference.shape[:2]
    border = (y, full_h - y - h, x, full_w - x - w)
    index = cv2.copyMakeBorder(result.index, *border, cv2.BORDER_REPLICATE)
    confidence = np.zeros((full_h, full_w), np.float32)
    confidence[y : y + h, x : x + w] = result.confidence
    aif = reference.copy()
    aif[y : y + h, x : x + w] = result.all_in_focus.reshape(h, w, -1)
    diagnostics = {**result.diagnostics, "crop": {"x": x, "y": y, "w": w, "h": h}}
    return result.replace(
        index=index, confidence=confidence, all_in_focus=aif, diagnostics=diagnostics
    )
