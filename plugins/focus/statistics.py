"""Statistics-based focus measures (Pertuz et al. 2013, family STA)."""

from __future__ import annotations

import numpy as np

from ._common import EPS, PERTUZ, LocalMeasure, local_variance

PECH = (
    "Pech-Pacheco et al., Diatom autofocusing in brightfield microscopy: "
    "a comparative study, ICPR 2000"
)


class GreyLevelVariance(LocalMeasure):
    """Grey-level variance: window variance of I."""

    name = "glva"
    citation = f"Krotkov, Focusing, IJCV 1(3), 1987; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        return local_variance(grey, self.params.window)


class NormalisedGreyLevelVariance(LocalMeasure):
    """Normalised grey-level variance: window variance of I / max(window mean of I, 1e-3)."""

    name = "glvn"
    citation = (
        "Santos et al., Evaluation of autofocus functions in molecular cytogenetic analysis, "
        f"J. Microscopy 188(3), 1997; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        var = local_variance(grey, self.params.window)
        return var / np.maximum(self.mean(grey), EPS)


class GreyLevelLocalVariance(LocalMeasure):
    """Grey-level local variance (Pertuz's GLLV): window variance of the window variance of I."""

    name = "glll"
    citation = f"{PECH}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        w = self.params.window
        return local_variance(local_variance(grey, w), w)


class AbsoluteCentralMoment(LocalMeasure):
    """Absolute central moment: window mean of |I − (window mean of I)|.

    Shirvaikar's Σₖ |k − μ| Pₖ over the window's histogram is the mean absolute deviation
    of the window from its mean μ. Vectorised, each pixel's deviation is taken from the
    mean of the window centred on that pixel rather than on the output pixel.
    """

    name = "acmo"
    citation = (
        "Shirvaikar, An optimal measure for camera focus and exposure, Proc. IEEE "
        f"Southeastern Symposium on System Theory, 2004; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        deviation = grey - self.mean(grey)
        return self.mean(np.abs(deviation, out=deviation))
