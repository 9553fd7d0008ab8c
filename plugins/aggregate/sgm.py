"""Semi-global aggregation of the focus cost volume (scanline dynamic programming)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dffcore.ops.peaks import refine_index

from ._common import CurveParams, Scan
from .peak import PeakAggregator


class SGMParams(CurveParams):
    sigma: float = Field(
        1.0,
        ge=0,
        le=200,
        description="Gaussian σ smoothing each focus slice first (kernel 6σ+1); 0 = off"
        " (at most 200 px)",
    )
    p1: float = Field(0.03, ge=0, description="penalty for a one-slice step between neighbours")
    p2: float = Field(0.3, ge=0, description="penalty for a larger jump (depth edge)")
    directions: int = Field(4, description="scan directions: 4 (rows, columns) or 8 (+ diagonals)")
    saturation: float = Field(
        30.0,
        gt=0,
        description="focus f becomes cost 1 − f/(f + τ), τ = this × the median per-pixel peak",
    )


class SGM(PeakAggregator):
    """Semi-global matching on the focus volume: costs summed along scanlines, then argmin.

    Each pixel's cost curve (focus compressed to [0, 1): 1 − f/(f + τ)) is aggregated
    along 4 or 8 scan directions with a small penalty ``p1`` for one-slice steps and a
    large one ``p2`` for jumps, so textureless regions take depth from their surround
    across long distances at O(N·H·W) per direction. The sub-frame position is a
    parabola through the aggregated cost's minimum. Missing (invalid) values cost 1.
    """

    name = "sgm"
    Params = SGMParams
    citation = (
        "Hirschmüller, Stereo processing by semiglobal matching and mutual information, "
        "IEEE TPAMI 30(2), 2008; " + PeakAggregator.OPTIONS
    )

    def context(self) -> None:
        return None  # scanlines cross the whole image

    def refine(self, curves: np.ndarray, scan: Scan) -> np.ndarray:
        p = self.params
        peak = np.where(np.isfinite(scan.best), scan.best, 0)
        tau = np.float32(p.saturation * max(float(np.median(peak)), 1e-12))
        cost = np.nan_to_num(curves, nan=0.0)
        cost = 1 - cost / (cost + tau)  # (N,H,W) float32 in (0, 1]
        total = sgm_aggregate(cost, p.p1, p.p2, p.directions)
        labels = np.argmin(total, axis=0)
        return refine_index(-total, labels, "parabolic")


def _scan(cost: np.ndarray, out: np.ndarray, p1: float, p2: float, reverse: bool) -> None:
    """Add one direction's aggregated cost along the last axis of (N, M, L) arrays."""
    length = cost.shape[2]
    order = range(length - 1, -1, -1) if reverse else range(length)
    prev = None
    p1, p2 = np.float32(p1), np.float32(p2)
    for x in order:
        c = cost[:, :, x]
        if prev is None:
            cur = c.copy()
        else:
            m = prev.min(axis=0)
            cand = np.minimum(prev, m + p2)
            np.minimum(cand[1:], prev[:-1] + p1, out=cand[1:])
            np.minimum(cand[:-1], prev[1:] + p1, out=cand[:-1])
            cur = c + cand - m
        out[:, :, x] += cur
        prev = cur


def sgm_aggregate(cost: np.ndarray, p1: float, p2: float, directions: int = 4) -> np.ndarray:
    """Sum over scan directions of the path costs (Hirschmüller 2008), (N,H,W) float32."""
    total = np.zeros_like(cost)
    for reverse in (False, True):
        _scan(cost, total, p1, p2, reverse)  # along rows
        _scan(cost.transpose(0, 2, 1), total.transpose(0, 2, 1), p1, p2, reverse)  # columns
    if directions == 8:
        for flip in (False, True):
            c = cost[:, :, ::-1] if flip else cost
            t = total[:, :, ::-1] if flip else total
            for reverse in (False, True):
                _diagonal(c, t, p1, p2, reverse)
    return total


def _diagonal(cost: np.ndarray, out: np.ndarray, p1: float, p2: float, reverse: bool) -> None:
    """Diagonal direction via shearing: row y shifted by y, then a column scan."""
    n, h, w = cost.shape
    sheared = np.full((n, h, w + h), np.float32(0), np.float32)
    acc = np.zeros_like(sheared)
    rows = np.arange(h)
    for y in rows:
        sheared[:, y, y : y + w] = cost[:, y]
    _scan(sheared.transpose(0, 2, 1), acc.transpose(0, 2, 1), p1, p2, reverse)
    for y in rows:
        out[:, y] += acc[:, y, y : y + w]
