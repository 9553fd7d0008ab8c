"""Sub-frame aggregators: a 3-point fit or a soft argmax around each pixel's focus peak."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from dffcore.core.components import Context
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.filters import pick
from dffcore.ops.peaks import (
    SubFrame,
    coarse_slices,
    half_size,
    masked_slices,
    refine_index,
    scan_slices,
    upsample,
)

from ._common import (
    HE,
    HU,
    SURH,
    CurveParams,
    Scan,
    SliceAggregator,
    curve_confidence,
)

#: from this local_sigma (px) on, the local estimate is computed at half resolution
COARSE_SIGMA = 2.0


class PeakAggregator(SliceAggregator):
    """Base of the sub-frame aggregators: smoothed volume, argmax, refinement, confidence.

    Holds one (N,H,W) float32 buffer besides the focus volume: the smoothed slices (none
    when ``sigma`` is 0, the guided filter off and every frame valid). Vectorised over
    pixels; ``all_in_focus`` is left to the runner (selection at the final index).
    """

    Params = CurveParams
    #: the papers of the shared options, appended to each subclass's own citation
    OPTIONS: ClassVar[str] = f"guided filter: {HE}, as in {SURH}; confidence: {HU}"

    def __call__(self, volume: FocusVolume, aligned: AlignedStack, ctx: Context) -> DepthResult:
        p = self.params
        in_place = (
            p.sigma == 0 and not p.guided_radius and not p.wls_lambda and volume.valid is None
        )
        curves = volume.data if in_place else np.empty_like(volume.data)
        votes = np.empty_like(volume.data) if p.wls_lambda and p.local_gate else None
        scan = self.scan(volume, aligned, ctx, out=None if in_place else curves, votes=votes)
        index = self.refine(curves, scan)
        confidence = curve_confidence(p.confidence, curves, scan)
        if votes is not None:  # the local estimate: the same votes, pooled by local_sigma only
            missing = volume.valid is not None
            if p.local_sigma >= COARSE_SIGMA:  # at half resolution: nothing finer is left
                # in the votes' own memory: coarse slice j fills about the first j/4 fine
                # slices, which have been read by then (no extra buffer for bands)
                size = (volume.n, *half_size(votes.shape))
                small = votes.reshape(-1)[: math.prod(size)].reshape(size)
                local_votes = coarse_slices(volume, p.local_sigma, votes, ctx.jobs)
                local_scan = scan_slices(
                    local_votes, small.shape, out=small, missing=missing, totals=False
                )
                local = upsample(self.refine(small, local_scan), index.shape)
            else:  # slice i read, then replaced
                local_votes = masked_slices(volume, p.local_sigma, votes, ctx.jobs)
                local_scan = scan_slices(
                    local_votes, votes.shape, out=votes, missing=missing, totals=False
                )
                local = self.refine(votes, local_scan)
            agree = np.abs(local - index) <= p.local_gate
            index = np.where(agree, 0.5 * (local + index), index).astype(np.float32)
        return DepthResult(index=index, confidence=confidence)

    def refine(self, curves: np.ndarray, scan: Scan) -> np.ndarray:
        """Fractional index (H,W) float32 from the curves (NaN = missing) and the argmax
        (``scan.index`` and ``scan.best`` only: the local estimate's scan has no totals)."""
        raise NotImplementedError


class _Fit(PeakAggregator):
    method: ClassVar[SubFrame]

    def refine(self, curves: np.ndarray, scan: Scan) -> np.ndarray:
        return refine_index(curves, scan.index, self.method)


class Gaussian(_Fit):
    """Gaussian through the smoothed focus curve's peak and its two neighbours (sub-frame).

    The standard sub-frame estimator of shape from focus: a parabola fitted to the
    logarithms of the three values, exact for a Gaussian focus curve. No offset at the
    stack's ends or next to a frame invalid at the pixel.
    """

    name = "gaussian"
    method = "gaussian"
    citation = (
        "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994 (Gaussian interpolation); "
        + PeakAggregator.OPTIONS
    )


class Parabolic(_Fit):
    """Parabola through the smoothed focus curve's peak and its two neighbours (sub-frame).

    Biased towards the sample for peaked curves (a focus curve is not a parabola); kept
    for comparison. No offset at the stack's ends or next to an invalid frame.
    """

    name = "parabolic"
    method = "parabolic"
    citation = (
        "3-point quadratic interpolation, the counterpart of the Gaussian interpolation of "
        "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994; " + PeakAggregator.OPTIONS
    )


class SoftArgmaxParams(CurveParams):
    temperature: float = Field(
        0.07,
        gt=0,
        description="softmax temperature on the curve divided by its per-pixel maximum "
        "(values in [0, 1]); smaller = closer to the argmax",
    )
    window: int = Field(
        0,
        ge=0,
        le=1000,
        description="expectation over ±window slices around the argmax; 0 = all slices"
        " (at most 1000 slices)",
    )


class SoftArgmax(PeakAggregator):
    """Expected slice under a softmax of the normalised focus curve (sub-frame).

    Each pixel's curve is divided by its maximum over the valid frames, so its values lie
    in [0, 1] whatever the focus measure's scale; slice ``i`` weighs
    exp((cᵢ − 1)/temperature) and the index is the weighted mean slice, over all slices
    or ±``window`` slices around the argmax (cut at the stack's ends). Missing frames
    weigh 0; a curve without a positive maximum gets the mean of its valid slices.
    """

    name = "softargmax"
    Params = SoftArgmaxParams
    citation = (
        "Kendall et al., End-to-end learning of geometry and context for deep stereo "
        "regression, ICCV 2017 (soft argmax); " + PeakAggregator.OPTIONS
    )

    def refine(self, curves: np.ndarray, scan: Scan) -> np.ndarray:
        n = curves.shape[0]
        k, best, window = scan.index, scan.best, self.params.window
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.float32(1 / self.params.temperature) / best
        scale[~(best > 0)] = 0  # flat or empty curves: equal weights
        windowed = 0 < window and 2 * window + 1 < n
        total = np.zeros(k.shape, np.float32)
        moment = np.zeros(k.shape, np.float32)  # of the slice offset from ``start``
        start = k if windowed else 0
        for d in range(-window, window + 1) if windowed else range(n):
            if windowed:
                j = k + d
                y = pick(curves, np.clip(j, 0, n - 1))
                y = np.where((j >= 0) & (j < n), y, np.float32(np.nan))
            else:
                y = curves[d]
            with np.errstate(invalid="ignore"):
                wgt = np.exp((y - best) * scale)  # NaN where missing or no valid frame
            wgt[np.isnan(wgt)] = 0
            total += wgt
            moment += wgt * np.float32(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, start + moment / total, k).astype(np.float32)
