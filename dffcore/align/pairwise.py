"""Aligners that estimate a transform between two frames and chain the pairs.

An aligner subclasses :class:`PairwiseAligner` and implements ``estimate_pair(a, b)``:
the transform from frame ``a`` to frame ``b`` (see :mod:`dffcore.ops.warp`).
:meth:`PairwiseAligner.estimate` chains the pairs to the reference frame and returns an
:class:`~dffcore.core.data.Alignment`; calling the aligner warps the frames with it
(:func:`dffcore.align.apply.apply_alignment`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.align.ecc import ecc_pair
from dffcore.align.limits import MotionLimits, describe, implausible
from dffcore.align.motion import Copies, explained, test_images
from dffcore.align.path import PairEstimate, fit_path
from dffcore.core.components import Aligner, Context, Params, Reference, resolve_reference
from dffcore.core.data import (
    AlignedStack,
    Alignment,
    FocalStack,
    Interpolation,
    Photometric,
    Transform,
)
from dffcore.core.errors import DffError
from dffcore.ops.convert import to_grey
from dffcore.ops.warp import compose, fit_homography

logger = logging.getLogger(__name__)

#: pairs the residual test looks at, at most (spread over the stack)
TEST_PAIRS = 12
#: a dense map must give this share of a frame's pixels a correspondence
MIN_MAPPED = 0.05


class AlignParams(Params):
    """Options every aligner has."""

    reference: Reference = Field("first", description="frame whose pixel grid the outputs use")
    chain: bool = Field(
        True, description="match neighbouring frames and compose (else each frame to reference)"
    )
    fallback: Literal["interpolate", "ecc", "identity", "error"] = Field(
        "interpolate",
        description="when a pair fails or its motion is implausible: leave it out (its frames "
        "get the motion of the path through their neighbours), try ECC (affine), use the "
        "identity, or stop",
    )
    limits: MotionLimits = Field(
        default_factory=MotionLimits, description="largest plausible motion (see MotionLimits)"
    )
    still_test: float = Field(
        0.25,
        ge=0,
        le=1,
        description="share of the neighbours' difference the estimated motion must explain "
        "(median over pairs) for the camera to count as moving; below it every transform is "
        "the identity (0: always trust the estimate)",
    )
    photometric: Photometric = Field(
        "none", description="fit each frame's exposure to the reference (drift during a sweep)"
    )
    crop: bool = Field(False, description="crop outputs to the region valid in every frame")
    interpolation: Interpolation = Field(
        "cubic",
        description="resampling of the warped frames: linear is 3x faster and blurs more, "
        "lanczos (8x8 Lanczos) 4x slower and keeps the finest detail",
    )


def alignment_of(
    p: AlignParams,
    ref: int,
    transforms: list[Transform],
    diagnostics: list[dict[str, Any]],
    shape: tuple[int, int],
    summary: str = "",
) -> Alignment:
    """The :class:`Alignment` of estimated transforms, with the options of ``p``."""
    return Alignment(
        ref,
        transforms,
        tuple(shape),
        diagnostics,
        crop=p.crop,
        interpolation=p.interpolation,
        photometric=p.photometric,
        summary=summary,
    )


class PairwiseAligner(Aligner):
    """Base of aligners that estimate a transform between two frames.

    :meth:`estimate` matches neighbouring frames (or each frame to the reference), checks
    every estimate against :class:`MotionLimits`, handles failed pairs as ``fallback``
    says, tests whether the camera moved at all (:mod:`dffcore.align.motion`) and fits one
    consistent motion path to the pairs (:mod:`dffcore.align.path`); aligners whose
    estimates are dense maps (``path_model`` None) are chained instead.
    """

    Params = AlignParams
    #: worker threads of the current call (``ctx.jobs``), for :meth:`per_frame`
    jobs: int = 1

    @property
    def path_model(self) -> str | None:
        """Motion model of the path fit (:data:`dffcore.align.path.MODELS`), or None to
        compose the pairwise estimates (dense maps)."""
        return "homography"

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

    def estimate(
        self,
        stack: FocalStack,
        ctx: Context,
        on_pair: Callable[[], None] | None = None,
        *,
        copies: Copies | None = None,
        prepared: Any = None,
    ) -> Alignment:
        """Transforms from the reference to every frame (see the class docstring);
        ``copies`` are the frames' :func:`~dffcore.align.motion.test_images` and
        ``prepared`` what :meth:`prepare` gives when the caller has them already."""
        p = self.params
        n, shape = stack.n, stack.shape
        ref = resolve_reference(p.reference, n)
        self.jobs = ctx.jobs
        data = self.prepare(stack) if prepared is None else prepared
        found: dict[tuple[int, int], np.ndarray] = {}

        def estimate(a: int, b: int) -> tuple[Transform, dict[str, Any]]:
            t, diag = self._checked_pair(stack, data, a, b)
            if t is not None:
                found[(a, b)] = t
            return t, diag

        with ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
            chained, diagnostics = chain_to_reference(
                n,
                ref,
                estimate,
                shape,
                chain=p.chain,
                on_pair=on_pair,
                map_pairs=lambda f, xs: list(pool.map(f, xs)),
            )
        found = {ab: found[ab] for ab in sorted(found)}  # threads finish in any order
        if not found:
            reasons = [
                f"frame {b} ({frame_name(stack, b)}) to frame {a}: {d['failure']}"
                for (a, b), d in _pairs(diagnostics)
            ]
            more = f" and {len(reasons) - 2} more" if len(reasons) > 2 else ""
            raise DffError(
                f"no pair of frames could be aligned ({'; '.join(reasons[:2])}{more}); if the "
                "camera did not move, use align: none"
            )
        images, scale = copies or test_images(stack.frames, ctx.jobs)
        sample = list(found)[:: max(1, -(-len(found) // TEST_PAIRS))]  # evenly spread
        scores = {ab: explained(images, scale, *ab, found[ab]) for ab in sample}
        for (_, b), score in scores.items():
            diagnostics[b]["explained"] = round(score, 4)
        median = float(np.median(list(scores.values())))
        if p.still_test > 0 and median < p.still_test:
            summary = (
                f"no camera motion (the estimates explain {median:.0%} of how neighbouring "
                "frames differ): identity"
            )
            return alignment_of(p, ref, [None] * n, diagnostics, shape, summary)
        if self.path_model is not None:
            bridges = self._bridges(stack, data, diagnostics, found) if p.chain else {}
            pairs = [PairEstimate(a, b, t) for (a, b), t in {**found, **bridges}.items()]
            fit = fit_path(n, ref, shape, pairs, self.path_model, initial=chained)
            for i, ((_, b), misfit) in enumerate(zip(found, fit.residual_px, strict=False)):
                diagnostics[b]["pair_residual_px"] = round(misfit, 3)
                if i in fit.rejected:
                    diagnostics[b]["rejected"] = f"disagrees with the path by {misfit:.1f} px"
            transforms, interpolated = list(fit.transforms), fit.interpolated
        else:
            transforms = chained
            interpolated = [b for (a, b), d in _pairs(diagnostics) if (a, b) not in found]
        for i in interpolated:
            diagnostics[i]["interpolated"] = True
        self._check_path(stack, transforms)
        summary = self._summary(transforms, found, shape, n, len(interpolated))
        return alignment_of(p, ref, transforms, diagnostics, shape, summary)

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        tick = progress_ticks(ctx, 2 * stack.n - 1)  # n - 1 pairs, then n warps
        alignment = self.estimate(stack, ctx, tick)
        return apply_alignment(stack, alignment, jobs=ctx.jobs, tick=tick)

    def _bridges(
        self,
        stack: FocalStack,
        data: Any,
        diagnostics: list[dict[str, Any]],
        found: dict[tuple[int, int], np.ndarray],
    ) -> dict[tuple[int, int], np.ndarray]:
        """Pairs two frames apart around each failed neighbour pair, so that one frame
        without usable structure does not cut the stack in two."""
        out: dict[tuple[int, int], np.ndarray] = {}
        n = stack.n
        for (a, b), diag in _pairs(diagnostics):
            if (a, b) in found:
                continue
            d = b - a
            for x, y in ((a, b + d), (a - d, b)):
                if not (0 <= x < n and 0 <= y < n) or (x, y) in found or (x, y) in out:
                    continue
                t, bd = self.estimate_pair(data, x, y)
                if t is None or bd.get("failure"):
                    continue
                if implausible(fit_homography(t), stack.shape, self.params.limits, step=True):
                    continue
                out[(x, y)] = t
                diag["bridged_by"] = [x, y]
                break
        return out

    def _checked_pair(
        self, stack: FocalStack, data: Any, a: int, b: int
    ) -> tuple[Transform, dict[str, Any]]:
        """The pair's estimate if it succeeded and is plausible, else the fallback's."""
        t, diag = self.estimate_pair(data, a, b)
        reason = diag.get("failure")
        if t is not None and reason is None:
            reason = implausible(fit_homography(t), stack.shape, self.params.limits, step=True)
        if t is not None and reason is None:
            return t, diag
        return self._fallback(stack, a, b, {**diag, "failure": reason or "no estimate"})

    def _fallback(
        self, stack: FocalStack, a: int, b: int, diag: dict[str, Any]
    ) -> tuple[Transform, dict[str, Any]]:
        p = self.params
        msg = (
            f"frame {b} ({frame_name(stack, b)}): alignment to frame {a} failed: {diag['failure']}"
        )
        if p.fallback == "error":
            raise DffError(msg + "; set fallback: interpolate, ecc or identity to continue")
        if p.fallback == "ecc":
            t, d = ecc_pair(to_grey(stack.frames[a]), to_grey(stack.frames[b]), "affine")
            if t is not None and implausible(t, stack.shape, p.limits, step=True) is None:
                logger.info("%s; used ECC instead", msg)
                return t, {**diag, **d, "fallback": "ecc"}
        if p.fallback == "identity":
            logger.info("%s; using the identity", msg)
            return np.eye(3), {**diag, "fallback": "identity"}
        logger.info("%s; its motion is interpolated from the neighbours", msg)
        return None, {**diag, "fallback": "interpolate"}

    def _check_path(self, stack: FocalStack, transforms: list[Transform]) -> None:
        """A clear error when a frame's accumulated motion is not what a sweep can do."""
        bad = []
        for i, t in enumerate(transforms):
            if t is None:
                continue
            reason = implausible(fit_homography(t), stack.shape, self.params.limits, step=False)
            if reason is not None:
                reason += " relative to the reference"
            if np.ndim(t) == 3 and (found := np.isfinite(t[..., 0]).mean()) < MIN_MAPPED:
                reason = f"only {found:.1%} of its pixels have a correspondence"
            if reason is not None:
                bad.append((i, reason))
        if bad:
            names = ", ".join(f"{i} ({frame_name(stack, i)})" for i, _ in bad[:5])
            raise DffError(
                f"alignment failed for frames {names}: {bad[0][1]}; try another aligner, "
                "fallback: interpolate, or align: none"
            )

    def _summary(
        self,
        transforms: list[Transform],
        found: dict[tuple[int, int], np.ndarray],
        shape: tuple[int, int],
        n: int,
        interpolated: int,
    ) -> str:
        motions = [describe(fit_homography(t), shape) for t in transforms if t is not None]
        scale = max((abs(m.scale) for m in motions), default=0.0)
        shift = max((m.shift for m in motions), default=0.0) * math.hypot(*shape)
        text = (
            f"{len(found)}/{n - 1} pairs aligned, max "
            f"magnification change {scale:.1%}, max shift {shift:.1f} px"
        )
        missing = n - 1 - len(found)
        text += f", {missing} pairs failed" if missing else ""
        return text + (f", {interpolated} frames interpolated" if interpolated else "")


