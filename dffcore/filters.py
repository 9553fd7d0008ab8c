"""Small image operations shared by several components."""

from __future__ import annotations

import math

import cv2
import numpy as np


def gaussian_ksize(sigma: float) -> int:
    """Kernel size 6σ+1 (rounded up to odd), the classic pipeline's convention."""
    k = math.ceil(6 * sigma) + 1
    return k if k % 2 else k + 1


def gaussian(image: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Gaussian blur (kernel 6σ+1) of a float32 image, ignoring pixels where ``valid`` is False.

    With a mask this is normalised convolution: blur(image·valid) / blur(valid), so data
    from outside a warped frame never leaks in; invalid pixels come back as NaN.
    """
    if sigma <= 0:
        return image
    k = gaussian_ksize(sigma)
    if valid is None or valid.all():
        return cv2.GaussianBlur(image, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    v = valid.astype(np.float32)
    num = cv2.GaussianBlur(
        np.where(valid, image, 0).astype(np.float32), (k, k), sigma, borderType=cv2.BORDER_REFLECT
    )
    den = cv2.GaussianBlur(v, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    out = num / np.maximum(den, 1e-6)
    out[~valid] = np.nan
    return out


def take_frames(frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pick each pixel from frame ``labels[y, x]``: (N,H,W,C) x (H,W) int -> (H,W,C)."""
    idx = np.clip(labels, 0, frames.shape[0] - 1).astype(np.intp)
    return np.take_along_axis(frames, idx[None, :, :, None], axis=0)[0]
