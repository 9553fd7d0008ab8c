"""Sub-frame location of the focus peak, shared by aggregators and regularisers.

Given a focus curve's values at a chosen slice ``k`` and its neighbours, a 3-point fit
gives the fractional offset of the true peak: ``parabolic`` fits a parabola to the
values, ``gaussian`` fits a Gaussian (a parabola to their logarithms), the standard
sub-frame estimator of shape from focus (Nayar & Nakagawa 1994; Subbarao & Choi 1993).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SubFrame = Literal["none", "parabolic", "gaussian"]


def subframe_offset(
    prev: np.ndarray, peak: np.ndarray, nxt: np.ndarray, method: SubFrame
) -> np.ndarray:
    """Offset in [-0.5, 0.5] of the peak from the middle sample; 0 where no peak is fitted."""
    if method == "none":
        return np.zeros(np.shape(peak), np.float32)
    prev, peak, nxt = (np.asarray(v, np.float32) for v in (prev, peak, nxt))
    if method == "gaussian":
        tiny = np.float32(1e-12)
        prev, peak, nxt = (np.log(np.maximum(v, tiny)) for v in (prev, peak, nxt))
    denom = prev - 2 * peak + nxt
    with np.errstate(divide="ignore", invalid="ignore"):
        off = 0.5 * (prev - nxt) / denom
    off = np.where((denom < 0) & np.isfinite(off), off, 0)
    return np.clip(off, -0.5, 0.5).astype(np.float32)


def refine_index(curves: np.ndarray, labels: np.ndarray, method: SubFrame) -> np.ndarray:
    """Fractional index: ``labels`` (H,W) plus the fitted offset on ``curves`` (N,H,W).

    At the first and last slice there is no neighbour on one side: no offset there.
    Non-finite curve values (invalid frames) give no offset either.
    """
    n = curves.shape[0]
    k = np.clip(labels.astype(np.intp), 0, n - 1)
    if method == "none" or n < 3:
        return k.astype(np.float32)
    lo, hi = np.clip(k - 1, 0, n - 1), np.clip(k + 1, 0, n - 1)

    def at(idx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(curves, idx[None], axis=0)[0]

    off = subframe_offset(at(lo), at(k), at(hi), method)
    off[(k == 0) | (k == n - 1)] = 0
    return (k + off).astype(np.float32)
