"""Weighted median filter of the depth map."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.components import Context, Params, Regularizer
from dffcore.data import AlignedStack, DepthResult, FocusVolume

#: The classic pipeline's 7x7 weights: each neighbour counts this many times.
CLASSIC_WEIGHTS = np.array(
    [
        [0, 0, 1, 2, 1, 0, 0],
        [0, 1, 2, 3, 2, 1, 0],
        [1, 2, 3, 4, 3, 2, 1],
        [2, 3, 4, 5, 4, 3, 2],
        [1, 2, 3, 4, 3, 2, 1],
        [0, 1, 2, 3, 2, 1, 0],
        [0, 0, 1, 2, 1, 0, 0],
    ],
    np.int32,
)


class WeightedMedianParams(Params):
    weights: Literal["classic"] = Field(
        "classic", description="weight kernel: 'classic' = the course project's 7x7 diamond"
    )
    iterations: int = Field(1, ge=1, le=20, description="times the filter is applied")


class WeightedMedian(Regularizer):
    """Weighted median of the depth index (each neighbour repeated by its weight).

    Defined on the whole image: the border is mirrored (the original skipped 3 pixels).
    """

    name = "weighted-median"
    Params = WeightedMedianParams
    citation = "Tukey, Exploratory Data Analysis, 1977 (weighted median); classic pipeline"

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        index = result.index
        for i in range(self.params.iterations):
            index = weighted_median(index, CLASSIC_WEIGHTS)
            ctx.progress(i + 1, self.params.iterations)
        return result.replace(index=index)


def weighted_median(
    image: np.ndarray, weights: np.ndarray, *, chunk_bytes: int = 32 << 20
) -> np.ndarray:
    """Weighted median of a float32 (H,W) image with integer weights (odd total).

    Vectorised: every pixel's neighbourhood, each neighbour repeated by its weight, is
    gathered along a last axis and partitioned at its middle, in row chunks that bound
    the working memory to about ``chunk_bytes``.
    """
    kh, kw = weights.shape
    ry, rx = kh // 2, kw // 2
    total = int(weights.sum())
    padded = cv2.copyMakeBorder(image.astype(np.float32), ry, ry, rx, rx, cv2.BORDER_REFLECT_101)
    offsets = [
        (dy, dx, int(weights[dy, dx]))
        for dy in range(kh)
        for dx in range(kw)
        if weights[dy, dx] > 0
    ]
    h, w = image.shape
    out = np.empty((h, w), np.float32)
    rows = max(1, chunk_bytes // (w * total * 4))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        samples = np.empty((y1 - y0, w, total), np.float32)
        k = 0
        for dy, dx, wt in offsets:
            view = padded[y0 + dy : y1 + dy, dx : dx + w, None]
            samples[:, :, k : k + wt] = view
            k += wt
        out[y0:y1] = np.partition(samples, total // 2, axis=2)[:, :, total // 2]
    return out
