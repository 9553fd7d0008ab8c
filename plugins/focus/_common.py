"""What the focus measures share: parameters, colour handling, pre-filter, windows.

Conventions of every measure built on :class:`LocalMeasure`:

- the image is float32 in [0, 1] for integer frames (:func:`dffcore.ops.convert.to_float32`);
- ``window`` is the side of a square **box mean** (not a sum), so values do not grow
  with the window; borders are mirrored (``BORDER_REFLECT``) for the window and for
  the operators' own kernels;
- ``gaussian_sigma`` blurs the image before the operator (0 = off);
- ``colour="luminance"`` computes on the BT.601 grey image, ``colour="max"`` on each
  RGB channel separately and keeps the per-pixel maximum.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from dffcore.core.components import FocusMeasure, Params
from dffcore.ops.convert import to_float32, to_grey
from dffcore.ops.filters import gaussian

BORDER = cv2.BORDER_REFLECT
#: floor of the denominators of ratio measures (a quarter of an 8-bit grey level)
EPS = 1e-3
PERTUZ = (
    "Pertuz, Puig & Garcia, Analysis of focus measure operators for shape-from-focus, "
    "Pattern Recognition 46(5), 2013"
)


def odd(value: int) -> int:
    """Pydantic validator body: ``value`` must be odd."""
    if value % 2 == 0:
        raise ValueError("must be odd")
    return value


class LocalParams(Params):
    window: int = Field(
        9,
        ge=1,
        le=999,
        description="side (odd, px) of the square window of the local means / variances"
        " (at most 999 px)",
    )
    gaussian_sigma: float = Field(
        0.0,
        ge=0,
        le=200,
        description="Gaussian pre-filter σ (kernel 6σ+1); 0 = off (at most 200 px)",
    )
    colour: Literal["luminance", "max"] = Field(
        "luminance",
        description="luminance: measure the grey image; max: each RGB channel, keep the largest",
    )

    @field_validator("window")
    @classmethod
    def _odd_window(cls, v: int) -> int:
        return odd(v)


def box_mean(image: np.ndarray, window: int) -> np.ndarray:
    """Mean over the ``window`` x ``window`` square centred on each pixel (float32)."""
    if window == 1:
        return image
    return cv2.boxFilter(image, cv2.CV_32F, (window, window), borderType=BORDER)


def local_variance(image: np.ndarray, window: int) -> np.ndarray:
    """Variance over the square window: mean(x²) − mean(x)², non-negative.

    ``image`` is centred on its global mean first, which keeps float32 cancellation
    small (the variance does not change).
    """
    x = image - np.float32(image.mean())
    var = cv2.sqrBoxFilter(x, cv2.CV_32F, (window, window), borderType=BORDER)
    mean = cv2.boxFilter(x, cv2.CV_32F, (window, window), borderType=BORDER)
    var -= np.square(mean, out=mean)
    return np.maximum(var, 0, out=var)


def correlate(
    image: np.ndarray, kernel: np.ndarray | list, anchor: tuple[int, int] = (-1, -1)
) -> np.ndarray:
    """``cv2.filter2D`` (correlation, not convolution) in float32 with mirrored borders."""
    return cv2.filter2D(image, cv2.CV_32F, np.asarray(kernel, np.float32), None, anchor, 0, BORDER)


def add_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a² + b²``, computed in place in ``a`` (``b`` is overwritten too)."""
    a *= a
    a += np.square(b, out=b)
    return a


def second_difference(image: np.ndarray, step: int = 1, axis: int = 1) -> np.ndarray:
    """``2 I(p) − I(p − step) − I(p + step)`` along x (``axis=1``) or y (``axis=0``)."""
    kernel = np.zeros(2 * step + 1, np.float32)
    kernel[[0, step, -1]] = -1, 2, -1
    return correlate(image, kernel[None, :] if axis == 1 else kernel[:, None])


def forward_differences(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``I(x+1, y) − I(x, y)`` and ``I(x, y+1) − I(x, y)`` (0 at the last column / row)."""
    dx = correlate(image, [[-1, 1]], (0, 0))
    dy = correlate(image, [[-1], [1]], (0, 0))
    return dx, dy


class LocalMeasure(FocusMeasure):
    """Base of the catalogue: colour handling and pre-filter around :meth:`response`."""

    Params = LocalParams

    def response(self, grey: np.ndarray) -> np.ndarray:
        """The measure of one (H,W) float32 image, windowed, non-negative, float32."""
        raise NotImplementedError

    def context(self) -> int:
        """Two windows (a variance of a variance is the widest use), the pre-filter, the
        operator's own kernel (Gaussian σ, ring radius, step: whichever the measure has)."""
        p = self.params
        extra = max(
            3 * getattr(p, "sigma", 0.0), getattr(p, "ring_outer", 0.0), getattr(p, "step", 0)
        )
        return 2 * (p.window // 2) + math.ceil(3 * p.gaussian_sigma + extra) + 4

    def mean(self, image: np.ndarray) -> np.ndarray:
        """Box mean over this measure's ``window``."""
        return box_mean(image, self.params.window)

    def measure(self, frame: np.ndarray) -> np.ndarray:
        p = self.params
        if p.colour == "max" and frame.ndim == 3 and frame.shape[2] == 3:
            # one channel at a time: no float copy of the whole RGB frame
            channels = (np.ascontiguousarray(to_float32(frame[..., c])) for c in range(3))
        else:
            channels = [to_grey(frame)]
        out = None
        for channel in channels:
            r = self.response(gaussian(channel, p.gaussian_sigma))
            out = r if out is None else np.maximum(out, r, out=out)
        return out
