"""Gradient-based focus measures (Pertuz et al. 2013, family GRA)."""

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
    add_squares,
    forward_differences,
    local_variance,
)

KROTKOV = "Krotkov, Focusing, IJCV 1(3), 1987"
SUBBARAO = "Subbarao, Choi & Nikzad, Focusing techniques, Opt. Eng. 32(11), 1993"


def sobel_energy(grey: np.ndarray) -> np.ndarray:
    """gx² + gy² of the 3x3 Sobel derivatives (OpenCV's unnormalised kernels, 8× the slope)."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, borderType=BORDER)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, borderType=BORDER)
    return add_squares(gx, gy)


class TenengradParams(LocalParams):
    threshold: float = Field(
        0.0, ge=0, description="Sobel magnitudes below it count as 0 (image in [0, 1], 8× slope)"
    )


class Tenengrad(LocalMeasure):
    """Tenengrad: window mean of the Sobel gx² + gy² where √(gx² + gy²) ≥ threshold."""

    name = "teng"
    Params = TenengradParams
    citation = f"Tenenbaum, Accommodation in computer vision, PhD thesis, Stanford, 1970; {KROTKOV}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        energy = sobel_energy(grey)
        if self.params.threshold > 0:
            energy[energy < self.params.threshold**2] = 0
        return self.mean(energy)


class TenengradVariance(LocalMeasure):
    """Tenengrad variance: window variance of the Sobel gx² + gy²."""

    name = "tenv"
    citation = (
        "Pech-Pacheco et al., Diatom autofocusing in brightfield microscopy: a comparative "
        f"study, ICPR 2000; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        return local_variance(sobel_energy(grey), self.params.window)


class GaussianDerivativeParams(LocalParams):
    sigma: float = Field(
        1.0, gt=0, le=200, description="σ of the Gaussian derivative filters (px) (at most 200 px)"
    )


class GaussianDerivative(LocalMeasure):
    """Gaussian derivative: window mean of (I ∗ ∂G/∂x)² + (I ∗ ∂G/∂y)², kernels 6σ+1."""

    name = "gder"
    Params = GaussianDerivativeParams
    citation = (
        "Geusebroek, Cornelissen, Smeulders & Geerts, Robust autofocusing in microscopy, "
        f"Cytometry 39(1), 2000; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        sigma = self.params.sigma
        x = np.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1, dtype=np.float64)
        g = np.exp(-(x * x) / (2 * sigma * sigma))
        g /= g.sum()
        d = x * g
        d /= (x * d).sum()  # a unit ramp gives a derivative of exactly 1
        g, d = g.astype(np.float32), d.astype(np.float32)
        gx = cv2.sepFilter2D(grey, cv2.CV_32F, d, g, borderType=BORDER)
        gy = cv2.sepFilter2D(grey, cv2.CV_32F, g, d, borderType=BORDER)
        return self.mean(add_squares(gx, gy))


class GradientEnergy(LocalMeasure):
    """Energy of gradient: window mean of Ix² + Iy², forward first differences."""

    name = "grae"
    citation = f"{SUBBARAO}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        dx, dy = forward_differences(grey)
        return self.mean(add_squares(dx, dy))


class SpatialFrequency(GradientEnergy):
    """Spatial frequency: √(window mean of Ix² + window mean of Iy²), i.e. √grae."""

    name = "sfrq"
    citation = (
        "Eskicioglu & Fisher, Image quality measures and their performance, "
        f"IEEE Trans. Communications 43(12), 1995; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        energy = super().response(grey)
        return np.sqrt(energy, out=energy)
