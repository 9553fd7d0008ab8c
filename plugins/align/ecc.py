"""Dense, intensity-based alignment by ECC maximisation."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dffcore.align.ecc import ecc_pair, pyramid
from dffcore.align.motion import Copies, test_image, test_scale
from dffcore.align.pairwise import AlignParams, PairwiseAligner
from dffcore.core.data import FocalStack
from dffcore.ops.convert import to_grey


class ECCParams(AlignParams):
    motion: Literal["translation", "euclidean", "affine", "homography"] = Field(
        "homography", description="motion model"
    )
    levels: int = Field(3, ge=1, le=8, description="pyramid levels, coarse to fine")
    finest_level: int = Field(
        0, ge=0, le=4, description="level where refinement stops: 0 = full resolution, 1 = half"
    )
    iterations: int = Field(
        100, ge=1, le=100000, description="iterations per level (at most 100000)"
    )
    eps: float = Field(1e-5, gt=0, description="convergence threshold")
    smooth: int = Field(
        5,
        ge=1,
        le=999,
        description="Gaussian kernel (odd) filtering both images, evens out blur (at most 999 px)",
    )
    match_blur: bool = Field(
        True,
        description="blur the sharper frame of each pair to the other's gradient energy first",
    )


class ECC(PairwiseAligner):
    """ECC image alignment (OpenCV findTransformECC), coarse to fine, chained."""

    name = "ecc"
    Params = ECCParams
    citation = (
        "Evangelidis & Psarakis, Parametric image alignment using enhanced correlation "
        "coefficient maximization, IEEE TPAMI 30(10), 2008"
    )

    @property
    def path_model(self) -> str:
        return self.params.motion

    def prepare(self, stack: FocalStack) -> list[list[np.ndarray | None]]:
        """Each frame's grey pyramid, built once (:meth:`levels`)."""
        return self.per_frame(lambda f: self.levels(to_grey(f)), stack.frames)

    def levels(self, grey: np.ndarray) -> list[np.ndarray | None]:
        """The pyramid of one grey frame, None for the levels finer than the finest one
        ECC refines at (never used: the memory is freed at once)."""
        p = pyramid(grey, max(self.params.levels, self.params.finest_level + 1))
        keep = min(self.params.finest_level, len(p) - 1)
        return [None] * keep + p[keep:]

    def prepare_with_copies(self, stack: FocalStack) -> tuple[list[Any], Copies]:
        """:meth:`prepare` and the frames' :func:`~dffcore.align.motion.test_images`,
        from one grey conversion of each frame (``self.jobs`` threads)."""
        s = test_scale(stack.shape)

        def both(frame: np.ndarray) -> tuple[list[np.ndarray | None], np.ndarray]:
            grey = to_grey(frame)
            return self.levels(grey), test_image(grey, s)

        done = self.per_frame(both, stack.frames)
        return [d[0] for d in done], ([d[1] for d in done], s)

    def estimate_pair(self, data: Any, a: int, b: int) -> tuple[np.ndarray | None, dict[str, Any]]:
        p = self.params
        smooth = p.smooth if p.smooth % 2 else p.smooth + 1
        return ecc_pair(
            data[a],
            data[b],
            p.motion,
            levels=p.levels,
            iterations=p.iterations,
            eps=p.eps,
            smooth=smooth,
            finest=p.finest_level,
            match_blur=p.match_blur,
        )
