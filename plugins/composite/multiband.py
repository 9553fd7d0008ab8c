"""Laplacian-pyramid (multi-band) fusion of the frames, weighted around the final depth."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from dffcore.core.components import Compositor, Context, Params
from dffcore.core.data import AlignedStack, DepthResult, FocusVolume
from dffcore.ops.convert import like, to_float32
from dffcore.ops.filters import pick
from dffcore.ops.peaks import masked_slices, scan_slices

from .blend import blend_frames

#: the depth weight is cut to exactly 0 beyond this many ``spread`` from the index
_TRUNCATE = 3.0
#: the coarsest automatic pyramid level has its shorter side at least this long
_MIN_SIDE = 8
#: added to the normalised focus measure so textureless pixels keep a (depth) weight
_FOCUS_FLOOR = 1e-3


class MultibandParams(Params):
    weights: Literal["depth", "sharpest", "focus", "both"] = Field(
        "depth",
        description=(
            "per-frame weights: 'depth' = Gaussian in slices around the depth index; "
            "'sharpest' = the same around each pixel's sharpest frame (argmax of the focus "
            "volume smoothed by sharpest_sigma), ignoring the depth; 'focus' = the focus "
            "measure normalised per pixel (to the sharpest frame); 'both' = depth × focus"
        ),
    )
    sharpest_sigma: float = Field(
        1.0,
        ge=0,
        le=200,
        description="weights 'sharpest': Gaussian σ (px) smoothing each focus slice"
        " (at most 200 px)",
    )
    spread: float = Field(
        0.5,
        ge=0.2,
        le=100,
        description=(
            "σ of the depth weight exp(−(k − d)²/2σ²), in slices; cut to 0 beyond 3σ "
            "(σ ≥ 0.2, so a frame within half a slice of every depth keeps a weight). "
            "Larger hides depth errors but blends in slightly defocused frames"
        ),
    )
    focus_power: float = Field(
        1.0,
        gt=0,
        le=16,
        description="exponent of the normalised focus weight (weights 'focus' and 'both')",
    )
    levels: int | None = Field(
        None,
        ge=1,
        le=20,
        description=(
            "pyramid levels including full resolution; none = automatic: halve while the "
            f"shorter side stays at least {_MIN_SIDE} px"
        ),
    )


class Multiband(Compositor):
    """Laplacian-pyramid fusion of the frames, weighted around the final depth (seamless).

    Each frame gets a weight per pixel: a soft one-hot around the final fractional depth
    index d, w_k ∝ exp(−(k − d)²/2σ²) (``spread`` σ), optionally times the frame's focus
    measure normalised per pixel. With ``weights: sharpest`` d is instead each pixel's
    sharpest frame (the classic focus-stacking choice): a regularised depth map is smooth on
    purpose, but the all-in-focus image wants every pixel from the frame where it is
    sharpest, which the multiband blend then joins without seams. Weights are normalised to
    sum 1 per pixel; frames without data at a pixel (outside a warped frame) get weight 0
    there. Each level of a frame's Laplacian pyramid is multiplied by the same level of its
    weights' Gaussian pyramid and accumulated; the sum is collapsed. Fine detail thus
    follows the depth sharply while coarse bands are blended over wide areas, so a switch of
    frame leaves no visible seam (Burt & Adelson's multiresolution spline). Frames are
    processed one at a time per thread (one frame's pyramid plus an accumulator in memory);
    frames with weight 0 everywhere are skipped. Float32 inside; the result is clipped to
    the stack's range and returned in its dtype.
    """

    name = "multiband"
    Params = MultibandParams
    citation = (
        "Burt & Adelson, A multiresolution spline with application to image mosaics, "
        "ACM TOG 2(4), 1983; weighting as in Mertens, Kautz & Van Reeth, Exposure fusion, "
        "Pacific Graphics 2007 (enfuse)"
    )

    def __call__(
        self, result: DepthResult, volume: FocusVolume, aligned: AlignedStack, ctx: Context
    ) -> np.ndarray:
        frames = aligned.frames
        n, h, w = frames.shape[:3]
        p = self.params
        index = result.index
        if p.weights == "sharpest":
            index = sharpest_frame(volume, p.sharpest_sigma, ctx.jobs)
        weight = frame_weights(
            index,
            n,
            aligned.valid,
            None if p.weights in ("depth", "sharpest") else volume.data,
            mode="depth" if p.weights == "sharpest" else p.weights,
            spread=p.spread,
            focus_power=p.focus_power,
        )
        levels = min(p.levels or auto_levels(h, w), max_levels(h, w))
        fallback = None
        if aligned.valid is not None and not aligned.valid.all():
            fallback = blend_frames(frames, index, aligned.valid)
        out = pyramid_fuse(
            frames,
            weight,
            levels,
            valid=aligned.valid if fallback is not None else None,
            fallback=fallback,
            jobs=ctx.jobs,
            progress=ctx.progress,
        )
        if not np.issubdtype(frames.dtype, np.integer):  # keep floats inside the stack's range
            out = np.clip(out, float(frames.min()), float(frames.max()))
        return like(out, frames.dtype)


def sharpest_frame(volume: FocusVolume, sigma: float, jobs: int = 1) -> np.ndarray:
    """(H,W) float32: per pixel, the frame whose focus measure (Gaussian-smoothed, on
    ``jobs`` threads) is highest among the frames with data there."""
    missing = volume.valid is not None
    slices = masked_slices(volume, sigma, jobs=jobs)
    scan = scan_slices(slices, volume.data.shape, missing=missing, totals=False)
    return scan.index.astype(np.float32)


def auto_levels(h: int, w: int) -> int:
    """Pyramid levels (full resolution included) while the shorter side stays >= 8 px."""
    return max(1, int(math.log2(max(min(h, w), 1) / _MIN_SIDE)) + 1)


def max_levels(h: int, w: int) -> int:
    """Most pyramid levels an (h, w) image has: halving down to a single pixel."""
    return max(1, int(math.log2(max(min(h, w), 1))) + 1)


def frame_weights(
    index: np.ndarray,
    n: int,
    valid: np.ndarray | None = None,
    focus: np.ndarray | None = None,
    *,
    mode: str = "depth",
    spread: float = 0.5,
    focus_power: float = 1.0,
) -> Callable[[int], np.ndarray | None]:
    """A function ``k -> (H,W) float32`` normalised weight of frame ``k``, None if all 0.

    ``mode`` 'depth': w_k ∝ exp(−(k − d)²/2σ²), cut to 0 beyond 3σ; 'focus': the focus
    measure divided by its per-pixel maximum over the frames (plus a small floor, so
    textureless pixels average the frames); 'both': the product. Frames without data at
    a pixel get weight 0 there (unless no frame has data there). The weights of all
    frames sum to 1 at every pixel. Only the per-pixel sum is kept: each call computes
    one frame's weight, on the rows and columns where it can be non-zero. Whole-slice
    depths with a spread that cuts the neighbours give one-hot weights
    (:func:`one_hot_weights`: the same values, without the Gaussians).
    """
    if mode not in ("depth", "focus", "both"):
        raise ValueError(f"unknown weights {mode!r}")
    h, w = index.shape
    d = np.clip(np.nan_to_num(index.astype(np.float32), nan=0.0), 0, n - 1)
    none_valid = None
    if valid is not None:
        none_valid = ~valid.any(axis=0)  # no data anywhere: all frames count there
        if not none_valid.any():
            none_valid = None
    scale = None
    if mode != "depth":
        if focus is None:
            raise ValueError(f"weights {mode!r} need the focus volume")
        peak = np.zeros((h, w), np.float32)
        for k in range(n):
            f = focus[k] if valid is None else np.where(valid[k], focus[k], 0)
            np.fmax(peak, f, out=peak)  # NaN (no data) counts as nothing
        scale = 1.0 / np.maximum(peak, np.float32(1e-12))
    inv2s2 = -0.5 / (spread * spread)
    cut = _TRUNCATE * spread
    floor = float(np.exp(-0.5 * _TRUNCATE * _TRUNCATE)) * 0.999
    row_lo, row_hi = d.min(axis=1), d.max(axis=1)
    col_lo, col_hi = d.min(axis=0), d.max(axis=0)

    def window(k: int) -> tuple[slice, slice] | None:
        """Rows and columns holding every pixel within the cut of frame ``k``."""
        if mode == "focus":
            return slice(0, h), slice(0, w)
        rows = np.flatnonzero((row_lo <= k + cut) & (row_hi >= k - cut))
        cols = np.flatnonzero((col_lo <= k + cut) & (col_hi >= k - cut))
        if rows.size == 0 or cols.size == 0:
            return None
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def depth_weight(dk: np.ndarray) -> np.ndarray:
        """exp(−dk²/2σ²) as float32, exactly 0 beyond the cut."""
        arg = cv2.multiply(dk, dk, scale=inv2s2)
        np.maximum(arg, np.float32(-30.0), out=arg)  # keeps exp off its slow path
        wk = cv2.exp(arg)
        cv2.threshold(wk, floor, 0, cv2.THRESH_TOZERO, dst=wk)
        return wk

    if mode == "depth" and whole_slices(d, depth_weight):
        return one_hot_weights(d, n, valid, none_valid)

    def raw(k: int, win: tuple[slice, slice]) -> np.ndarray:
        if mode != "focus":
            wk = depth_weight(d[win] - np.float32(k))
        if mode != "depth":
            f = cv2.multiply(np.fmax(focus[k][win], np.float32(0)), scale[win])
            if focus_power != 1:
                cv2.pow(f, focus_power, dst=f)
            f += np.float32(_FOCUS_FLOOR)
            wk = f if mode == "focus" else cv2.multiply(wk, f)
        if valid is not None:
            ok = valid[k][win] if none_valid is None else valid[k][win] | none_valid[win]
            wk[~ok] = 0
        return wk

    total = np.zeros((h, w), np.float32)
    if mode == "depth":  # only the frames ⌊d⌋ − m … ⌊d⌋ + m + 1 can be within the cut
        lo = np.floor(d).astype(np.intp)
        m = math.ceil(cut)
        for j in range(-m, m + 2):
            k = lo + j
            inside = (k >= 0) & (k < n)
            wk = depth_weight(d - k.astype(np.float32))
            wk[~inside] = 0
            if valid is not None:
                ok = pick(valid, np.clip(k, 0, n - 1))
                wk[~(ok if none_valid is None else ok | none_valid)] = 0
            total += wk
    else:
        for k in range(n):
            total += raw(k, (slice(0, h), slice(0, w)))
    total[total <= 0] = 1  # no weight anywhere (cannot happen: some frame is nearest)
    inv_total = cv2.divide(1.0, total)

    def weight(k: int) -> np.ndarray | None:
        win = window(k)
        if win is None:
            return None
        wk = cv2.multiply(raw(k, win), inv_total[win])
        if not cv2.countNonZero(wk):
            return None
        if win[0].stop - win[0].start == h and win[1].stop - win[1].start == w:
            return wk
        out = np.zeros((h, w), np.float32)
        out[win] = wk
        return out

    return weight


def whole_slices(d: np.ndarray, depth_weight: Callable[[np.ndarray], np.ndarray]) -> bool:
    """Whether the depth weights are one-hot: ``d`` holds whole slices only (e.g. each
    pixel's sharpest frame) and ``depth_weight`` cuts a frame one slice away to 0."""
    one = np.ones((1, 8), np.float32)
    return not depth_weight(one).any() and not np.any(d != np.floor(d))


def one_hot_weights(
    d: np.ndarray, n: int, valid: np.ndarray | None, none_valid: np.ndarray | None
) -> Callable[[int], np.ndarray | None]:
    """:func:`frame_weights` where each pixel's weight is all on frame ``d`` (whole
    slices, the neighbours cut): 1 there when that frame has data at the pixel (or no
    frame has), else 0 for every frame. The same weights from one label map: a
    comparison per frame instead of the Gaussians and the normalisation."""
    labels = d.astype(np.int32)
    if valid is not None:
        ok = pick(valid, labels)
        if none_valid is not None:
            ok |= none_valid
        labels[~ok] = -1  # no frame gets weight there
    counts = np.bincount(labels.ravel() + 1, minlength=n + 1)[1:]

    def weight(k: int) -> np.ndarray | None:
        if not counts[k]:
            return None
        return np.equal(labels, k).astype(np.float32)

    return weight


def as_float32(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`dffcore.ops.convert.to_float32` of an integer image written into ``out``
    (no new array per frame); float32 images are returned as they are."""
    if np.issubdtype(image.dtype, np.integer):
        scale = np.float32(1.0 / np.iinfo(image.dtype).max)
        return np.multiply(image, scale, out=out, dtype=np.float32)
    return to_float32(image)


def pyramid_fuse(
    frames: np.ndarray,
    weight: Callable[[int], np.ndarray | None],
    levels: int,
    *,
    valid: np.ndarray | None = None,
    fallback: np.ndarray | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """Σ_k Gaussian-pyramid(weight(k)) · Laplacian-pyramid(frame k), collapsed; float32.

    ``frames`` (N,H,W,C) in any dtype (converted one frame at a time); ``weight(k)``
    gives the (H,W) weight of frame ``k`` or None to skip it. Returns (H,W,C) float32.
    Where ``valid[k]`` is False, frame ``k`` is replaced by ``fallback`` (H,W,C) float32
    before its pyramid is built: coarse levels spread every pixel over its
    neighbours, so this keeps pixels without data out of the result entirely.
    With ``jobs`` > 1 the frames are split over that many threads, each with its own
    accumulator (OpenCV and NumPy release the GIL); only ``jobs`` frame pyramids are
    alive at any time.
    """
    n, h, w, c = frames.shape
    sizes = [(h, w)]
    for _ in range(levels - 1):
        ph, pw = sizes[-1]
        sizes.append(((ph + 1) // 2, (pw + 1) // 2))
    dsize = [(sw, sh) for sh, sw in sizes]  # OpenCV's (width, height)
    shapes = [(sh, sw, c) if c > 1 else (sh, sw) for sh, sw in sizes]
    lock = threading.Lock()
    done = [0]

    def work(ks: range) -> list[np.ndarray]:
        acc = [np.zeros(shape, np.float32) for shape in shapes]
        # scratch buffers, reused for every frame (no page faults per frame)
        gb = [np.empty(shape, np.float32) for shape in shapes]
        up = [np.empty(shape, np.float32) for shape in shapes[:-1]]
        wb = [np.empty(size, np.float32) for size in sizes]
        w3 = [np.empty(shape, np.float32) for shape in shapes] if c == 3 else []
        frame = np.empty((h, w, c), np.float32)
        for k in ks:
            wk = weight(k)
            if wk is not None:
                g = as_float32(frames[k], frame)
                if valid is not None and not valid[k].all():
                    if g is not frame:  # a float32 stack's own frame: never written to
                        np.copyto(frame, g)
                        g = frame
                    # fallback where frame k has no data, in place (np.where would copy)
                    cv2.copyTo(fallback, np.logical_not(valid[k]).view(np.uint8), g)
                if c == 1:
                    g = g[..., 0]
                wl = wk
                for lev in range(levels):
                    # the weight repeated per channel, as accumulateProduct wants it
                    wc = cv2.cvtColor(wl, cv2.COLOR_GRAY2RGB, dst=w3[lev]) if c == 3 else wl
                    if lev == levels - 1:
                        cv2.accumulateProduct(g, wc, acc[lev])
                        break
                    g_next = cv2.pyrDown(g, dst=gb[lev + 1], dstsize=dsize[lev + 1])
                    cv2.pyrUp(g_next, dst=up[lev], dstsize=dsize[lev])
                    cv2.subtract(g, up[lev], dst=up[lev])  # the Laplacian band
                    cv2.accumulateProduct(up[lev], wc, acc[lev])
                    g = g_next
                    wl = cv2.pyrDown(wl, dst=wb[lev + 1], dstsize=dsize[lev + 1])
            with lock:
                done[0] += 1
                progress(done[0], n)
        return acc

    jobs = max(1, min(jobs, n))
    if jobs == 1:
        acc = work(range(n))
    else:
        with ThreadPoolExecutor(jobs) as pool:
            # a fixed share per thread (every jobs-th frame): the same sums in the same
            # order on every run, so the result is reproducible to the bit
            parts = list(pool.map(work, [range(j, n, jobs) for j in range(jobs)]))
        acc = parts[0]
        for part in parts[1:]:
            for a, b in zip(acc, part, strict=True):
                a += b
    out = acc[-1]
    for lev in range(levels - 2, -1, -1):
        out = cv2.add(acc[lev], cv2.pyrUp(out, dstsize=dsize[lev]))
    return out.reshape(h, w, c)
