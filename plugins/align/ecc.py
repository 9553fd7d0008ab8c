"""Dense, intensity-based alignment by ECC maximisation."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dffcore.align.ecc import ecc_pair, pyramid
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

    def prepare(self, stack: FocalStack) -> list[list[np.ndarray]]:
        """Each frame's grey pyramid, built once."""
        depth = max(self.params.levels, self.params.finest_level + 1)
        return self.per_frame(lambda f: pyramid(to_grey(f), depth), stack.frames)

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
