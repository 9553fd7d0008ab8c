"""Sub-frame location of the focus peak, shared by aggregators and regularisers.

Given a focus curve's values at a chosen slice ``k`` and its neighbours, a 3-point fit
gives the fractional offset of the true peak: ``parabolic`` fits a parabola to the
values, ``gaussian`` fits a Gaussian (a parabola to their logarithms), the standard
sub-frame estimator of shape from focus (Nayar & Nakagawa 1994; Subbarao & Choi 1993).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from dffcore.core.data import FocusVolume
from dffcore.ops.filters import gaussian, pick
from dffcore.ops.parallel import ordered_map

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

    ``best`` is -inf and ``index`` (int32) 0 where no frame is valid; ``total`` and
    ``count`` are the sum and number of the valid values (None when the scan was asked
    for no totals).
    """

    best: np.ndarray
    index: np.ndarray
    total: np.ndarray | None
    count: np.ndarray | None


#: stacks of up to this many slices keep the running index in uint8 (a masked copy of a
#: quarter of the bytes of an int32 one: about 4x faster)
_SMALL_INDEX = 256


def scan_slices(
    slices: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    out: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    missing: bool = True,
    totals: bool = True,
) -> Scan:
    """Streaming argmax over ``slices`` (N of them, (H,W) each); stores them in ``out``.

    Ties go to the first slice; missing (NaN) values never win. ``missing=False`` says
    no slice holds NaN (every frame valid everywhere), which skips their bookkeeping;
    ``totals=False`` skips the sum and count of the values (``Scan.total`` and
    ``Scan.count`` are then None).
    """
    n, h, w = shape
    best = np.full((h, w), -np.inf, np.float32)
    index = np.zeros((h, w), np.uint8 if n <= _SMALL_INDEX else np.int32)
    step = np.empty_like(index)
    total = np.zeros((h, w), np.float32) if totals else None
    count = np.zeros((h, w), np.float32) if totals and missing else None
    better = np.empty((h, w), bool)
    ok = np.empty((h, w), bool)
    # OpenCV's masked copy and add take the bool masks as 0/1 bytes: about twice as fast
    # as numpy's where= (the same float32 arithmetic, so the same sums); OpenCV reads a
    # 1x1 array next to a number as a scalar, so 1x1 slices take numpy's way
    better8, ok8 = better.view(np.uint8), ok.view(np.uint8)
    for i, s in enumerate(slices):
        if out is not None:
            out[i] = s
        np.greater(s, best, out=better)  # NaN is never greater
        np.fmax(best, s, out=best)  # fmax ignores NaN
        step.fill(i)
        cv2.copyTo(step, better8, index)  # index = i where better
        if total is None:
            pass
        elif not missing:
            total += s
        elif s.dtype == np.float32 and s.flags.c_contiguous and s.shape == (h, w) and h * w > 1:
            np.isfinite(s, out=ok)
            cv2.add(total, s, dst=total, mask=ok8)
            cv2.add(count, 1.0, dst=count, mask=ok8)
        else:
            np.isfinite(s, out=ok)
            np.add(total, s, out=total, where=ok)
            count += ok
        if progress is not None:
            progress(i + 1, n)
    if totals and not missing:
        count = np.full((h, w), n, np.float32)
    return Scan(best, index.astype(np.int32, copy=False), total, count)


def masked_slices(
    volume: FocusVolume, sigma: float, data: np.ndarray | None = None, jobs: int = 1
) -> Iterator[np.ndarray]:
    """Each slice of ``data`` (default: the volume's) Gaussian-smoothed with the frames'
    masks (σ 0: as is), NaN where its frame has no data; ``jobs`` threads smooth the
    slices (in order, two per thread ahead of the consumer, which may then overwrite
    the slices of ``data`` already yielded)."""
    data = volume.data if data is None else data

    def smooth(i: int) -> np.ndarray:
        valid = None if volume.valid is None else volume.valid[i]
        s = gaussian(data[i], sigma, valid)
        if valid is None or sigma > 0:
            return s  # a masked Gaussian is NaN outside its frame already
        return np.where(valid, s, np.float32(np.nan))

    if jobs <= 1 or sigma <= 0:
        yield from map(smooth, range(data.shape[0]))
    else:
        yield from ordered_map(smooth, range(data.shape[0]), jobs, ahead=2 * jobs)


