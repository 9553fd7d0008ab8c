"""Confidence-weighted guided filter of the depth index, steered by the all-in-focus image."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dffcore.core.components import Context, Params, Regularizer
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.filters import box_mean, guided_filter

from ._guide import guide_image

#: floor of the fit weights, so that a window holding only confidence-0 pixels still
#: has a (then unweighted) fit instead of a division by ~0
MIN_WEIGHT = 1e-4


class GuidedParams(Params):
    radius: int = Field(
        4, ge=1, le=200, description="window radius r of the (2r+1)² local fits (at most 200 px)"
    )
    eps: float = Field(
        1e-3,
        gt=0,
        description="regularisation of the local fits, in guide variance units (guide in "
        "[0, 1]): guide edges weaker than √eps are smoothed over",
    )
    confidence_power: float = Field(
        1.0, ge=0, description="fit weight = confidence^p (0 = unweighted guided filter)"
    )
    iterations: int = Field(2, ge=1, le=20, description="times the filter is applied (at most 20)")


class Guided(Regularizer):
    """Guided filter of the depth index, weighted by confidence, steered by the all-in-focus.

    Each (2r+1)² window fits the depth as an affine function of the grey guide
    (least squares weighted by ``confidence^p``) and every pixel averages the fits of the
    windows that contain it (:func:`dffcore.ops.filters.guided_filter`), so depth edges
    follow the guide's edges and low-confidence pixels take their depth from confident
    neighbours. Weights are floored at 1e-4 so a window with no confident pixel falls
    back to the plain guided filter: holes of unreliable depth are filled when they are
    narrower than about the window (use ``tv`` for larger ones). The index is clipped
    to the stack's range.

    Confidence: the box mean of the input confidence over the filter window (once, for
    any number of iterations): a pixel's new depth is fitted from that window, so its
    reliability is the window's average; filled holes gain confidence from confident
    surroundings and isolated confident pixels in unreliable areas lose it.
    """

    name = "guided"
    Params = GuidedParams
    citation = (
        "He, Sun & Tang, Guided image filtering, ECCV 2010 / IEEE TPAMI 35(6), 2013 "
        "(confidence-weighted local fits)"
    )

    def context(self) -> int:
        return 2 * self.params.radius * self.params.iterations

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        p = self.params
        guide = guide_image(result, aligned)
        conf = np.clip(result.confidence.astype(np.float32), 0, 1)
        weight = np.maximum(conf**p.confidence_power, np.float32(MIN_WEIGHT)).astype(np.float32)
        index = result.index.astype(np.float32)
        for i in range(p.iterations):
            index = guided_filter(guide, index, p.radius, p.eps, weight)
            ctx.progress(i + 1, p.iterations)
        top = max(volume.n, aligned.n) - 1
        index = np.clip(index, 0, top).astype(np.float32)
        confidence = np.clip(box_mean(conf, p.radius), 0, 1).astype(np.float32)
        return result.replace(index=index, confidence=confidence)
