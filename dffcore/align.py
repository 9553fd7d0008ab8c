"""What all aligners share: parameters, failure fallback, warping, photometry, cropping.

An aligner subclasses :class:`PairwiseAligner` and implements ``estimate_pair(a, b)``:
the transform from frame ``a`` to frame ``b`` (see :mod:`dffcore.warp`). This module
chains the pairs to the reference frame, warps every frame once, builds the ``valid``
mask, and applies the options every aligner has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from .components import Aligner, Context, Params, Reference, resolve_reference
from .convert import like, to_float32, to_grey
from .data import AlignedStack, FocalStack
from .errors import DffError
from .warp import Transform, chain_to_reference, valid_mask, warp

logger = logging.getLogger(__name__)


class AlignParams(Params):
    """Options every aligner has."""

    reference: Reference = Field("first", description="frame whose pixel grid the outputs use")
    chain: bool = Field(
        True, description="match neighbouring frames and compose (else each frame to reference)"
    )
    fallback: Literal["error", "identity", "ecc"] = Field(
        "error", description="when a pair fails: stop, use the identity, or try ECC (affine)"
    )
    photometric: Literal["none", "gain", "gain-offset"] = Field(
        "none", description="fit each frame's exposure to the reference (drift during a sweep)"
    )
    crop: bool = Field(False, description="crop outputs to the region valid in every frame")
    interpolation: Literal["cubic", "linear"] = Field(
        "cubic", description="resampling of the warped frames (linear is faster, blurs more)"
    )


class PairwiseAligner(Aligner):
    """Base of aligners that estimate a transform between two frames."""

    Params = AlignParams
    #: worker threads of the current call (``ctx.jobs``), for :meth:`per_frame`
    jobs: int = 1

    def per_frame(self, fn: Callable[[np.ndarray], Any], frames: Any) -> list[Any]:
        """``[fn(f) for f in frames]`` on the call's worker threads (OpenCV releases the GIL)."""
        with ThreadPoolExecutor(max(1, self.jobs)) as pool:
            return list(pool.map(fn, frames))

    def prepare(self, stack: FocalStack) -> Any:
        """Per-frame work done once (features, grey images); default: grey float32."""
        return self.per_frame(to_grey, stack.frames)

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[Transform, dict[str, Any]]:
        """Transform from frame ``a`` to frame ``b``; ``diag["failure"]`` says why not."""
        raise NotImplementedError

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        p = self.params
        n, shape = stack.n, stack.shape
        ref = resolve_reference(p.reference, n)
        self.jobs = ctx.jobs
        data = self.prepare(stack)
        done = [0]

        def tick() -> None:
            done[0] += 1
            ctx.progress(done[0], 2 * n - 1)

        def estimate(a: int, b: int) -> tuple[Transform, dict[str, Any]]:
            t, diag = self.estimate_pair(data, a, b)
            if t is not None and diag.get("failure") is None:
                return t, diag
            return self._fallback(stack, a, b, diag)

        with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
            transforms, diagnostics = chain_to_reference(
                n,
                ref,
                estimate,
                shape,
                chain=p.chain,
                on_pair=tick,
                map_pairs=lambda f, xs: list(pool.map(f, xs)),
            )
        return finish(stack, ref, transforms, diagnostics, p, tick, ctx.jobs)

    def _fallback(
        self, stack: FocalStack, a: int, b: int, diag: dict[str, Any]
    ) -> tuple[Transform, dict[str, Any]]:
        p = self.params
        name = stack.paths[b].name if b < len(stack.paths) else f"#{b}"
        msg = f"frame {b} ({name}): alignment to frame {a} failed: {diag.get('failure')}"
        if p.fallback == "error":
            raise DffError(msg + "; set fallback: identity or ecc to continue")
        if p.fallback == "ecc":
            t, d = ecc_pair(to_grey(stack.frames[a]), to_grey(stack.frames[b]), "affine")
            if t is not None:
                logger.warning("%s; used ECC instead", msg)
                return t, {**diag, **d, "fallback": "ecc"}
        logger.warning("%s; using the identity", msg)
        return np.eye(3), {**diag, "fallback": "identity"}


MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


def pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` images, full resolution first, each half the previous (>= 32 px)."""
    out = [image]
    while len(out) < levels and min(out[-1].shape[:2]) >= 64:
        out.append(cv2.pyrDown(out[-1]))
    return out


def ecc_pair(
    a: np.ndarray | list[np.ndarray],
    b: np.ndarray | list[np.ndarray],
    motion: str = "affine",
    *,
    levels: int = 3,
    iterations: int = 100,
    eps: float = 1e-5,
    smooth: int = 5,
    init: np.ndarray | None = None,
    finest: int = 0,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """ECC (Evangelidis & Psarakis 2008) from grey float32 ``a`` to ``b``, coarse to fine.

    ``a`` and ``b`` are images or their :func:`pyramid` (built once per frame by the
    caller). Returns the 3x3 transform mapping ``a``'s coordinates to ``b``'s, or None
    and the reason. ``smooth`` is the Gaussian both images are filtered with at every
    level, which evens out the blur difference between neighbouring slices. Refinement
    stops at pyramid level ``finest`` (0 = full resolution, 1 = half, ...) for speed.
    """
    warp_t = np.eye(3) if init is None else np.asarray(init, np.float64)
    depth = max(levels, finest + 1)
    pa = a[:depth] if isinstance(a, list) else pyramid(a, depth)
    pb = b[:depth] if isinstance(b, list) else pyramid(b, depth)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    cc, failure = 0.0, ""
    for level in range(len(pa) - 1, min(finest, len(pa) - 1) - 1, -1):
        s = np.diag([0.5**level, 0.5**level, 1.0])
        w_l = s @ warp_t @ np.linalg.inv(s)
        w_l = (w_l / w_l[2, 2]).astype(np.float32)
        start = w_l if motion == "homography" else w_l[:2].copy()
        try:
            cc, found = cv2.findTransformECC(
                pa[level], pb[level], start, MOTIONS[motion], criteria, None, smooth
            )
        except cv2.error as exc:  # a coarse level may lack detail: go on from the estimate
            failure = f"ECC did not converge at pyramid level {level}: {getattr(exc, 'err', exc)}"
            continue
        failure = ""
        full = found if found.shape == (3, 3) else np.vstack([found, [0, 0, 1]])
        warp_t = np.linalg.inv(s) @ full.astype(np.float64) @ s
    if failure:
        return None, {"failure": failure}
    if not np.isfinite(warp_t).all():
        return None, {"failure": "ECC produced a non-finite transform"}
    return warp_t, {"ecc_correlation": round(float(cc), 5)}


def finish(
    stack: FocalStack,
    ref: int,
    transforms: list[Transform],
    diagnostics: list[dict[str, Any]],
    p: AlignParams,
    tick: Any = None,
    jobs: int = 1,
) -> AlignedStack:
    """Warp every frame once, build ``valid``, then photometry; with ``crop``, the crop
    rectangle is found from the masks first and frames are warped straight into it."""
    n, shape = stack.n, stack.shape
    for i, t in enumerate(transforms):
        if t is not None and not np.ndim(t) == 3:
            diagnostics[i]["transform"] = np.round(t, 6).tolist()
    pool = ThreadPoolExecutor(max(1, jobs))  # OpenCV releases the GIL
    try:
        if all(t is None for t in transforms):
            frames, valid, crop = stack.frames, None, None
            if tick is not None:
                for _ in range(n):
                    tick()
        else:
            masks = list(pool.map(lambda t: frame_mask(t, shape), transforms))
            y0, y1, x0, x1 = crop_box(masks, shape) if p.crop else (0, shape[0], 0, shape[1])
            crop = (
                None
                if (y0, y1, x0, x1) == (0, shape[0], 0, shape[1])
                else (x0, y0, x1 - x0, y1 - y0)
            )
            out_shape = (y1 - y0, x1 - x0)
            frames = np.empty((n, *out_shape, *stack.frames.shape[3:]), stack.frames.dtype)
            valid = np.ones((n, *out_shape), bool)

            def one(i: int) -> None:
                t = _shifted(transforms[i], x0, y0, out_shape)
                frames[i] = warp(stack.frames[i], t, out_shape, p.interpolation)
                if masks[i] is not None:
                    valid[i] = masks[i][y0:y1, x0:x1]

            for _ in pool.map(one, range(n)):
                if tick is not None:
                    tick()
            if valid.all():
                valid = None
            if crop is not None:
                logger.info("cropped to x=%d y=%d %dx%d", *crop)
    finally:
        pool.shutdown()
    if p.photometric != "none":
        frames = normalise_exposure(
            frames, ref, valid, offset=p.photometric == "gain-offset", diagnostics=diagnostics
        )
    return AlignedStack(frames, ref, valid, transforms, diagnostics, stack, crop)


def frame_mask(t: Transform, shape: tuple[int, int]) -> np.ndarray | None:
    """Pixels of the reference grid that frame ``t`` covers; None for the identity."""
    return None if t is None else valid_mask(t, shape, shape)


def crop_box(
    masks: Iterable[np.ndarray | None], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a rectangle valid in every mask (None: valid everywhere);
    the masks may come one at a time (a generator), only their intersection is kept."""
    common = None
    for m in masks:
        if m is not None:
            common = m.copy() if common is None else np.logical_and(common, m, out=common)
    return (0, shape[0], 0, shape[1]) if common is None else largest_valid_rectangle(common)


def _shifted(t: Transform, x0: int, y0: int, shape: tuple[int, int]) -> Transform:
    """``t`` on the grid of the crop whose corner is (x0, y0)."""
    if x0 == 0 and y0 == 0:
        return t
    if t is None:
        t = np.eye(3)
    if np.ndim(t) == 3:
        return t[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    return t @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1]])


def normalise_exposure(
    frames: np.ndarray,
    ref: int,
    valid: np.ndarray | None,
    *,
    offset: bool,
    diagnostics: list[dict[str, Any]],
) -> np.ndarray:
    """Fit ``gain`` (and ``offset``) per frame so its local means match the reference's.

    Local means (Gaussian σ = 8 px) are what defocus preserves, so the fit sees exposure
    and not blur. Returns new frames in the stack's dtype.
    """

    def local_mean(i: int) -> np.ndarray:
        return cv2.GaussianBlur(to_grey(frames[i]), (0, 0), 8.0)

    target = local_mean(ref)
    out = np.empty_like(frames)
    for i in range(frames.shape[0]):
        if i == ref:
            out[i] = frames[i]
            continue
        src = local_mean(i)
        m = np.ones(src.shape, bool) if valid is None else valid[i] & valid[ref]
        x, y = src[m].astype(np.float64), target[m].astype(np.float64)
        if offset:
            gain, off = np.polyfit(x, y, 1)
        else:
            gain, off = float(x @ y / max(x @ x, 1e-12)), 0.0
        diagnostics[i]["exposure"] = {"gain": round(float(gain), 5), "offset": round(float(off), 5)}
        out[i] = like(to_float32(frames[i]) * np.float32(gain) + np.float32(off), frames.dtype)
    return out


def largest_valid_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of an axis-aligned rectangle inside ``mask`` (greedy shrink)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise DffError("no pixel is valid in every frame: cannot crop")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    while True:
        sub = mask[y0:y1, x0:x1]
        if sub.all():
            return int(y0), int(y1), int(x0), int(x1)
        bad = {
            "top": (~sub[0]).sum(),
            "bottom": (~sub[-1]).sum(),
            "left": (~sub[:, 0]).sum(),
            "right": (~sub[:, -1]).sum(),
        }
        side = max(
            bad, key=lambda k: bad[k] / (sub.shape[1] if k in ("top", "bottom") else sub.shape[0])
        )
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
