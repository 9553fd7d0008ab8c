"""Transform-based focus measures (Pertuz et al. 2013, families WAV and DCT)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ._common import EPS, PERTUZ, LocalMeasure, correlate, local_variance

YANG = (
    "Yang & Nelson, Wavelet-based autofocusing and unsupervised segmentation of "
    "microscopic images, IROS 2003"
)
#: one-level Haar detail filters on the 2x2 block [[a, b], [c, d]] whose top-left is the pixel
_HAAR_DETAILS = (
    np.array([[1, -1], [1, -1]], np.float32) / 2,  # horizontal changes (vertical edges)
    np.array([[1, 1], [-1, -1]], np.float32) / 2,  # vertical changes
    np.array([[1, -1], [-1, 1]], np.float32) / 2,  # diagonal
)


def haar_details(grey: np.ndarray) -> Iterator[np.ndarray]:
    """|LH|, |HL|, |HH| of an undecimated one-level Haar transform, full resolution.

    Each pixel gets the detail coefficients of the 2x2 block it is the top-left of
    (the decimated transform keeps every other of them). Yielded one at a time.
    """
    for kernel in _HAAR_DETAILS:
        d = correlate(grey, kernel, (0, 0))
        yield np.abs(d, out=d)


def _total(images: Iterable[np.ndarray]) -> np.ndarray:
    """Sum of the images, accumulated in place in the first."""
    it = iter(images)
    total = next(it)
    for image in it:
        total += image
    return total


class WaveletSum(LocalMeasure):
    """Sum of wavelet coefficients: window mean of |LH| + |HL| + |HH| (undecimated Haar)."""

    name = "wavs"
    citation = f"{YANG}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        return self.mean(_total(haar_details(grey)))


class WaveletVariance(LocalMeasure):
    """Variance of wavelet coefficients: sum over |LH|, |HL|, |HH| of their window variance."""

    name = "wavv"
    citation = f"{YANG}; {PERTUZ}"

    def response(self, grey: np.ndarray) -> np.ndarray:
        return _total(local_variance(d, self.params.window) for d in haar_details(grey))


class DCTEnergyRatio(LocalMeasure):
    """DCT energy ratio: AC / DC energy of the window's 2-D DCT = variance / mean².

    For an orthonormal DCT of a w x w window the DC coefficient is w·mean and the total
    energy is Σ I² (Parseval), so AC/DC = (mean(I²) − mean²) / mean²: computed with box
    filters, exactly, for a sliding window (mean floored at 1e-3).
    """

    name = "dcte"
    citation = (
        f"Shen & Chen, Robust focus measure for low-contrast images, IEEE ICCE 2006; {PERTUZ}"
    )

    def response(self, grey: np.ndarray) -> np.ndarray:
        mean = np.maximum(self.mean(grey), EPS)
        return local_variance(grey, self.params.window) / np.square(mean, out=mean)
