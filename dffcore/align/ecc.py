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
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """ECC (Evangelidis & Psarakis 2008) from grey float32 ``a`` to ``b``, coarse to fine.

    ``a`` and ``b`` are images or their :func:`pyramid` (built once per frame by the
    caller). Returns the 3x3 transform mapping ``a``'s coordinates to ``b``'s, or None
    and the reason. ``smooth`` is the Gaussian both images are filtered with at every
    level, which evens out the blur difference between neighbouring slices. Refinement
    stops at pyramid level ``finest`` (0 = full resolution, 1 = half, ...) for speed.
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
        try:
            cc, found = cv2.findTransformECC(
                pa[level], pb[level], start, MOTIONS[motion], criteria, None, smooth
            )
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
