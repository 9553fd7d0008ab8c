"""Other focus measures of Pertuz et al. 2013: Brenner, Vollath F4, Helmli's mean method."""

from __future__ import annotations

import numpy as np

from ._common import EPS, PERTUZ, LocalMeasure, correlate

SANTOS = (
    "Santos et al., Evaluation of autofocus functions in molecular cytogenetic analysis, "
    "J. Microscopy 188(3), 1997"
)


class Brenner(LocalMeasure):
    """Brenner: window mean of max((I(x+1) − I(x−1))², (I(y+1) − I(y−1))²)."""

    name = "bren"
    citation = (
        "Brenner et al., An automated microscope for cytologic research, "
        f"J. Histochem. Cytochem. 24(1), 1976; {SANTOS}; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        dx = np.abs(correlate(grey, [[-1, 0, 1]]))
        dy = np.abs(correlate(grey, [[-1], [0], [1]]))
        np.maximum(dx, dy, out=dx)
        return self.mean(np.square(dx, out=dx))


class Vollath(LocalMeasure):
    """Vollath F4: window mean of I·(I(x+1) − I(x+2)) + I·(I(y+1) − I(y+2)), clipped at 0."""

    name = "vola"
    citation = (
        "Vollath, The influence of the scene parameters and of noise on the behaviour of "
        f"automatic focusing algorithms, J. Microscopy 151(2), 1988; {SANTOS}; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        corr = correlate(grey, [[0, 1, -1]], (0, 0))
        corr += correlate(grey, [[0], [1], [-1]], (0, 0))
        corr *= grey
        out = self.mean(corr)
        return np.maximum(out, 0, out=out)


class Helmli(LocalMeasure):
    """Helmli & Scherer's mean method: window mean of max(μ, I)/min(μ, I), minus 1.

    μ is the window mean of I; the ratio's floor is 1e-3; 1 is subtracted so that a flat
    region scores 0.
    """

    name = "helm"
    citation = (
        "Helmli & Scherer, Adaptive shape from focus with an error estimation in light "
        f"microscopy, ISPA 2001; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        mu = self.mean(grey)
        ratio = np.maximum(mu, grey)
        ratio /= np.maximum(np.minimum(mu, grey), EPS)
        out = self.mean(ratio)
        out -= 1
        return np.maximum(out, 0, out=out)
