"""ECC image alignment (Evangelidis & Psarakis 2008) of two grey frames, coarse to fine."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


def pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` images, full resolution first, each half the previous (>= 32 px)."""
    out = [image]
    while len(out) < levels and min(out[-1].shape[:2]) >= 64:
        out.append(cv2.pyrDown(out[-1]))
    return out


def ecc_pair(
    a: np.ndarray | list[np.ndarray],
    b: np.ndarray | list[np.ndarray],
    motion: str = "affine",
    *,
    levels: int = 3,
    iterations: int = 100,
    eps: float = 1e-5,
    smooth: int = 5,
    init: np.ndarray | None = None,
    finest: int = 0,
    match_blur: bool = False,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """ECC (Evangelidis & Psarakis 2008) from grey float32 ``a`` to ``b``, coarse to fine.

    ``a`` and ``b`` are images or their :func:`pyramid` (built once per frame by the
    caller). Returns the 3x3 transform mapping ``a``'s coordinates to ``b``'s, or None
    and the reason. ``smooth`` is the Gaussian both images are filtered with at every
    level, which evens out the blur difference between neighbouring slices. Refinement
    stops at pyramid level ``finest`` (0 = full resolution, 1 = half, ...) for speed.
    ``match_blur`` blurs the sharper image of each level until both have the same
    gradient energy (:func:`match_sharpness`), so that two slices focused at different
    depths differ less in blur than in position.
    """
    warp_t = np.eye(3) if init is None else np.asarray(init, np.float64)
    depth = max(levels, finest + 1)
    pa = a[:depth] if isinstance(a, list) else pyramid(a, depth)
    pb = b[:depth] if isinstance(b, list) else pyramid(b, depth)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    cc, failure = 0.0, ""
    for level in range(len(pa) - 1, min(finest, len(pa) - 1) - 1, -1):
        s = np.diag([0.5**level, 0.5**level, 1.0])
        w_l = s @ warp_t @ np.linalg.inv(s)
        w_l = (w_l / w_l[2, 2]).astype(np.float32)
        start = w_l if motion == "homography" else w_l[:2].copy()
        ia, ib = match_sharpness(pa[level], pb[level]) if match_blur else (pa[level], pb[level])
        try:
            cc, found = cv2.findTransformECC(ia, ib, start, MOTIONS[motion], criteria, None, smooth)
        except cv2.error as exc:  # a coarse level may lack detail: go on from the estimate
            failure = f"ECC did not converge at pyramid level {level}: {getattr(exc, 'err', exc)}"
            continue
        failure = ""
        full = found if found.shape == (3, 3) else np.vstack([found, [0, 0, 1]])
        warp_t = np.linalg.inv(s) @ full.astype(np.float64) @ s
    if failure:
        return None, {"failure": failure}
    if not np.isfinite(warp_t).all():
        return None, {"failure": "ECC produced a non-finite transform"}
    return warp_t, {"ecc_correlation": round(float(cc), 5)}


def gradient_energy(image: np.ndarray) -> float:
    """Mean squared gradient (Sobel) of a grey image: its sharpness."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy).mean())


def match_sharpness(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` with the sharper one blurred (Gaussian, σ by bisection in 0-4 px)
    until both have the same :func:`gradient_energy`."""
    ea, eb = gradient_energy(a), gradient_energy(b)
    if min(ea, eb) <= 0 or max(ea, eb) / min(ea, eb) < 1.05:
        return a, b
    sharp, target = (a, eb) if ea > eb else (b, ea)
    lo, hi = 0.0, 4.0
    for _ in range(6):
        mid = 0.5 * (lo + hi)
        if gradient_energy(cv2.GaussianBlur(sharp, (0, 0), mid)) > target:
            lo = mid
        else:
            hi = mid
    blurred = cv2.GaussianBlur(sharp, (0, 0), 0.5 * (lo + hi))
    return (blurred, b) if ea > eb else (a, blurred)
