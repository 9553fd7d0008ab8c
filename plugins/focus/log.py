"""Laplacian of Gaussian focus measure."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from dffcore.components import FocusMeasure, Params
from dffcore.convert import to_grey


class LoGParams(Params):
    gaussian_ksize: int = Field(5, ge=1, description="Gaussian pre-filter kernel size (odd)")
    gaussian_sigma: float = Field(
        0.0, ge=0, description="Gaussian σ; 0 derives it from the kernel size as OpenCV does"
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

    def measure(self, frame: np.ndarray) -> np.ndarray:
        p = self.params
        grey = to_grey(frame)
        k = p.gaussian_ksize
        blurred = cv2.GaussianBlur(grey, (k, k), p.gaussian_sigma) if k > 1 else grey
        return np.abs(cv2.Laplacian(blurred, cv2.CV_32F, ksize=p.laplacian_ksize))
