"""Per-pixel argmax of the (smoothed) focus volume."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dffcore.core.components import Context, Params
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.filters import take_frames

from ._common import SliceAggregator, prominence


class ArgmaxParams(Params):
    sigma: float = Field(
        7.0,
        ge=0,
        le=200,
        description="Gaussian σ smoothing each focus slice first (kernel 6σ+1); 0 = off"
        " (at most 200 px)",
    )


class Argmax(SliceAggregator):
    """Sharpest frame per pixel; all-in-focus by picking each pixel from it.

    Confidence is the peak's prominence, (max − mean) / max over the valid frames, times
    the fraction of frames valid at the pixel: 0 on textureless pixels, near 1 on a
    sharp, single peak. Frames invalid at a pixel (outside a warped frame) never win.
    Streams over the slices: no (N,H,W) buffer besides the focus volume.
    """

    name = "argmax"
    Params = ArgmaxParams
    citation = "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994"

    def __call__(self, volume: FocusVolume, aligned: AlignedStack, ctx: Context) -> DepthResult:
        scan = self.scan(volume, aligned, ctx)
        return DepthResult(
            index=scan.index.astype(np.float32),
            confidence=prominence(scan, volume.n),
            all_in_focus=take_frames(aligned.frames, scan.index),
        )
