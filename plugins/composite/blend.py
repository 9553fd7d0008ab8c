"""Linear blend of the two frames around the fractional depth index."""

from __future__ import annotations

import numpy as np

from dffcore.core.components import Compositor, Context, Params
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.convert import like, to_float32
from dffcore.ops.filters import pick


class Blend(Compositor):
    """Each pixel blended from the two frames around its fractional depth index.

    For a depth index d the pixel is (1 − t)·frame[⌊d⌋] + t·frame[⌈d⌉] with t = d − ⌊d⌋,
    which removes the quantisation steps of hard selection on slanted surfaces. A frame
    without data at a pixel (outside a warped frame) is skipped: the other one is used
    alone, and where neither has data the nearest frame that has is taken. Where no frame
    has data at all the pixel comes from the frame at the rounded index, like ``select``.
    """

    name = "blend"
    Params = Params
    citation = (
        "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994 (all-in-focus by "
        "selection), with linear interpolation between the bracketing slices"
    )

    def context(self) -> int:
        return 0  # per pixel

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> np.ndarray:
        frames = aligned.frames
        lo, hi, t = bracket(result.index, frames.shape[0], aligned.valid)
        a = pick(frames, lo)
        ctx.progress(1, 1)
        if not t.any():
            return a  # whole slices (e.g. after argmax): nothing to blend
        b = pick(frames, hi)
        return like(_mix(a, b, t), frames.dtype)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    fa, fb = to_float32(a), to_float32(b)
    return fa + t[..., None] * (fb - fa)


def blend_frames(
    frames: np.ndarray, index: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """The ``blend`` composite as float32 (H,W,C) (integers scaled to [0, 1])."""
    lo, hi, t = bracket(index, frames.shape[0], valid)
    a = pick(frames, lo)
    if not t.any():  # whole slices: the frames at ``lo`` as they are
        return to_float32(a)
    b = pick(frames, hi)
    return _mix(a, b, t)


def bracket(
    index: np.ndarray, n: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two frames around a fractional index and the blend weight of the upper one.

    Parameters
    ----------
    index : ndarray
        ``(H,W)`` fractional slice index (NaN counts as 0; clipped to ``[0, n-1]``).
    n : int
        Number of frames.
    valid : ndarray, optional
        ``(n,H,W)`` bool, False where a frame has no data.

    Returns
    -------
    lo, hi : ndarray
        ``(H,W)`` intp frame indices, ``lo <= hi``, both valid wherever any frame is.
    t : ndarray
        ``(H,W)`` float32 in [0, 1]: the pixel is ``(1 - t)·frame[lo] + t·frame[hi]``.
    """
    d = np.clip(np.nan_to_num(index.astype(np.float32), nan=0.0), 0, n - 1)
    lo = np.floor(d).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    t = (d - lo).astype(np.float32)
    hi = np.where(t > 0, hi, lo)  # exact slices: both the same frame
    if valid is None:
        return lo, hi, t
    ok_lo = pick(valid, lo)
    ok_hi = pick(valid, hi)
    # one side without data: take the other alone
    only_lo = ok_lo & ~ok_hi
    only_hi = ok_hi & ~ok_lo
    hi[only_lo] = lo[only_lo]
    lo[only_hi] = hi[only_hi]
    t[only_lo | only_hi] = 0.0
    neither = ~(ok_lo | ok_hi)
    if neither.any():  # the nearest frame with data, searched on those pixels only
        ys, xs = np.nonzero(neither)
        v = valid[:, ys, xs]  # (n, M)
        dm = d[ys, xs]
        k = np.arange(n, dtype=np.float32)[:, None]
        dist = np.where(v, np.abs(k - dm), np.inf)
        best = np.argmin(dist, axis=0)  # ties go to the lower frame
        has = np.isfinite(dist[best, np.arange(best.size)])
        nearest = np.where(has, best, np.rint(dm).astype(np.intp))
        lo[ys, xs] = nearest
        hi[ys, xs] = nearest
        t[ys, xs] = 0.0
    return lo, hi, t