def half_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, columns) of an image of ``shape`` (…, H, W) one pyramid level down."""
    h, w = shape[-2:]
    return (h + 1) // 2, (w + 1) // 2


def coarse_slices(
    volume: FocusVolume, sigma: float, data: np.ndarray | None = None, jobs: int = 1
) -> Iterator[np.ndarray]:
    """Each slice of ``data`` (default: the volume's) Gaussian-smoothed by ``sigma`` (px of
    the full image) with the frames' masks, at half resolution (:func:`half_size`).

    A pyramid step (``cv2.pyrDown``: a 5-tap binomial of σ 1 px, then every other pixel)
    followed by a Gaussian of σ' = √(σ² − 1)/2 at half resolution is a Gaussian of about
    σ at full resolution, at a quarter of the cost or less (the kernel is half as long on a
    quarter of the pixels). Masked as in :func:`dffcore.ops.filters.gaussian` (normalised
    convolution); a coarse pixel is NaN where less than half of its footprint had data.
    ``jobs`` threads smooth the slices, in order (two per thread ahead of the consumer).
    """
    data = volume.data if data is None else data
    hs, ws = half_size(data.shape)
    fine = math.sqrt(max(sigma * sigma - 1.0, 0.0)) / 2

    def down(image: np.ndarray) -> np.ndarray:
        small = cv2.pyrDown(image, dstsize=(ws, hs), borderType=cv2.BORDER_REFLECT)
        return gaussian(small, fine) if fine > 0 else small

    def smooth(i: int) -> np.ndarray:
        image = np.ascontiguousarray(data[i], np.float32)
        valid = None if volume.valid is None else volume.valid[i]
        if valid is None or valid.all():
            return down(image)
        share = cv2.pyrDown(
            valid.astype(np.float32), dstsize=(ws, hs), borderType=cv2.BORDER_REFLECT
        )
        num = down(np.where(valid, image, np.float32(0)))
        den = gaussian(share, fine) if fine > 0 else share.copy()
        np.maximum(den, np.float32(1e-6), out=den)
        out = np.divide(num, den, out=num)
        out[share < 0.5] = np.nan
        return out

    if jobs <= 1:
        yield from map(smooth, range(data.shape[0]))
    else:
        yield from ordered_map(smooth, range(data.shape[0]), jobs, ahead=2 * jobs)


#: :func:`upsample` interpolates where the nearest coarse value differs from the bilinear
#: one by less than this (in the image's units: slices for a depth index)
JUMP = 0.5


def upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (H/2, W/2) float32 image on the grid of :func:`coarse_slices` (its pixel j at
    full-resolution pixel 2j) back at ``shape`` (H, W).

    Bilinear where that stays within :data:`JUMP` of the nearest coarse value, the
    nearest value elsewhere: a jump (e.g. of a depth index between two surfaces) is kept
    sharp instead of being blended into values between its sides.
    """
    h, w = shape
    half = np.array([[0.5, 0, 0], [0, 0.5, 0]], np.float64)  # pixel x of the image: x/2
    flags = cv2.WARP_INVERSE_MAP
    border = cv2.BORDER_REPLICATE
    lin = cv2.warpAffine(image, half, (w, h), flags=flags | cv2.INTER_LINEAR, borderMode=border)
    near = cv2.warpAffine(image, half, (w, h), flags=flags | cv2.INTER_NEAREST, borderMode=border)
    return np.where(np.abs(lin - near) < JUMP, lin, near)
