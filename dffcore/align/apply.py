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
    alignment: Alignment, k: int, frame: np.ndarray, box: Box
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame ``k`` on the reference grid's ``box``: warped with the alignment's
    interpolation, exposure-corrected when its gain is known, and the pixels that have
    data (None: all of them)."""
    y0, y1, x0, x1 = box
    shape = (y1 - y0, x1 - x0)
    t = shift_transform(alignment.transforms[k], x0, y0, shape)
    out = warp(frame, t, shape, alignment.interpolation)
    gain = None if alignment.exposure is None else alignment.exposure[k]
    if gain is not None:
        out = correct_exposure(out, *gain)
    valid = None if alignment.transforms[k] is None else valid_mask(t, frame.shape[:2], shape)
    return out, valid


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
            out, mask = warp_frame(alignment, i, stack.frames[i], box)
            frames[i] = out.reshape(frames.shape[1:])
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
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise DffError("no pixel is valid in every frame: cannot crop")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    while True:
        sub = mask[y0:y1, x0:x1]
        if sub.all():
            return int(y0), int(y1), int(x0), int(x1)
        bad = {
            "top": (~sub[0]).sum(),
            "bottom": (~sub[-1]).sum(),
            "left": (~sub[:, 0]).sum(),
            "right": (~sub[:, -1]).sum(),
        }
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
