"""The aligner that decides per stack: none, a global motion path, or the path plus a
dense residual flow where the scene has parallax."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.align.motion import test_images
from dffcore.align.pairwise import AlignParams, progress_ticks
from dffcore.core.components import Aligner, Context
from dffcore.core.data import AlignedStack, Alignment, FocalStack
from dffcore.core.errors import DffError
from dffcore.ops.convert import to_grey, to_uint8
from dffcore.ops.warp import compose, scale_transform, warp

from .ecc import ECC, ECCParams
from .flow import DenseFlowParams, Flow

#: the largest share of a frame the residual flow may leave without data (occluded)
MAX_OCCLUDED = 0.2
#: DIS presets for the parallax test and the residual flow
_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class AutoParams(AlignParams):
    motion: Literal["translation", "euclidean", "affine", "homography"] = Field(
        "affine", description="model of the global motion path (ECC)"
    )
    levels: int = Field(3, ge=1, le=8, description="ECC pyramid levels, coarse to fine")
    finest_level: int = Field(
        2, ge=0, le=4, description="ECC level where refinement stops: 0 = full resolution"
    )
    parallax: Literal["auto", "on", "off"] = Field(
        "auto",
        description="dense residual flow on top of the global path: where the residual test "
        "finds parallax (auto), always, or never",
    )
    parallax_px: float = Field(
        1.0,
        gt=0,
        description="residual misregistration (95th percentile, px, median over neighbouring "
        "pairs) after the global path above which the residual flow is added",
    )
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field(
        "medium", description="DIS preset of the residual flow"
    )
    flow_side: int = Field(
        640, ge=64, description="long side (px) of the copies the residual flow is computed on"
    )
    occlusion_threshold: float = Field(
        2.0, gt=0, description="forward-backward disagreement (px) above which a pixel is occluded"
    )


class Auto(Aligner):
    """Decides per stack: identity when the camera did not move (residual test), a robust
    global motion path (ECC), and a dense residual flow on top where parallax remains."""

    name = "auto"
    Params = AutoParams
    citation = (
        "Evangelidis & Psarakis, Parametric image alignment using enhanced correlation "
        "coefficient maximization, IEEE TPAMI 30(10), 2008; Kroeger et al., Fast optical "
        "flow using dense inverse search, ECCV 2016"
    )

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        tick = progress_ticks(ctx, 2 * stack.n - 1)
        return apply_alignment(stack, self.estimate(stack, ctx, tick), jobs=ctx.jobs, tick=tick)

    def estimate(self, stack: FocalStack, ctx: Context, on_pair: Any = None) -> Alignment:
        """The global path, and the residual flow when the stack needs it."""
        p = self.params
        common = p.model_dump(
            exclude={"parallax", "parallax_px", "flow_preset", "flow_side", "occlusion_threshold"}
        )
        glob = ECC(ECCParams(**common)).estimate(stack, ctx, on_pair)
        decision: dict[str, Any] = {"global": p.motion}
        if not glob.moves:
            decision["decision"] = "none"
            return _decided(glob, decision, glob.summary)
        residual = parallax_residual(stack, glob)
        decision["residual_px"] = round(residual, 3)
        wanted = p.parallax == "on" or (p.parallax == "auto" and residual > p.parallax_px)
        base = glob.summary
        if not wanted:
            decision["decision"] = "global"
            text = f"global {p.motion} path ({base}); residual {residual:.2f} px"
            return _decided(glob, decision, text)
        try:
            maps, occluded = self._residual_flow(stack, glob, ctx)
        except DffError as exc:  # the global path stands
            decision["decision"] = "global (residual flow failed)"
            text = f"global {p.motion} path ({base}); residual {residual:.2f} px; {exc}"
            return _decided(glob, decision, text)
        worst = max(occluded)
        if worst > MAX_OCCLUDED:
            decision["decision"] = "global (residual flow rejected)"
            text = (
                f"global {p.motion} path ({base}); residual {residual:.2f} px; a "
                f"residual flow would leave {worst:.0%} of a frame without data"
            )
            return _decided(glob, decision, text)
        decision["decision"] = "global + residual flow"
        text = (
            f"global {p.motion} path + residual flow ({base}); residual {residual:.2f} "
            f"px before the flow, up to {worst:.1%} of a frame occluded"
        )
        out = Alignment(
            glob.reference,
            maps,
            glob.shape,
            glob.diagnostics,
            crop=p.crop,
            interpolation=p.interpolation,
            photometric=p.photometric,
        )
        return _decided(out, decision, text)

    def _residual_flow(
        self, stack: FocalStack, glob: Alignment, ctx: Context
    ) -> tuple[list[Any], list[float]]:
        """Per frame a dense map: the residual flow between the globally aligned frames,
        composed with the global transform."""
        p = self.params
        shape = stack.shape
        s = min(1.0, p.flow_side / max(shape))  # the residual flow is smooth: no need for more
        small = (max(8, round(shape[0] * s)), max(8, round(shape[1] * s)))
        greys = []
        for frame, t in zip(stack.frames, glob.transforms, strict=True):
            grey = to_grey(frame)
            if s < 1:
                grey = cv2.resize(grey, small[::-1], interpolation=cv2.INTER_AREA)
                t = None if t is None else scale_transform(t, 1.0 / s, small)
            greys.append(warp(grey, t, small, "linear"))
        flow = Flow(
            DenseFlowParams(
                reference=glob.reference,
                preset=p.flow_preset,
                occlusion_threshold=p.occlusion_threshold,
                still_test=0.0,
                fallback="identity",
                limits=p.limits,
            )
        )
        residual = flow.estimate(FocalStack(np.stack(greys)[..., None]), ctx)
        maps = [
            compose(scale_transform(r, s, shape), g, shape)
            for r, g in zip(residual.transforms, glob.transforms, strict=True)
        ]
        occluded = [0.0 if m is None else float(np.isnan(m[..., 0]).mean()) for m in maps]
        for d, fraction in zip(glob.diagnostics, occluded, strict=True):
            d["occluded_fraction"] = round(fraction, 4)
        return maps, occluded


def parallax_residual(stack: FocalStack, glob: Alignment, preset: str = "fast") -> float:
    """Misregistration left by the global path: the 95th percentile of the optical flow
    between globally aligned neighbouring frames (small copies, px at full resolution),
    median over the pairs."""
    images, scale = test_images(stack.frames)
    shape = images[0].shape[:2]
    aligned = []
    for img, t in zip(images, glob.transforms, strict=True):
        small = scale_transform(t, 1.0 / scale, shape) if t is not None and scale != 1 else t
        aligned.append(to_uint8(np.clip(warp(img, small, shape, "linear"), 0, 1)))
    dis = cv2.DISOpticalFlow_create(_PRESETS[preset])
    m = max(2, min(shape) // 10)  # leave out the borders the warp fills by mirroring
    values = []
    for a, b in itertools.pairwise(aligned):
        f = dis.calc(a, b, None)[m:-m, m:-m]
        values.append(float(np.percentile(np.linalg.norm(f, axis=2), 95)) / scale)
    return float(np.median(values)) if values else 0.0


def _decided(alignment: Alignment, decision: dict[str, Any], summary: str) -> Alignment:
    alignment.diagnostics[alignment.reference]["auto"] = decision
    alignment.summary = summary
    return alignment
