"""Accuracy metrics shared by tests, benchmarks and reports."""

from __future__ import annotations

import cv2
import numpy as np


def psnr(image: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``peak`` is the value range, 255 for 8 bit)."""
    mse = np.mean((image.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


def depth_edges(index: np.ndarray, radius: int, step: float = 0.5) -> np.ndarray:
    """Pixels within ``radius`` of a place where ``index`` jumps by more than ``step``."""
    j = np.zeros(index.shape, bool)
    dx, dy = np.abs(np.diff(index, axis=1)) > step, np.abs(np.diff(index, axis=0)) > step
    j[:, 1:] |= dx
    j[:, :-1] |= dx
    j[1:] |= dy
    j[:-1] |= dy
    k = 2 * radius + 1
    return cv2.dilate(j.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def seam_strength(image: np.ndarray, truth: np.ndarray, smooth: float = 0.0) -> np.ndarray:
    """(H,W) gradient magnitude of the error image (optionally Gaussian-smoothed first):
    high along seams of a composite, low where its error is smooth."""
    err = image.astype(np.float32) - truth.astype(np.float32)
    if smooth:
        err = cv2.GaussianBlur(err, (0, 0), smooth)
    gx = cv2.Sobel(err, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(err, cv2.CV_32F, 0, 1, ksize=1)
    mag = np.sqrt(gx * gx + gy * gy)
    return mag.mean(axis=2) if mag.ndim == 3 else mag


def to_output_grid(truth: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """Ground truth in a result's pixel grid: cut to the aligner's ``crop`` (x, y, w, h)."""
    if crop is None:
        return truth
    x, y, w, h = crop
    return truth[y : y + h, x : x + w]
