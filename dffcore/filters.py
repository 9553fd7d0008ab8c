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


def nearest_valid(labels: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``labels`` (H,W) moved to the nearest frame that has data at each pixel."""
    n = valid.shape[0] if valid is not None else None
    if valid is None:
        return labels
    out = np.clip(labels, 0, n - 1).astype(np.intp)
    bad = ~np.take_along_axis(valid, out[None], axis=0)[0]
    for step in range(1, n):
        if not bad.any():
            break
        for k in (out - step, out + step):
            k = np.clip(k, 0, n - 1)
            ok = bad & np.take_along_axis(valid, k[None], axis=0)[0]
            out[ok] = k[ok]
            bad &= ~ok
    return out


def take_frames(
    frames: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Pick each pixel from frame ``labels[y, x]``: (N,H,W,C) x (H,W) int -> (H,W,C).

    With ``valid`` (N,H,W), a frame without data at a pixel is replaced by the nearest
    frame that has data there.
    """
    idx = np.clip(labels, 0, frames.shape[0] - 1).astype(np.intp)
    idx = nearest_valid(idx, valid)
    return np.take_along_axis(frames, idx[None, :, :, None], axis=0)[0]


def box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window, mirrored at the border."""
    k = 2 * radius + 1
    return cv2.boxFilter(image, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` (H,W) steered by a grey ``guide`` (He et al. 2010).

    With ``weight`` (H,W) the local linear fits are weighted (e.g. by confidence), so
    unreliable pixels take their value from reliable neighbours. O(H·W) per call.
    """
    guide = guide.astype(np.float32)
    src = src.astype(np.float32)
    if weight is None:
        mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
        cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
        var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    else:
        w = weight.astype(np.float32)
        sw = np.maximum(box_mean(w, radius), 1e-6)
        mean_i = box_mean(w * guide, radius) / sw
        mean_p = box_mean(w * src, radius) / sw
        cov_ip = box_mean(w * guide * src, radius) / sw - mean_i * mean_p
        var_i = box_mean(w * guide * guide, radius) / sw - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)
