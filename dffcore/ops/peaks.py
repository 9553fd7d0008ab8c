"""Sub-frame location of the focus peak, shared by aggregators and regularisers.

Given a focus curve's values at a chosen slice ``k`` and its neighbours, a 3-point fit
gives the fractional offset of the true peak: ``parabolic`` fits a parabola to the
values, ``gaussian`` fits a Gaussian (a parabola to their logarithms), the standard
sub-frame estimator of shape from focus (Nayar & Nakagawa 1994; Subbarao & Choi 1993).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dffcore.core.data import FocusVolume
from dffcore.ops.filters import gaussian, pick

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
        return pick(curves, idx)

    off = subframe_offset(at(lo), at(k), at(hi), method)
    off[(k == 0) | (k == n - 1)] = 0
    return (k + off).astype(np.float32)


@dataclass
class Scan:
    """Result of one pass over the slices: per pixel, the highest value and its slice.

    ``best`` is -inf and ``index`` 0 where no frame is valid; ``total`` and ``count``
    are the sum and number of the valid values.
    """

    best: np.ndarray
    index: np.ndarray
    total: np.ndarray
    count: np.ndarray


def scan_slices(
    slices: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    out: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    missing: bool = True,
) -> Scan:
    """Streaming argmax over ``slices`` (N of them, (H,W) each); stores them in ``out``.

    Ties go to the first slice; missing (NaN) values never win. ``missing=False`` says
    no slice holds NaN (every frame valid everywhere), which skips their bookkeeping.
    """
    n, h, w = shape
    best = np.full((h, w), -np.inf, np.float32)
    index = np.zeros((h, w), np.int32)
    total = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    better = np.empty((h, w), bool)
    step = np.empty((h, w), np.int32)
    for i, s in enumerate(slices):
        if out is not None:
            out[i] = s
        np.greater(s, best, out=better)  # NaN is never greater
        np.fmax(best, s, out=best)  # fmax ignores NaN
        np.subtract(np.int32(i), index, out=step)  # index += better * (i - index): 4x
        step *= better  # faster than np.copyto(index, i, where=better)
        index += step
        if missing:
            ok = np.isfinite(s)
            total += np.where(ok, s, 0)
            count += ok
        else:
            total += s
        if progress is not None:
            progress(i + 1, n)
    if not missing:
        count.fill(n)
    return Scan(best, index, total, count)


def masked_slices(
    volume: FocusVolume, sigma: float, data: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Each slice of ``data`` (default: the volume's) Gaussian-smoothed with the frames'
    masks (σ 0: as is), NaN where its frame has no data."""
    data = volume.data if data is None else data
    for i in range(data.shape[0]):
        valid = None if volume.valid is None else volume.valid[i]
        s = gaussian(data[i], sigma, valid)
        yield s if valid is None else np.where(valid, s, np.float32(np.nan))
