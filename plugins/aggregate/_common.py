"""What the aggregators share: the filtered focus slices, the streaming peak scan, confidence.

Conventions of every aggregator built on :class:`SliceAggregator`:

- each focus slice is smoothed spatially by a Gaussian (``sigma``, kernel 6σ+1) that
  ignores pixels where the frame is invalid (normalised convolution,
  :func:`dffcore.ops.filters.gaussian`), optionally followed by a guided filter;
- a frame invalid at a pixel is *missing* there: its value is NaN, it never wins the
  argmax and never enters a fit or an expectation;
- confidences lie in [0, 1] and are multiplied by the fraction of frames valid at the
  pixel (a curve seen in part is trusted less).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field

from dffcore.core.components import Aggregator, Context, Params
from dffcore.core.data import AlignedStack, FocusVolume
from dffcore.ops.convert import to_float32, to_grey
from dffcore.ops.filters import (
    gaussian,
    guided_filter,
    mean_edge,
    opencv_threads,
    pick,
    take_frames,
    wls_smoother,
)
from dffcore.ops.parallel import ordered_map
from dffcore.ops.peaks import Scan, masked_slices, scan_slices

Confidence = Literal["prominence", "ratio", "curvature"]
HE = "He, Sun & Tang, Guided image filtering, ECCV 2010 (IEEE TPAMI 35(6), 2013)"
SURH = (
    "Surh, Jeon, Park, Im, Ha & Kweon, Noise robust depth from focus using a ring difference "
    "filter, CVPR 2017"
)
HU = (
    "Hu & Mordohai, A quantitative evaluation of confidence measures for stereo vision, "
    "IEEE TPAMI 34(11), 2012"
)


class CurveParams(Params):
    """Options every sub-frame aggregator shares.

    Defaults measured on ``dffcore.eval.synth`` stacks (scenes default, planes, slant, steps;
    8 and 24 slices; noise 0 and 3; ``log`` focus). Mean error of the Gaussian fit for
    σ = 2 / 3 / 5 / 7: 0.65 / 0.61 / 0.60 / 0.62 slices; σ = 3 beats σ = 5 on 9 of the 16
    cases (those with depth edges, where wide smoothing blurs the edge), larger σ wins on
    noisy or smooth surfaces only. ``prominence`` ranked the errors best (see
    :func:`curve_confidence`).
    """

    sigma: float = Field(
        3.0,
        ge=0,
        le=200,
        description="Gaussian σ smoothing each focus slice first (kernel 6σ+1); 0 = off"
        " (at most 200 px)",
    )
    guided_radius: int = Field(
        0,
        ge=0,
        le=1000,
        description="guided-filter radius (px) aggregating each slice (after the Gaussian; "
        "set sigma 0 to use it alone), guided by the preliminary all-in-focus image; 0 = off"
        " (at most 1000 px)",
    )
    guided_eps: float = Field(
        1e-3, gt=0, description="guided-filter regulariser ε, in squared grey levels of [0, 1]"
    )
    wls_lambda: float = Field(
        0.0,
        ge=0,
        description="edge-aware aggregation (after the Gaussian): each pixel's curve is "
        "normalised to sum 1, then every slice is smoothed by the fast global smoother "
        "guided by the preliminary all-in-focus image, with this λ (reach ≈ √λ px); 0 = off",
    )
    wls_sigma: float = Field(
        1.0,
        gt=0,
        description="edge strength at which the edge-aware aggregation stops, in units of "
        "the guide's mean colour difference between neighbouring pixels (so it adapts to "
        "busy and to smooth images): stronger guide edges keep their sides apart",
    )
    local_gate: float = Field(
        0.0,
        ge=0,
        description="with wls_lambda: where the local estimate (the normalised curves smoothed "
        "by local_sigma only) lies within this many slices of the edge-aware one, the depth "
        "is their mean; elsewhere (halos at strong edges, textureless areas) the edge-aware "
        "one; 0 = off",
    )
    local_sigma: float = Field(
        5.0,
        gt=0,
        le=200,
        description="Gaussian σ (px) pooling the local estimate's curves (at most 200 px); "
        "from 2 px on at half resolution (a pyramid step, then σ' = √(σ² − 1)/2), the local "
        "index brought back bilinearly except across jumps of half a slice or more",
    )
    confidence: Confidence = Field(
        "prominence",
        description="prominence: (max − mean)/max; ratio: 1 − second local peak/peak (≥ 2 "
        "slices away); curvature: (2y₀ − y₋ − y₊)/(2y₀) at the peak",
    )


class SliceAggregator(Aggregator):
    """Base of the aggregators: filtered slices and a streaming argmax over them."""

    def context(self) -> int | None:
        """The Gaussian's 3σ and the guided filter's two windows; global with ``wls_lambda``."""
        p = self.params
        if getattr(p, "wls_lambda", 0):
            return None
        return math.ceil(3 * p.sigma) + 2 * getattr(p, "guided_radius", 0) + 1

    def slices(
        self,
        volume: FocusVolume,
        aligned: AlignedStack,
        jobs: int = 1,
        votes: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Each focus slice smoothed (``sigma``, then the guided filter when its radius > 0,
        or the edge-aware aggregation when ``wls_lambda`` > 0).

        Pixels where the frame is invalid are NaN. A slice may be the volume's own
        array (sigma 0, every pixel valid, no guided filter): never write to it. With
        ``wls_lambda``, an (N,H,W) ``votes`` buffer keeps the normalised curves.
        """
        if getattr(self.params, "wls_lambda", 0):
            yield from self._edge_aware(volume, aligned, votes, jobs)
            return
        radius = getattr(self.params, "guided_radius", 0)
        guide = preliminary_guide(volume, aligned) if radius else None

        def smooth(i: int) -> np.ndarray:
            valid = None if volume.valid is None else volume.valid[i]
            s = gaussian(volume.data[i], self.params.sigma, valid)
            if guide is not None:
                src = s if valid is None else np.where(valid, s, 0)
                s = guided_filter(guide, src, radius, self.params.guided_eps, valid)
            if valid is not None:
                s = np.where(valid, s, np.float32(np.nan))
            return s

        yield from ordered_map(smooth, range(volume.n), jobs)

    def _edge_aware(
        self,
        volume: FocusVolume,
        aligned: AlignedStack,
        votes: np.ndarray | None = None,
        jobs: int = 1,
    ) -> Iterator[np.ndarray]:
        """Gaussian-smoothed slices normalised per pixel, then edge-aware smoothed.

        Normalising makes every pixel one vote spread over its slices, so a strong edge's
        focus response cannot outweigh a weakly textured neighbour; the fast global
        smoother (:func:`dffcore.ops.filters.wls_smoother`) then pools votes along the guide's
        regions and not across its edges (cost-volume filtering, Hosni et al. 2013).
        Holds one (N,H,W) float32 buffer of votes (``votes`` if given, which then holds
        them afterwards); slices are smoothed one at a time on each of ``jobs`` threads.
        """
        p = self.params
        buf = np.empty(volume.data.shape, np.float32) if votes is None else votes
        total = np.zeros(volume.data.shape[1:], np.float32)
        for i in range(volume.n):
            valid = None if volume.valid is None else volume.valid[i]
            buf[i] = gaussian(volume.data[i], p.sigma, valid)
            if valid is not None and not np.isfinite(buf[i]).all():  # one pass if all finite
                np.nan_to_num(buf[i], copy=False, nan=0.0)
            total += buf[i]
        buf /= np.maximum(total, np.float32(1e-12))
        # guide: selection at the argmax of the smoothed slices (a streaming argmax: numpy's
        # argmax along the first axis of an (N,H,W) array is several times slower)
        peak = scan_slices(buf, buf.shape, missing=False, totals=False).index
        guide = to_float32(take_frames(aligned.frames, peak, aligned.valid))
        smoother = wls_smoother(guide, p.wls_lambda, p.wls_sigma * mean_edge(guide))

        def smooth(i: int) -> np.ndarray:
            s = smoother(buf[i])  # a new array
            if volume.valid is not None:
                s[~volume.valid[i]] = np.nan
            return s

        # one OpenCV thread per call: the smoother's last bits depend on how OpenCV splits
        # a call, so results stay the same whatever the cores and the timing
        with opencv_threads(1):
            yield from ordered_map(smooth, range(volume.n), jobs, ahead=2 * jobs)

    def scan(
        self,
        volume: FocusVolume,
        aligned: AlignedStack,
        ctx: Context,
        out: np.ndarray | None = None,
        votes: np.ndarray | None = None,
    ) -> Scan:
        """Streaming argmax over :meth:`slices`; stores the slices in ``out`` if given.

        Ties go to the first slice; missing (NaN) values never win.
        """
        slices = self.slices(volume, aligned, ctx.jobs, votes)
        missing = volume.valid is not None  # slices are NaN only where a frame has no data
        return scan_slices(slices, volume.data.shape, out, ctx.progress, missing=missing)


