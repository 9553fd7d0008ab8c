"""Weighted median filter of the depth map."""

from __future__ import annotations

import sys
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from dffcore.core.components import Context, Params, Regularizer
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume

from ._guide import guide_image

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
    weights: Literal["classic", "gaussian", "uniform"] = Field(
        "classic",
        description="spatial weights: 'classic' = the course project's 7x7 diamond (radius 3), "
        "'gaussian' (σ = radius/2) or 'uniform' over the (2·radius+1)² window",
    )
    iterations: int = Field(1, ge=1, le=20, description="times the filter is applied (at most 20)")
    guide: Literal["none", "image"] = Field(
        "none",
        description="'image' = joint weighted median: neighbours also weighted by their "
        "similarity to the pixel in the grey all-in-focus guide",
    )
    radius: int = Field(
        3, ge=1, le=15, description="window radius (the window is 2r+1 square; at most 15 px)"
    )
    range_sigma: float = Field(
        0.1,
        gt=0,
        description="guide: image: range weight exp(−(I_p − I_q)² / (2 range_sigma²)), guide "
        "grey levels in [0, 1]",
    )

    @model_validator(mode="after")
    def _classic_is_7x7(self) -> WeightedMedianParams:
        if self.weights == "classic" and self.radius != 3:
            raise ValueError(
                f"weights 'classic' is the 7x7 kernel (radius 3), got radius {self.radius}; "
                "use weights 'gaussian' or 'uniform' for other radii"
            )
        return self


class WeightedMedian(Regularizer):
    """Weighted median of the depth index, optionally joint (guided by the all-in-focus).

    ``guide: none`` with ``weights: classic`` is the classic pipeline's filter, unchanged:
    each neighbour of the 7x7 diamond repeated by its integer weight. Other spatial
    weights use the float-weight median. ``guide: image`` is the joint weighted median:
    neighbour q of p weighs ``spatial(q − p) · exp(−(I_p − I_q)² / (2 range_sigma²))``
    with ``I`` the grey all-in-focus guide, so depth edges snap to intensity edges
    instead of rounding corners. The float-weight median is the lower weighted median:
    the smallest sample whose cumulative weight (ascending order) reaches half the
    total. Defined on the whole image: the border is mirrored (the original skipped 3
    pixels). Confidence is left unchanged.
    """

    name = "weighted-median"
    Params = WeightedMedianParams
    citation = (
        "Tukey, Exploratory Data Analysis, 1977 (weighted median); classic pipeline; "
        "guide: image: joint weighted median as in Zhang, Xu & Jia, 100+ times faster "
        "weighted median filter, CVPR 2014 (brute force here, not their algorithm)"
    )

    def context(self) -> int:
        return self.params.radius * self.params.iterations

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> DepthResult:
        p = self.params
        index = result.index
        guide = guide_image(result, aligned) if p.guide == "image" else None
        classic = p.weights == "classic" and guide is None
        kernel = spatial_weights(p.weights, p.radius)
        for i in range(p.iterations):
            if classic:
                index = weighted_median(index, CLASSIC_WEIGHTS)
            else:
                index = joint_weighted_median(index, guide, kernel, p.range_sigma)
            ctx.progress(i + 1, p.iterations)
        return result.replace(index=index)


def spatial_weights(kind: str, radius: int) -> np.ndarray:
    """(2r+1)² float32 spatial weights: the classic diamond, a Gaussian (σ = r/2), uniform."""
    if kind == "classic":
        if radius != 3:
            raise ValueError("the classic weights are 7x7 (radius 3)")
        return CLASSIC_WEIGHTS.astype(np.float32)
    k = 2 * radius + 1
    if kind == "uniform":
        return np.ones((k, k), np.float32)
    if kind == "gaussian":
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        sigma = radius / 2.0
        return np.exp(-(yy * yy + xx * xx) / (2.0 * sigma * sigma)).astype(np.float32)
    raise ValueError(f"unknown spatial weights {kind!r}")


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


def _value_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys that sort like the float32 ``values`` (NaN aside)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # flip every bit of negatives, the sign bit of the rest
    flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return bits ^ flip


def _key_values(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_value_keys`: uint32 keys back to float32 values."""
    keys = keys.astype(np.uint32)
    flip = np.where(keys >> np.uint32(31), np.uint32(0x80000000), np.uint32(0xFFFFFFFF))
    return (keys ^ flip).view(np.float32)


def joint_weighted_median(
    image: np.ndarray,
    guide: np.ndarray | None,
    spatial: np.ndarray,
    range_sigma: float = 0.1,
    *,
    chunk_bytes: int = 32 << 20,
) -> np.ndarray:
    """Float-weight (joint) weighted median of a (H,W) image.

    Neighbour q of pixel p weighs ``spatial[q − p]`` (a (2r+1)² kernel), times
    ``exp(−(guide_p − guide_q)² / (2 range_sigma²))`` when a ``guide`` (H,W) is given.
    The result is the lower weighted median: the smallest neighbour value whose
    cumulative weight, in ascending order of value, reaches half the window's total.
    The border is mirrored (as in :func:`weighted_median`).

    Vectorised brute force, in row chunks bounded to about ``chunk_bytes`` of working
    memory: each pixel's K samples become uint64 keys (an order-preserving code of the
    value in the high 32 bits, the float32 weight's bits in the low 32), sorted along a
    last axis; the sorted weights are cumulated and the first sample reaching half the
    total is decoded.
    """
    kh, kw = spatial.shape
    ry, rx = kh // 2, kw // 2
    h, w = image.shape
    border = cv2.BORDER_REFLECT_101
    padded = cv2.copyMakeBorder(image.astype(np.float32), ry, ry, rx, rx, border)
    vkeys = _value_keys(padded).astype(np.uint64) << np.uint64(32)
    offsets = [
        (dy, dx, np.float32(spatial[dy, dx]))
        for dy in range(kh)
        for dx in range(kw)
        if spatial[dy, dx] > 0
    ]
    k = len(offsets)
    if guide is not None:
        gpad = cv2.copyMakeBorder(guide.astype(np.float32), ry, ry, rx, rx, border)
        inv = np.float32(-0.5 / (range_sigma * range_sigma))
    low = 0 if sys.byteorder == "little" else 1  # the uint32 half holding the weight
    out = np.empty((h, w), np.float32)
    # per sample: key 8 + weight 4 + cumulated weight 4 + comparison 1
    rows = max(1, chunk_bytes // (w * k * 17))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        m = (y1 - y0) * w
        keys = np.empty((y1 - y0, w, k), np.uint64)
        for j, (dy, dx, sw) in enumerate(offsets):
            if guide is None:
                wt = np.array(sw, np.float32)
            else:
                wt = gpad[y0 + dy : y1 + dy, dx : dx + w] - gpad[y0 + ry : y1 + ry, rx : rx + w]
                np.multiply(wt, wt, out=wt)
                wt *= inv
                np.exp(wt, out=wt)
                wt *= sw
            np.bitwise_or(
                vkeys[y0 + dy : y1 + dy, dx : dx + w], wt.view(np.uint32), out=keys[:, :, j]
            )
        keys = keys.reshape(m, k)
        keys.sort(axis=1)
        halves = keys.view(np.uint32).reshape(m, k, 2)
        cum = np.ascontiguousarray(halves[:, :, low]).view(np.float32)
        np.cumsum(cum, axis=1, out=cum)
        pos = np.count_nonzero(cum < cum[:, -1:] * np.float32(0.5), axis=1)
        pick = halves[np.arange(m), pos, 1 - low]
        out[y0:y1] = _key_values(pick).reshape(y1 - y0, w)
    return out
