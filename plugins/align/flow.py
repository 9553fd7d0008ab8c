"""Dense optical-flow alignment (DIS, Farneback) with correct flow composition."""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.align.ecc import ecc_pair
from dffcore.align.pairwise import AlignParams, PairwiseAligner
from dffcore.core.components import Reference
from dffcore.ops.convert import to_uint8
from dffcore.ops.warp import compose, flow_to_map, grid, warp


class FlowParams(AlignParams):
    reference: Reference = Field(
        "middle", description="frame whose pixel grid the outputs use (middle: shortest chains)"
    )
    prealign: Literal["none", "ecc"] = Field(
        "none", description="fit a global homography (ECC) first; flow models the rest"
    )
    occlusion_check: bool = Field(
        True, description="forward-backward check: inconsistent pixels become invalid"
    )
    occlusion_threshold: float = Field(
        2.0, gt=0, description="forward-backward disagreement (px) above which a pixel is occluded"
    )


class FlowAligner(PairwiseAligner):
    """Base of dense-flow aligners: subclasses implement ``pair_flow(a, b)``."""

    Params = FlowParams

    path_model = None  # dense maps are composed, not fitted

    def pair_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H,W,2) float32 flow with a(x) ≈ b(x + flow(x)), from grey float32 images."""
        raise NotImplementedError

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[np.ndarray | None, dict[str, Any]]:
        p = self.params
        img_a, img_b = data[a], data[b]
        shape = img_a.shape[:2]
        diag: dict[str, Any] = {}
        pre = None
        if p.prealign == "ecc":
            pre, d = ecc_pair(img_a, img_b, "homography")
            diag.update(d)
            if pre is not None:
                img_b = warp(img_b, pre, shape)  # b resampled on a's grid
        flow = self.pair_flow(img_a, img_b)
        finite = np.isfinite(flow).all(axis=2)
        if finite.mean() < 0.5:
            return None, {**diag, "failure": "the flow is not finite on most pixels"}
        m = flow_to_map(flow)
        m[~finite] = np.nan
        if p.occlusion_check:
            back = flow_to_map(self.pair_flow(img_b, img_a))
            there = cv2.remap(
                back,
                m[..., 0],
                m[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=np.nan,
            )
            back_home = there - grid(shape)  # where a's pixel lands after going and coming back
            err = cv2.magnitude(back_home[..., 0], back_home[..., 1])
            occluded = ~(err <= p.occlusion_threshold)  # NaN counts as occluded
            m[occluded] = np.nan
            diag["occluded_fraction"] = round(float(occluded.mean()), 4)
        diag["mean_flow_px"] = round(
            float(np.nanmean(cv2.magnitude(flow[..., 0], flow[..., 1]))), 3
        )
        return (compose(m, pre, shape) if pre is not None else m), diag


class DenseFlowParams(FlowParams):
    method: Literal["dis", "farneback"] = Field("dis", description="flow algorithm")
    preset: Literal["ultrafast", "fast", "medium"] = Field("medium", description="DIS preset")
    pyr_scale: float = Field(0.5, gt=0, lt=1, description="Farneback pyramid scale")
    pyr_levels: int = Field(3, ge=1, le=10, description="Farneback pyramid levels (at most 10)")
    winsize: int = Field(
        15, ge=3, le=999, description="Farneback averaging window (at most 999 px)"
    )
    iterations: int = Field(
        3, ge=1, le=1000, description="Farneback iterations per level (at most 1000)"
    )
    poly_n: int = Field(
        5, ge=3, le=31, description="Farneback polynomial neighbourhood (at most 31 px)"
    )
    poly_sigma: float = Field(
        1.2, gt=0, le=100, description="Farneback polynomial Gaussian σ (at most 100)"
    )


_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class Flow(FlowAligner):
    """Dense optical flow between neighbouring frames (DIS or Farneback), composed to the
    reference; occluded pixels (forward-backward check) are marked invalid."""

    name = "flow"
    Params = DenseFlowParams
    citation = (
        "Kroeger et al., Fast optical flow using dense inverse search, ECCV 2016; "
        "Farnebäck, Two-frame motion estimation based on polynomial expansion, SCIA 2003"
    )

    def pair_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        p = self.params
        a8, b8 = to_uint8(a), to_uint8(b)
        if p.method == "dis":
            return cv2.DISOpticalFlow_create(_PRESETS[p.preset]).calc(a8, b8, None)
        return cv2.calcOpticalFlowFarneback(
            a8,
            b8,
            None,
            p.pyr_scale,
            p.pyr_levels,
            p.winsize,
            p.iterations,
            p.poly_n,
            p.poly_sigma,
            0,
        )