def preliminary_guide(
    volume: FocusVolume, aligned: AlignedStack, colour: bool = False
) -> np.ndarray:
    """All-in-focus image (grey, or RGB in [0, 1]) by selection at the raw volume's argmax."""
    missing = volume.valid is not None
    slices = masked_slices(volume, 0.0)
    index = scan_slices(slices, volume.data.shape, missing=missing, totals=False).index
    picked = take_frames(aligned.frames, index)
    return to_float32(picked) if colour else to_grey(picked)


def prominence(scan: Scan, n: int) -> np.ndarray:
    """(max − mean) / max of the valid values times the valid fraction, in [0, 1]."""
    mean = scan.total / np.maximum(scan.count, 1)
    best = scan.best
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(best > 0, (best - mean) / best, 0).astype(np.float32)
    confidence *= scan.count / n
    return np.clip(confidence, 0, 1)


def _at(curves: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``curves[idx[y, x], y, x]`` with ``idx`` clipped to the stack."""
    idx = np.clip(idx, 0, curves.shape[0] - 1).astype(np.intp)
    return pick(curves, idx)


def curve_confidence(kind: Confidence, curves: np.ndarray, scan: Scan) -> np.ndarray:
    """Confidence of each pixel's focus curve (``curves`` (N,H,W), NaN = missing), in [0, 1].

    - ``prominence``: (y₀ − mean)/y₀, y₀ the peak value (the classic argmax measure);
    - ``ratio``: 1 − y₂/y₀, y₂ the highest *local* peak at least 2 slices from the peak
      (0 if there is none): the peak-ratio measure (PKR) of Hu & Mordohai 2012;
    - ``curvature``: (2y₀ − y₋ − y₊)/(2y₀), the normalised second difference at the peak
      (the curvature measure, CUR, of Hu & Mordohai 2012); a missing neighbour (the
      stack's end or an invalid frame) is replaced by the other one, none gives 0.

    Each is 0 where the peak is not positive and is multiplied by the valid fraction.
    Prominence and ratio are low where a curve is noise only (a textureless region);
    curvature is not: a noise spike is as sharp as a focus peak, and a true peak spans
    more slices in a dense stack, so curvature ranks errors well only in sparse stacks
    (it ranks sub-frame errors on smooth surfaces best there). On the synthetic scenes,
    prominence separates large errors best (ROC AUC of error > 1 slice: 0.73, ratio 0.67,
    curvature 0.46), hence the default.
    """
    n = curves.shape[0]
    if kind == "prominence":
        return prominence(scan, n)
    y0, k = scan.best, scan.index
    if kind == "ratio":
        second = np.zeros_like(y0)
        for i in range(n):
            s = curves[i]
            peak = np.abs(k - i) >= 2
            if i > 0:
                peak &= ~(curves[i - 1] > s)
            if i < n - 1:
                peak &= ~(curves[i + 1] > s)
            np.fmax(second, np.where(peak, s, 0), out=second)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = 1 - second / y0
    else:
        lo = np.where(k > 0, _at(curves, k - 1), np.nan)
        hi = np.where(k < n - 1, _at(curves, k + 1), np.nan)
        lo, hi = np.where(np.isnan(lo), hi, lo), np.where(np.isnan(hi), lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = (2 * y0 - lo - hi) / (2 * y0)
    conf = np.where((y0 > 0) & np.isfinite(conf), conf, 0).astype(np.float32)
    conf *= scan.count / n
    return np.clip(conf, 0, 1)
