"""Exposure drift during a sweep: a gain (and offset) per frame, fitted to the reference.

Local means (Gaussian σ = 8 px) are what defocus preserves, so the fit sees exposure
and not blur.
"""

from __future__ import annotations

import cv2
import numpy as np

from dffcore.ops.convert import like, to_float32, to_grey

#: σ (px) of the local means the fit compares
LOCAL_MEAN_SIGMA = 8.0


def fit_exposure(
    frames: np.ndarray, ref: int, valid: np.ndarray | None, *, offset: bool
) -> list[tuple[float, float] | None]:
    """``(gain, offset)`` per frame so that its local means match the reference's (None
    for the reference); ``offset`` False fits a gain only (offset 0)."""

    def local_mean(i: int) -> np.ndarray:
        return cv2.GaussianBlur(to_grey(frames[i]), (0, 0), LOCAL_MEAN_SIGMA)

    target = local_mean(ref)
    out: list[tuple[float, float] | None] = []
    for i in range(frames.shape[0]):
        if i == ref:
            out.append(None)
            continue
        src = local_mean(i)
        m = np.ones(src.shape, bool) if valid is None else valid[i] & valid[ref]
        x, y = src[m].astype(np.float64), target[m].astype(np.float64)
        if offset:
            gain, off = np.polyfit(x, y, 1)
        else:
            gain, off = float(x @ y / max(x @ x, 1e-12)), 0.0
        out.append((float(gain), float(off)))
    return out


def correct_exposure(frame: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """``frame × gain + offset`` (on [0, 1] values), back in the frame's dtype."""
    return like(to_float32(frame) * np.float32(gain) + np.float32(offset), frame.dtype)
