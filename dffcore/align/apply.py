"""Applying an :class:`~dffcore.core.data.Alignment`: the one place frames are warped.

Every run warps with :func:`warp_frame`: a whole-image run warps all frames in memory
(:func:`apply_alignment`), a bounded-memory run (:mod:`dffcore.run.frames`) warps each
frame as it streams it to disk, with the alignment estimated at reduced resolution and
rescaled (:func:`rescale`). Both warp straight into the crop box (:func:`crop_box`), so
they see the same pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dffcore.align.photometry import correct_exposure, fit_exposure
from dffcore.core.data import AlignedStack, Alignment, FocalStack, Transform
from dffcore.core.errors import DffError
from dffcore.ops.warp import (
    fit_homography,
    is_map,
    scale_transform,
    shift_transform,
    valid_mask,
    warp,
)

logger = logging.getLogger(__name__)

#: a crop must keep this share of the image and this many pixels a side, else it is an error
MIN_CROP_AREA = 0.25
MIN_CROP_SIDE = 8
#: (y0, y1, x0, x1): rows and columns of the reference grid the outputs cover
Box = tuple[int, int, int, int]


def frame_mask(t: Transform, shape: tuple[int, int]) -> np.ndarray | None:
    """Pixels of the reference grid that frame ``t`` covers; None for the identity."""
    return None if t is None else valid_mask(t, shape, shape)


def crop_box(alignment: Alignment) -> Box:
    """The region every frame covers when the alignment asks to crop, else the whole grid.

    The frames' masks are made one at a time and only their intersection is kept.
    """
    h, w = alignment.shape
    if not alignment.crop:
        return 0, h, 0, w
    common = None
    for t in alignment.transforms:
        # a dense map's occluded pixels are holes, not the frame's border: crop to where
        # the frame as a whole lies (its best-fitting homography)
        m = frame_mask(fit_homography(t) if is_map(t) else t, alignment.shape)
        if m is not None:
            common = m if common is None else np.logical_and(common, m, out=common)
    if common is None:
        return 0, h, 0, w
    box = largest_valid_rectangle(common) if common.any() else (0, 0, 0, 0)
    y0, y1, x0, x1 = box
    if (y1 - y0) * (x1 - x0) < MIN_CROP_AREA * h * w or min(y1 - y0, x1 - x0) < MIN_CROP_SIDE:
        raise DffError(
            f"the region every frame covers is only {x1 - x0}x{y1 - y0} px of {w}x{h}: the "
            "frames hardly overlap after alignment; check the alignment (run.json) or set "
            "crop: false"
        )
    return box


def box_to_crop(box: Box, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of a box, or None when it is the whole grid of ``shape``."""
    y0, y1, x0, x1 = box
    return None if box == (0, shape[0], 0, shape[1]) else (x0, y0, x1 - x0, y1 - y0)


def warp_frame(
    alignment: Alignment, k: int, frame: np.ndarray, box: Box, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame ``k`` on the reference grid's ``box``: warped with the alignment's
    interpolation (into ``out`` when given, see :func:`~dffcore.ops.warp.warp`),
    exposure-corrected when its gain is known, and the pixels that have data (None: all
    of them)."""
    y0, y1, x0, x1 = box
    shape = (y1 - y0, x1 - x0)
    t = shift_transform(alignment.transforms[k], x0, y0, shape)
    gain = None if alignment.exposure is None else alignment.exposure[k]
    warped = warp(frame, t, shape, alignment.interpolation, out=out if gain is None else None)
    if gain is not None:
        warped = correct_exposure(warped, *gain)
        if out is not None:
            out[...] = warped.reshape(out.shape)
            warped = out
    valid = None if alignment.transforms[k] is None else valid_mask(t, frame.shape[:2], shape)
    return warped, valid


def apply_alignment(
    stack: FocalStack,
    alignment: Alignment,
    *,
    jobs: int = 1,
    tick: Callable[[], None] | None = None,
) -> AlignedStack:
    """Warp every frame of ``stack`` once (straight into the crop box), build ``valid``,
    then fit and correct exposure when the alignment asks for it and has no gains yet.

    Frames that need no warping are shared with the stack, never modified.
    """
    n, shape = stack.n, stack.shape
    if alignment.n != n or tuple(alignment.shape) != shape:
        raise DffError(
            f"the alignment has {alignment.n} transforms on a {alignment.shape} grid for "
            f"{n} frames of {shape}"
        )
    box = crop_box(alignment)
    crop = box_to_crop(box, shape)
    if not alignment.moves and crop is None:
        frames, valid = stack.frames, None
        for _ in range(n):
            if tick is not None:
                tick()
    else:
        y0, y1, x0, x1 = box
        frames = np.empty((n, y1 - y0, x1 - x0, stack.frames.shape[3]), stack.frames.dtype)
        valid = np.ones(frames.shape[:3], bool)

        def one(i: int) -> None:
            _, mask = warp_frame(alignment, i, stack.frames[i], box, out=frames[i])
            if mask is not None:
                valid[i] = mask

        with ThreadPoolExecutor(max(1, jobs)) as pool:  # OpenCV releases the GIL
            for _ in pool.map(one, range(n)):
                if tick is not None:
                    tick()
        if valid.all():
            valid = None
        if crop is not None:
            logger.info("cropped to x=%d y=%d %dx%d", *crop)
    if alignment.photometric != "none" and alignment.exposure is None:
        exposure = fit_exposure(
            frames, alignment.reference, valid, offset=alignment.photometric == "gain-offset"
        )
        alignment = dataclasses.replace(alignment, exposure=exposure)
        if frames is stack.frames:  # never modify the caller's frames
            frames = frames.copy()
        for i, gain in enumerate(exposure):
            if gain is not None:
                frames[i] = correct_exposure(frames[i], *gain)
    return AlignedStack(frames, alignment.reference, valid, alignment, crop)


def rescale(alignment: Alignment, s: float, shape: tuple[int, int]) -> Alignment:
    """An alignment estimated on frames scaled by ``s``, for frames of ``shape``."""
    if s == 1.0 and tuple(alignment.shape) == tuple(shape):
        return alignment
    transforms = [scale_transform(t, s, shape) for t in alignment.transforms]
    return dataclasses.replace(alignment, transforms=transforms, shape=tuple(shape))


def largest_valid_rectangle(mask: np.ndarray) -> Box:
    """(y0, y1, x0, x1) of an axis-aligned rectangle inside ``mask`` (greedy shrink)."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        raise DffError("no pixel is valid in every frame: cannot crop")
    y0, y1 = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
    x0, x1 = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
    while True:
        sub = mask[y0:y1, x0:x1]
        bad = {
            "top": sub.shape[1] - np.count_nonzero(sub[0]),
            "bottom": sub.shape[1] - np.count_nonzero(sub[-1]),
            "left": sub.shape[0] - np.count_nonzero(sub[:, 0]),
            "right": sub.shape[0] - np.count_nonzero(sub[:, -1]),
        }
        # a bad pixel on the border means the box is not all valid: check the inside only
        # when the border is clean
        if not any(bad.values()) and sub.all():
            return int(y0), int(y1), int(x0), int(x1)
        side = max(
            bad, key=lambda k: bad[k] / (sub.shape[1] if k in ("top", "bottom") else sub.shape[0])
        )
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
