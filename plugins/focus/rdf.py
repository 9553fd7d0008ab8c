"""Ring difference filter (Surh et al., CVPR 2017)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from pydantic import Field, model_validator

from ._common import LocalMeasure, LocalParams, correlate


class RDFParams(LocalParams):
    inner_radius: float = Field(
        1.0,
        ge=0,
        le=1000,
        description="radius of the positive central disc (px; 0 = the pixel alone)"
        " (at most 1000 px)",
    )
    ring_inner: float = Field(
        2.0, ge=0, le=1000, description="inner radius of the negative ring (px) (at most 1000 px)"
    )
    ring_outer: float = Field(
        3.0, gt=0, le=1000, description="outer radius of the negative ring (px) (at most 1000 px)"
    )
    squared: bool = Field(False, description="aggregate the squared response, not its magnitude")

    @model_validator(mode="after")
    def _nested(self) -> RDFParams:
        if not self.inner_radius <= self.ring_inner < self.ring_outer:
            raise ValueError("need inner_radius <= ring_inner < ring_outer")
        if not ring_kernel(self.inner_radius, self.ring_inner, self.ring_outer).any():
            raise ValueError("the ring holds no pixel: widen ring_inner..ring_outer")
        return self


@cache
def ring_kernel(inner_radius: float, ring_inner: float, ring_outer: float) -> np.ndarray:
    """Zero-sum kernel: +1/|disc| on d ≤ inner_radius, −1/|ring| on ring_inner < d ≤ ring_outer.

    All zeros when the ring holds no pixel.
    """
    r = math.floor(ring_outer)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(x, y)
    disc = d <= inner_radius
    ring = (d > ring_inner) & (d <= ring_outer)
    if not ring.any():
        return np.zeros(d.shape, np.float32)
    kernel = (disc / disc.sum() - ring / ring.sum()).astype(np.float32)
    kernel.flags.writeable = False  # shared by the cache
    return kernel


class RingDifference(LocalMeasure):
    """Ring difference filter: window mean of |disc mean − ring mean| (or its square)."""

    name = "rdf"
    Params = RDFParams
    citation = (
        "Surh, Jeon, Park, Im, Ha & Kweon, Noise robust depth from focus using a ring "
        "difference filter, CVPR 2017"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        p = self.params
        r = correlate(grey, ring_kernel(p.inner_radius, p.ring_inner, p.ring_outer))
        r = np.square(r, out=r) if p.squared else np.abs(r, out=r)
        return self.mean(r)
