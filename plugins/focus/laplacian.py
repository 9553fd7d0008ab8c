"""Laplacian-based focus measures (Pertuz et al. 2013, family LAP)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from ._common import (
    BORDER,
    PERTUZ,
    LocalMeasure,
    LocalParams,
    correlate,
    local_variance,
    second_difference,
)

NAYAR = "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994"
PECH = (
    "Pech-Pacheco et al., Diatom autofocusing in brightfield microscopy: "
    "a comparative study, ICPR 2000"
)
_DIAGONALS = (
    np.array([[0, 0, -1], [0, 2, 0], [-1, 0, 0]], np.float32) / math.sqrt(2),
    np.array([[-1, 0, 0], [0, 2, 0], [0, 0, -1]], np.float32) / math.sqrt(2),
)


def laplacian(grey: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian, kernel [[0, 1, 0], [1, −4, 1], [0, 1, 0]]."""
    return cv2.Laplacian(grey, cv2.CV_32F, ksize=1, borderType=BORDER)


def modified_laplacian(grey: np.ndarray, step: int = 1) -> np.ndarray:
    """``|2I − I(x−step) − I(x+step)| + |2I − I(y−step) − I(y+step)|``."""
    ml = np.abs(second_difference(grey, step, axis=1))
    ml += np.abs(second_difference(grey, step, axis=0))
    return ml


class EnergyOfLaplacian(LocalMeasure):
    """Energy of Laplacian: window mean of (ΔI)², Δ the 4-neighbour Laplacian."""

    name = "lape"
    citation = f"Subbarao, Choi & Nikzad, Focusing techniques, Opt. Eng. 32(11), 1993; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        lap = laplacian(grey)
        return self.mean(np.square(lap, out=lap))


class VarianceOfLaplacian(LocalMeasure):
    """Variance of Laplacian: window variance of ΔI, Δ the 4-neighbour Laplacian."""

    name = "lapv"
    citation = f"{PECH}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        return local_variance(laplacian(grey), self.params.window)


class ModifiedLaplacian(LocalMeasure):
    """Modified Laplacian: window mean of |Lx| + |Ly|, L the [−1 2 −1] second difference."""

    name = "lapm"
    citation = f"{NAYAR}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        return self.mean(modified_laplacian(grey))


class SMLParams(LocalParams):
    step: int = Field(
        1,
        ge=1,
        le=100,
        description="distance of the second differences' neighbours (px) (at most 100 px)",
    )
    threshold: float = Field(
        0.0, ge=0, description="modified-Laplacian values below it count as 0 (image in [0, 1])"
    )


class SumModifiedLaplacian(ModifiedLaplacian):
    """Sum-modified Laplacian: window mean of ML·[ML ≥ threshold], ML with a ``step``.

    With the defaults (step 1, threshold 0) it equals ``lapm``.
    """

    name = "sml"
    Params = SMLParams
    citation = f"{NAYAR}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        ml = modified_laplacian(grey, self.params.step)
        if self.params.threshold > 0:
            ml[ml < self.params.threshold] = 0
        return self.mean(ml)


class DiagonalLaplacian(LocalMeasure):
    """Diagonal Laplacian: window mean of |Lx| + |Ly| + (|Ld1| + |Ld2|)/√2."""

    name = "lapd"
    citation = (
        "Thelen, Frey, Hirsch & Hering, Improvements in shape-from-focus for holographic "
        "reconstructions with regard to focus operators, neighborhood-size, and height value "
        f"interpolation, IEEE TIP 18(1), 2009; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        ml = modified_laplacian(grey)
        for kernel in _DIAGONALS:
            ml += np.abs(correlate(grey, kernel))
        return self.mean(ml)