def frame_name(stack: FocalStack, i: int) -> str:
    """The file name of frame ``i``, or ``#i`` for frames held in memory."""
    return stack.paths[i].name if i < len(stack.paths) else f"#{i}"


def _pairs(diagnostics: list[dict[str, Any]]) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    return [(tuple(d["pair"]), d) for d in diagnostics if "pair" in d]


def progress_ticks(ctx: Context, total: int) -> Callable[[], None]:
    """A callback that reports one more step of ``total`` to ``ctx.progress`` each call."""
    done = [0]

    def tick() -> None:
        done[0] += 1
        ctx.progress(done[0], total)

    return tick


def chain_to_reference(
    n: int,
    ref: int,
    estimate: Callable[[int, int], tuple[Transform, dict[str, Any]]],
    shape: tuple[int, int],
    *,
    chain: bool = True,
    on_pair: Callable[[], None] | None = None,
    map_pairs: Callable[[Callable, list[tuple[int, int]]], list] | None = None,
) -> tuple[list[Transform], list[dict[str, Any]]]:
    """Transforms reference -> every frame from pairwise estimates.

    ``estimate(a, b)`` returns the transform from frame ``a`` to frame ``b`` (on a's grid)
    and diagnostics. With ``chain`` neighbouring frames are matched (similar blur) and
    composed outward from the reference; otherwise each frame is matched to the
    reference directly. ``map_pairs`` may run the estimates in parallel (like
    ``ThreadPoolExecutor.map``).
    """
    if chain:
        pairs = [(i, i + 1) for i in range(ref, n - 1)] + [(i, i - 1) for i in range(ref, 0, -1)]
    else:
        pairs = [(ref, i) for i in range(n) if i != ref]

    def run(pair: tuple[int, int]) -> tuple[Transform, dict[str, Any]]:
        out = estimate(*pair)
        if on_pair is not None:
            on_pair()
        return out

    results = (map_pairs or (lambda f, xs: list(map(f, xs))))(run, pairs)
    transforms: list[Transform] = [None] * n
    diagnostics: list[dict[str, Any]] = [{} for _ in range(n)]
    diagnostics[ref] = {"reference": True}
    for (a, b), (t, diag) in zip(pairs, results, strict=True):  # outward: a is ready
        diagnostics[b] = {"pair": [a, b], **diag}
        transforms[b] = compose(transforms[a], t, shape) if chain else t
    return transforms, diagnostics
