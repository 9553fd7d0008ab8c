"""Aligners that estimate a transform between two frames and chain the pairs.

An aligner subclasses :class:`PairwiseAligner` and implements ``estimate_pair(a, b)``:
the transform from frame ``a`` to frame ``b`` (see :mod:`dffcore.ops.warp`).
:meth:`PairwiseAligner.estimate` chains the pairs to the reference frame and returns an
:class:`~dffcore.core.data.Alignment`; calling the aligner warps the frames with it
(:func:`dffcore.align.apply.apply_alignment`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dffcore.align.apply import apply_alignment
from dffcore.align.ecc import ecc_pair
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
from dffcore.ops.warp import compose

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
    photometric: Photometric = Field(
        "none", description="fit each frame's exposure to the reference (drift during a sweep)"
    )
    crop: bool = Field(False, description="crop outputs to the region valid in every frame")
    interpolation: Interpolation = Field(
        "cubic", description="resampling of the warped frames (linear is faster, blurs more)"
    )


def alignment_of(
    p: AlignParams,
    ref: int,
    transforms: list[Transform],
    diagnostics: list[dict[str, Any]],
    shape: tuple[int, int],
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

    def estimate(
        self, stack: FocalStack, ctx: Context, on_pair: Callable[[], None] | None = None
    ) -> Alignment:
        """Transforms from the reference to every frame, chained from pairwise estimates."""
        p = self.params
        n, shape = stack.n, stack.shape
        ref = resolve_reference(p.reference, n)
        self.jobs = ctx.jobs
        data = self.prepare(stack)

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
                on_pair=on_pair,
                map_pairs=lambda f, xs: list(pool.map(f, xs)),
            )
        return alignment_of(p, ref, transforms, diagnostics, shape)

    def __call__(self, stack: FocalStack, ctx: Context) -> AlignedStack:
        tick = progress_ticks(ctx, 2 * stack.n - 1)  # n - 1 pairs, then n warps
        alignment = self.estimate(stack, ctx, tick)
        return apply_alignment(stack, alignment, jobs=ctx.jobs, tick=tick)

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
