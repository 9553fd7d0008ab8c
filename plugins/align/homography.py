"""Feature-based homography alignment (the classic pipeline's aligner)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.align.ecc import ecc_pair
from dffcore.align.pairwise import AlignParams, PairwiseAligner
from dffcore.core.data import FocalStack
from dffcore.ops.convert import to_grey, to_uint8

logger = logging.getLogger(__name__)


class HomographyParams(AlignParams):
    features: Literal["sift", "orb", "akaze"] = Field("sift", description="feature detector")
    ratio: float = Field(0.7, gt=0, le=1, description="Lowe's ratio-test threshold")
    ransac_threshold: float = Field(5.0, gt=0, description="RANSAC reprojection threshold, px")
    detect_scale: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description="detect features on a copy scaled by this factor (speed, memory); auto: "
        "full size up to 3 MP, scaled to about 3 MP above",
    )
    min_matches: int = Field(
        12, ge=4, le=10000, description="fewest RANSAC inliers accepted per pair (at most 10000)"
    )
    refine: Literal["none", "ecc"] = Field(
        "none", description="refine each homography with ECC (dense, sub-pixel)"
    )


class Homography(PairwiseAligner):
    """Features + ratio test + RANSAC homography, chained and composed to the reference."""

    name = "homography"
    Params = HomographyParams
    citation = (
        "Lowe, Distinctive image features from scale-invariant keypoints, IJCV 60(2), 2004; "
        "Fischler & Bolles, RANSAC, CACM 24(6), 1981"
    )

    def prepare(self, stack: FocalStack) -> list[tuple[np.ndarray, Any, np.ndarray]]:
        p = self.params

        def detect(i: int) -> tuple[np.ndarray, Any, np.ndarray]:
            grey = to_grey(stack.frames[i])
            small = to_uint8(grey)
            scale = detect_scale(p.detect_scale, small.shape)
            if scale < 1:
                small = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            kps, desc = _detector(p.features).detectAndCompute(small, None)
            pts = np.float32([k.pt for k in kps]).reshape(-1, 2) / scale
            return pts, desc, grey

        return self.per_frame(detect, range(stack.n))

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[np.ndarray | None, dict[str, Any]]:
        H, diag = _homography(data[a][:2], data[b][:2], self.params)
        if H is not None and self.params.refine == "ecc":
            refined, d = ecc_pair(data[a][2], data[b][2], "homography", init=H, levels=1)
            if refined is not None:
                H = refined
                diag.update(d)
        return H, diag


def detect_scale(setting: float | str, shape: tuple[int, ...]) -> float:
    """The factor features are detected at: ``auto`` keeps about 3 MP at most."""
    if setting == "auto":
        return min(1.0, float(np.sqrt(3e6 / (shape[0] * shape[1]))))
    return float(setting)


def _detector(kind: str) -> Any:
    if kind == "sift":
        return cv2.SIFT_create()
    if kind == "orb":
        return cv2.ORB_create(nfeatures=4000)
    return cv2.AKAZE_create()


def _homography(
    a: tuple[np.ndarray, Any], b: tuple[np.ndarray, Any], p: HomographyParams
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Homography mapping points of frame a to frame b, with diagnostics."""
    (pa, da), (pb, db) = a, b
    if da is None or db is None or len(pa) < p.min_matches or len(pb) < p.min_matches:
        return None, {"failure": f"too few features ({len(pa)} and {len(pb)})"}
    # exact brute-force neighbours: deterministic, unlike FLANN's randomised trees, and
    # as fast at a few thousand features
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING if da.dtype == np.uint8 else cv2.NORM_L2)
    knn = matcher.knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < p.ratio * m[1].distance]
    if len(good) < p.min_matches:
        return None, {
            "failure": f"only {len(good)} matches pass the ratio test",
            "matches": len(good),
        }
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, p.ransac_threshold)
    inliers = int(mask.sum()) if mask is not None else 0
    diag: dict[str, Any] = {"matches": len(good), "inliers": inliers}
    if H is None or inliers < p.min_matches or not np.isfinite(H).all():
        diag["failure"] = f"RANSAC found only {inliers} inliers among {len(good)} matches"
        return None, diag
    keep = mask.ravel() > 0
    proj = cv2.perspectiveTransform(src[keep][None], H)[0]
    diag["residual_px"] = round(float(np.median(np.linalg.norm(proj - dst[keep], axis=1))), 4)
    return H, diag
