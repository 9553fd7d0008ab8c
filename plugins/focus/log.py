"""Laplacian of Gaussian focus measure."""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from dffcore.core.components import FocusMeasure, Params
from dffcore.ops.convert import to_grey
from dffcore.ops.filters import gaussian


class LoGParams(Params):
    gaussian_ksize: int = Field(
        5, ge=1, le=999, description="Gaussian pre-filter kernel size (odd) (at most 999 px)"
    )
    gaussian_sigma: float = Field(
        0.0,
        ge=0,
        le=200,
        description="Gaussian σ; 0 derives it from the kernel size as OpenCV does (at most 200)",
    )
    laplacian_ksize: Literal[1, 3, 5, 7] = Field(5, description="Laplacian aperture size")

    @field_validator("gaussian_ksize")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd")
        return v


class LoG(FocusMeasure):
    """|Laplacian(Gaussian(grey))|: the classic pipeline's focus measure."""

    name = "log"
    Params = LoGParams
    citation = (
        "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994; "
        "Pertuz et al., Analysis of focus measure operators for shape-from-focus, "
        "Pattern Recognition 46(5), 2013 (LAPx family)"
    )

    def context(self) -> int:
        p = self.params
        return p.gaussian_ksize // 2 + p.laplacian_ksize // 2 + math.ceil(3 * p.gaussian_sigma) + 1

    def measure(self, frame: np.ndarray) -> np.ndarray:
        p = self.params
        return abs_log(to_grey(frame), p.gaussian_ksize, p.laplacian_ksize, p.gaussian_sigma)


def abs_log(grey: np.ndarray, ksize: int, aperture: int, sigma: float = 0.0) -> np.ndarray:
    """|Laplacian (aperture ``aperture``) of the ``ksize`` Gaussian blur| of a grey image."""
    blurred = cv2.GaussianBlur(grey, (ksize, ksize), sigma) if ksize > 1 else grey
    return np.abs(cv2.Laplacian(blurred, cv2.CV_32F, ksize=aperture))


class MultiScaleLoGParams(Params):
    scales: list[tuple[int, Literal[1, 3, 5, 7]]] = Field(
        [(3, 3), (7, 5)],
        min_length=1,
        max_length=4,
        description="(Gaussian pre-filter kernel size, odd, at most 999 px; Laplacian aperture) "
        "per scale",
    )
    window_sigma: float = Field(
        1.0,
        ge=0,
        le=200,
        description="Gaussian σ smoothing each scale's |LoG| before the product (at most 200 px)",
    )

    @field_validator("scales")
    @classmethod
    def _odd_kernels(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(not 1 <= k <= 999 or k % 2 == 0 for k, _ in v):
            raise ValueError("Gaussian kernel sizes must be odd, from 1 to 999 px")
        return v


class MultiScaleLoG(FocusMeasure):
    """Product over scales of the locally smoothed |LoG| responses (scale multiplication).

    Each scale is |Laplacian(Gaussian_k(grey))| smoothed by a Gaussian window; the
    measure is their product, so a slice wins only where it is sharp at every scale.
    The fine scale places depth edges precisely; the coarse one ignores fine structure
    that is not focus: noise, and the discrete copies of an edge that light-field
    refocusing (and strong bokeh) produce around depth edges. The product of values is
    the product of the scales' per-pixel normalised focus curves up to a per-pixel
    factor, i.e. it combines them as independent evidence.
    """

    name = "mslog"
    Params = MultiScaleLoGParams
    citation = (
        "Bao, Zhang & Wu, Canny edge detection enhancement by scale multiplication, "
        "IEEE TPAMI 27(9), 2005 (scale multiplication); "
        "Nayar & Nakagawa, Shape from focus, IEEE TPAMI 16(8), 1994 (Laplacian focus)"
    )

    def context(self) -> int:
        p = self.params
        kernels = max(k // 2 + aperture // 2 for k, aperture in p.scales)
        return kernels + math.ceil(3 * p.window_sigma) + 1

    def measure(self, frame: np.ndarray) -> np.ndarray:
        p = self.params
        grey = to_grey(frame)
        out = None
        for k, aperture in p.scales:
            r = gaussian(abs_log(grey, k, aperture), p.window_sigma)
            out = r if out is None else out * r
        return out
