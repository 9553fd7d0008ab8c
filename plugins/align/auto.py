"""The aligner that decides per stack: none, a global motion path, or the path plus a
dense residual flow where the scene has parallax."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.align.motion import Copies
from dffcore.align.pairwise import AlignParams, progress_ticks
from dffcore.core.components import Aligner, Context
from dffcore.core.data import AlignedStack, Alignment, FocalStack
from dffcore.core.errors import DffError
from dffcore.ops.convert import to_grey, to_uint8
from dffcore.ops.warp import compose, flow_to_map, scale_transform, warp

from .ecc import ECC, ECCParams
from .flow import DenseFlowParams, Flow

#: neighbouring pairs the parallax test looks at, at most
PARALLAX_PAIRS = 8
#: box (px of the small copies) the flow is averaged over: parallax is coherent, noise not
SMOOTH_PX = 9
#: the largest share of pixels where a small flow may disagree forward and backward
MAX_INCONSISTENT = 0.08
#: the largest share of a frame the residual flow may leave without data (occluded)
MAX_OCCLUDED = 0.2


class AutoParams(AlignParams):
    motion: Literal["translation", "euclidean", "affine", "homography"] = Field(
        "affine", description="model of the global motion path (ECC)"
    )
    levels: int = Field(3, ge=1, le=8, description="ECC pyramid levels, coarse to fine")
    finest_level: int = Field(
        2, ge=0, le=4, description="ECC level where refinement stops: 0 = full resolution"
    )
    parallax: Literal["auto", "always", "never"] = Field(
        "auto",
        description="dense residual flow on top of the global path: where the residual test "
        "finds parallax (auto), always, or never",
    )
    parallax_px: float = Field(
        0.3,
        gt=0,
        description="coherent residual misregistration (95th percentile, px, median over "
        "neighbouring pairs) after the global path below which no residual flow is added",
    )
    parallax_explains: float = Field(
        0.33,
        ge=0,
        le=1,
        description="share of the globally aligned neighbours' difference a flow must "
        "explain (median over pairs) to be added",
    )
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field(
        "medium", description="DIS preset of the residual flow"
    )
    flow_side: int = Field(
        640,
        ge=64,
        le=16384,
        description="long side (px) of the copies the residual flow is computed on"
        " (at most 16384 px)",
    )
    occlusion_threshold: float = Field(
        2.0, gt=0, description="forward-backward disagreement (px) above which a pixel is occluded"
    )


class Auto(Aligner):
    """Decides per stack: identity when the camera did not move (residual test), a robust
    global motion path (ECC), and a dense residual flow on top where parallax remains: a
    coherent residual above ``parallax_px`` of which a flow explains more than
    ``parallax_explains`` (:func:`parallax`)."""

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
            exclude={
                "parallax",
                "parallax_px",
                "parallax_explains",
                "flow_preset",
                "flow_side",
                "occlusion_threshold",
            }
        )
        ecc = ECC(ECCParams(**common))
        ecc.jobs = ctx.jobs
        # one grey conversion of each frame for the pyramids and the test copies
        prepared, copies = ecc.prepare_with_copies(stack)
        glob = ecc.estimate(stack, ctx, on_pair, copies=copies, prepared=prepared)
        del prepared
        decision: dict[str, Any] = {"global": p.motion}
        if not glob.moves:
            decision["decision"] = "none"
            return _decided(glob, decision, glob.summary)
        found = parallax(copies, glob, ctx.jobs)
        decision.update(found.as_dict())
        base, residual = glob.summary, found.residual_px
        needs_flow = residual > p.parallax_px and found.explained > p.parallax_explains
        if p.parallax == "never" or (p.parallax == "auto" and not needs_flow):
            decision["decision"] = "global"
            text = f"global {p.motion} path ({base}); residual {residual:.2f} px"
            return _decided(glob, decision, text)
        if p.parallax == "auto" and found.inconsistent > MAX_INCONSISTENT:
            decision["decision"] = "global (flow unreliable)"
            text = (
                f"global {p.motion} path ({base}); residual {residual:.2f} px, but a flow "
                f"between these frames is unreliable ({found.inconsistent:.0%} of the pixels "
                "inconsistent: defocus, not motion)"
            )
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


@dataclass(frozen=True)
class Parallax:
    """What the global path leaves between neighbouring frames (see :func:`parallax`)."""

    residual_px: float  # coherent residual motion, 95th percentile, px at full resolution
    explained: float  # share of the neighbours' difference a flow removes
    inconsistent: float  # share of pixels where the flow disagrees forward and backward

    def as_dict(self) -> dict[str, float]:
        return {
            "residual_px": round(self.residual_px, 3),
            "flow_explains": round(self.explained, 4),
            "flow_inconsistent": round(self.inconsistent, 4),
        }


def parallax(copies: Copies, glob: Alignment, jobs: int = 1) -> Parallax:
    """Misregistration left by the global path, how much a flow explains, and how far
    such a flow can be trusted.

    On the small copies of :func:`~dffcore.align.motion.test_images`, warped by the
    global path, the optical flow (DIS, ultrafast) between neighbouring frames, forward and
    backward, on at most :data:`PARALLAX_PAIRS` pairs spread over the stack; each value is
    the median over the pairs: the 95th percentile of the flow averaged over
    :data:`SMOOTH_PX` (noise averages out, parallax does not), the share of the pair's
    ECC misfit the flow removes (as :func:`~dffcore.align.motion.explained`), and the share
    of pixels where forward and backward flow disagree by more than 2 px."""
    images, scale = copies
    shape = images[0].shape[:2]
    m = max(2, min(shape) // 10)  # leave out the borders the warp fills by mirroring
    mask = np.zeros(shape, np.uint8)
    mask[m:-m, m:-m] = 1

    def aligned(k: int) -> np.ndarray:
        t = glob.transforms[k]
        small = scale_transform(t, 1.0 / scale, shape) if t is not None and scale != 1 else t
        return warp(images[k], small, shape, "linear")

    def measure(k: int) -> tuple[float, float, float]:
        a, b = frames[k], frames[k + 1]
        a8, b8 = to_uint8(np.clip(a, 0, 1)), to_uint8(np.clip(b, 0, 1))
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        forward, backward = dis.calc(a8, b8, None), dis.calc(b8, a8, None)
        there = flow_to_map(forward)
        back = cv2.remap(backward, there[..., 0], there[..., 1], cv2.INTER_LINEAR)
        disagree = _length(forward + back)[m:-m, m:-m] / scale
        coherent = cv2.blur(forward, (SMOOTH_PX, SMOOTH_PX))
        size = _length(coherent)[m:-m, m:-m] / scale
        moved = cv2.remap(b, there[..., 0], there[..., 1], cv2.INTER_LINEAR)
        try:
            before, after = cv2.computeECC(a, b, mask), cv2.computeECC(a, moved, mask)
            gain = (after - before) / max(1.0 - before, 1e-9)
        except cv2.error:
            gain = 0.0
        return float(np.percentile(size, 95)), float(gain), float((disagree > 2.0).mean())

    n = len(images)
    starts = sorted({round(i) for i in np.linspace(0, n - 2, min(n - 1, PARALLAX_PAIRS))})
    needed = sorted({k for s in starts for k in (s, s + 1)})
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        frames = dict(zip(needed, pool.map(aligned, needed), strict=True))
        values = np.array(list(pool.map(measure, starts))).reshape(-1, 3)
    if not len(values):
        return Parallax(0.0, 0.0, 0.0)
    med = np.nan_to_num(np.median(values, axis=0))
    return Parallax(float(med[0]), float(med[1]), float(med[2]))


def _length(field: np.ndarray) -> np.ndarray:
    """Per-pixel length of an (H,W,2) vector field (cv2.magnitude: 5x np.linalg.norm)."""
    return cv2.magnitude(field[..., 0], field[..., 1])


def _decided(alignment: Alignment, decision: dict[str, Any], summary: str) -> Alignment:
    alignment.diagnostics[alignment.reference]["auto"] = decision
    alignment.summary = summary
    return alignment
