"""Per-pixel argmax of the (smoothed) focus volume."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dffcore.components import Aggregator, Context, Params
from dffcore.data import AlignedStack, DepthResult, FocusVolume
from dffcore.filters import gaussian, take_frames


class ArgmaxParams(Params):
    sigma: float = Field(
        7.0, ge=0, description="Gaussian σ smoothing each focus slice first (kernel 6σ+1); 0 = off"
    )


class Argmax(Aggregator):
    """Sharpest frame per pixel; all-in-focus by picking each pixel from it.

    Confidence is the peak's prominence, (max − mean) / max over the valid frames, times
    the fraction of frames valid at the pixel: 0 on textureless pixels, near 1 on a
    sharp, single peak. Frames invalid at a pixel (outside a warped frame) never win.
    """

    name = "argmax"
    Params = ArgmaxParams
    citation = "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994"

    def __call__(self, volume: FocusVolume, aligned: AlignedStack, ctx: Context) -> DepthResult:
        n, h, w = volume.data.shape
        best = np.full((h, w), -np.inf, np.float32)
        index = np.zeros((h, w), np.int32)
        total = np.zeros((h, w), np.float32)
        count = np.zeros((h, w), np.float32)
        for i in range(n):
            valid = None if volume.valid is None else volume.valid[i]
            s = gaussian(volume.data[i], self.params.sigma, valid)
            if valid is not None:
                s = np.where(valid, s, -np.inf)  # NaN from gaussian -> never wins
            better = s > best
            best[better] = s[better]
            index[better] = i
            ok = np.isfinite(s)
            total += np.where(ok, s, 0)
            count += ok
            ctx.progress(i + 1, n)
        mean = total / np.maximum(count, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(best > 0, (best - mean) / best, 0).astype(np.float32)
        confidence *= count / n
        return DepthResult(
            index=index.astype(np.float32),
            confidence=np.clip(confidence, 0, 1),
            all_in_focus=take_frames(aligned.frames, index),
        )
