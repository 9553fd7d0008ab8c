"""Feature-based homography alignment (the classic pipeline's aligner)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.components import Aligner, Context, Params, Reference, resolve_reference
from dffcore.convert import to_grey, to_uint8
from dffcore.data import AlignedStack, FocalStack
from dffcore.errors import DffError

logger = logging.getLogger(__name__)


class HomographyParams(Params):
    reference: Reference = Field("first", description="frame whose pixel grid the outputs use")
    features: Literal["sift", "orb", "akaze"] = Field("sift", description="feature detector")
    ratio: float = Field(0.7, gt=0, le=1, description="Lowe's ratio-test threshold")
    ransac_threshold: float = Field(5.0, gt=0, description="RANSAC reprojection threshold, px")
    chain: bool = Field(
        True, description="match neighbouring frames and compose (else each frame to reference)"
    )
    detect_scale: float = Field(
        1.0, gt=0, le=1, description="detect features on a copy scaled by this factor (speed)"
    )
    min_matches: int = Field(12, ge=4, description="fewest RANSAC inliers accepted per pair")
    fallback: Literal["error", "identity"] = Field(
        "error", description="on failure: stop with an error, or use the identity and warn"
    )


class Homography(Aligner):
    """Features + ratio test + RANSAC homography, chained and composed to the reference."""

    name = "homography"
    Params = HomographyParams
    citation = (
        "Lowe, Distinctive image features from scale-invariant keypoints, IJCV 60(2), 2004; "
        "Fischler & Bolles, RANSAC, CACM 24(6), 1981"
    )

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        p = self.params
        n = stack.n
        ref = resolve_reference(p.reference, n)
        total = 2 * n
        done = 0

        def detect(i: int) -> tuple[Any, Any]:
            grey = to_uint8(to_grey(stack.frames[i]))
            if p.detect_scale < 1:
                grey = cv2.resize(
                    grey, None, fx=p.detect_scale, fy=p.detect_scale, interpolation=cv2.INTER_AREA
                )
            kps, desc = _detector(p.features).detectAndCompute(grey, None)
            pts = np.float32([k.pt for k in kps]).reshape(-1, 2) / p.detect_scale
            return pts, desc

        feats: list[tuple[Any, Any]] = [None] * n  # type: ignore[list-item]
        with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
            for i, f in enumerate(pool.map(detect, range(n))):
                feats[i] = f
                done += 1
                ctx.progress(done, total)

        # pairs[k] = (src, dst, H) with H mapping points of frame src to frame dst
        if p.chain:
            pairs = [(i, i + 1) for i in range(ref, n - 1)] + [
                (i, i - 1) for i in range(ref, 0, -1)
            ]
        else:
            pairs = [(ref, i) for i in range(n) if i != ref]
        diagnostics: list[dict[str, Any]] = [{} for _ in range(n)]
        diagnostics[ref] = {"reference": True}

        def match(pair: tuple[int, int]) -> tuple[np.ndarray | None, dict[str, Any]]:
            return _homography(feats[pair[0]], feats[pair[1]], p)

        with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
            results = dict(zip(pairs, pool.map(match, pairs), strict=True))

        # T[i] maps reference pixel coordinates to frame i
        T: list[np.ndarray] = [np.eye(3)] * n
        for src, dst in pairs:  # ordered outward from the reference, so T[src] is ready
            H, diag = results[(src, dst)]
            diagnostics[dst] = diag
            if H is None:
                msg = f"frame {dst} ({_name(stack, dst)}): alignment failed: {diag['failure']}"
                if p.fallback == "error":
                    raise DffError(msg + "; set fallback: identity to continue without it")
                logger.warning("%s; using the identity", msg)
                H = np.eye(3)
            T[dst] = H @ (T[src] if p.chain else np.eye(3))
            diagnostics[dst]["transform"] = np.round(T[dst], 6).tolist()

        h, w = stack.shape
        frames = np.empty_like(stack.frames)
        valid = np.ones((n, h, w), bool)
        ones = np.ones((h, w), np.uint8)
        for i in range(n):
            if i == ref:
                frames[i] = stack.frames[i]
            else:
                flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
                warped = cv2.warpPerspective(
                    stack.frames[i], T[i], (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT
                )
                frames[i] = warped.reshape(frames[i].shape)
                # valid only where the whole bilinear footprint lies inside the frame
                inside = cv2.warpPerspective(
                    ones, T[i], (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0
                )
                valid[i] = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
            done += 1
            ctx.progress(done, total)
        n_invalid = int((~valid).any(axis=0).sum())
        logger.info("homography: %d pixels lie outside at least one warped frame", n_invalid)
        return AlignedStack(frames, ref, valid if n_invalid else None, T, diagnostics, stack)


def _name(stack: FocalStack, i: int) -> str:
    return stack.paths[i].name if i < len(stack.paths) else f"#{i}"


def _detector(kind: str) -> Any:
    if kind == "sift":
        return cv2.SIFT_create()
    if kind == "orb":
        return cv2.ORB_create(nfeatures=4000)
    return cv2.AKAZE_create()


def _homography(
    a: tuple[np.ndarray, Any], b: tuple[np.ndarray, Any], p: HomographyParams
) -> tuple[np.ndarray | None, dict[str, Any]]:
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
    proj = cv2.perspectiveTransform(src[mask.ravel() > 0][None], H)[0]
    diag["residual_px"] = round(
        float(np.median(np.linalg.norm(proj - dst[mask.ravel() > 0], axis=1))), 4
    )
    return H, diag
