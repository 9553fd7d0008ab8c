"""Does a focus volume hold focus information at all? A stack-level calibration of confidence.

Per-pixel confidences (prominence, peak ratio, curvature) measure how peaked a focus
curve is, but a curve of pure noise has a peak too: on eight frames of noise the
prominence averages 0.06–0.08, on 32 frames 0.10–0.12, about what a hand-held real
stack gets in its weak areas. Two properties of real focus curves separate them from
noise; each pixel's curve is centred on its own mean first:

- **across frames**: defocus changes slowly with the focus position, so a pixel's focus
  values at neighbouring frames move together. The lag-1 correlation of the curves
  (pooled over the image) is 0.37–0.92 on the hand-held, light-field and synthetic stacks
  of ``../shared/data`` and ``dffcore.eval.synth`` for classic, fast and best;
  independent noise gives −1/N (the centring): measured −0.25, −0.12, −0.03 for 4, 8 and
  32 frames of noise and for identical frames plus noise. It fails for sparse sweeps
  whose depth of field is thinner than the frame spacing: the 3 MP ``pcb_macro`` stack
  (10 frames, a peak one frame wide) gives −0.04 to 0.14.
- **across the image**: depth is coherent in space, so the curves of two pixels
  :data:`OFFSET` px apart peak at the same frames. Their mean cosine similarity is
  0.28–0.55 on ``pcb_macro`` (0.04–0.89 over all the stacks above; lowest for classic on
  the hand-held ones, whose curves are noisier) and within ±0.015 on noise, as
  long as the focus measure's window is narrower than the offset.

:func:`focus_evidence` maps each to [0, 1] — the correlation linearly from −1/N (0) to
:data:`RHO_FULL` (1), the cosine from :data:`COS_NOISE` (0) to :data:`COS_FULL` (1) —
and takes the larger: every real stack above gets 1, so its confidence is unchanged,
and a stack without focus information (noise; identical frames plus noise) gets ≤ 0.03.
The run engine multiplies the final confidence by it (after every stage, so no stage's
weighting changes) and records it as ``focus_evidence`` in ``run.json``'s diagnostics.
Stacks of fewer than :data:`MIN_FRAMES` frames are not judged. Frames that are all
identical give flat curves, whose confidence is already 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dffcore.core.data import FocusVolume

#: the curves' lag-1 correlation from which a stack counts as fully informative
RHO_FULL = 0.25
#: mean cosine of curves OFFSET px apart: noise stays below COS_NOISE, a real stack with
#: coherent depth reaches COS_FULL
COS_NOISE, COS_FULL = 0.03, 0.2
#: horizontal distance (px) of the pixel pairs compared across the image: beyond the
#: windows of the built-in focus measures' defaults
OFFSET = 16
#: fewer frames than this are not judged (evidence 1)
MIN_FRAMES = 4
#: pixels per frame the statistics are computed on (a regular grid over the image)
SAMPLES = 20_000


@dataclass
class CurveSums:
    """Sums from which the evidence is computed, added up region by region.

    A run in bands adds each band's own rows; the pixels sampled lie on one grid of the
    whole image (every ``step``-th row and column, at most :data:`SAMPLES` pixels, each
    paired with the pixel :data:`OFFSET` px to its right), so the result is the same as
    for the whole image at once.
    """

    step: int = 1
    cross: float = 0.0  # sum over pixels and k of d_k d_(k+1), d = curve minus its mean
    power: float = 0.0  # sum of d_k squared
    level: float = 0.0  # sum over pixels of |curve mean|
    pixels: int = 0
    cosines: float = 0.0  # sum over pixel pairs of the cosine of their centred curves
    pairs: int = 0
    frames: int = 0

    @classmethod
    def for_image(cls, h: int, w: int) -> CurveSums:
        """Empty sums on the sampling grid of an (h, w) image."""
        return cls(step=max(1, math.ceil(math.sqrt(h * w / SAMPLES))))

    def add(self, volume: FocusVolume, rows: slice = slice(None), first_row: int = 0) -> None:
        """Add the pixels of ``volume`` in its ``rows`` whose image row (``first_row`` +
        the volume's row) is on the grid; pixels missing or non-finite in a frame are
        left out."""
        data = volume.data
        n, h, w = data.shape
        self.frames = n
        a, b, _ = rows.indices(h)
        a += (-(first_row + a)) % self.step  # the first grid row at or after a
        grid = data[:, a : b : self.step]
        valid = None if volume.valid is None else volume.valid[:, a : b : self.step]
        dev, mean = self._centred(grid[:, :, :: self.step], valid, slice(None, None, self.step))
        if dev is None:
            return
        self.level += float(np.abs(mean).sum())
        self.pixels += dev.shape[1]
        self.power += float(np.einsum("ij,ij->", dev, dev))
        self.cross += float(np.einsum("ij,ij->", dev[:-1], dev[1:]))
        if w > OFFSET:  # pairs (x, x + OFFSET) for the grid columns x < w - OFFSET
            cols = slice(0, w - OFFSET, self.step)
            shifted = slice(OFFSET, w, self.step)
            both = np.isfinite(grid[:, :, cols]).all(axis=0) & np.isfinite(grid[:, :, shifted]).all(
                axis=0
            )
            if valid is not None:
                both &= valid[:, :, cols].all(axis=0) & valid[:, :, shifted].all(axis=0)
            left = grid[:, :, cols].reshape(n, -1).astype(np.float64)
            right = grid[:, :, shifted].reshape(n, -1).astype(np.float64)
            if not both.all():
                left, right = left[:, both.ravel()], right[:, both.ravel()]
            left -= left.mean(axis=0)
            right -= right.mean(axis=0)
            norms = np.sqrt(np.einsum("ij,ij->j", left, left) * np.einsum("ij,ij->j", right, right))
            tiny = 1e-12 * (np.abs(mean).mean() if mean.size else 0.0) ** 2 * n
            ok = norms > tiny
            self.cosines += float((np.einsum("ij,ij->j", left, right)[ok] / norms[ok]).sum())
            self.pairs += int(ok.sum())

    @staticmethod
    def _centred(
        sub: np.ndarray, valid: np.ndarray | None, cols: slice
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The curves of the grid pixels valid and finite in every frame, centred (float64,
        (N, M)), and their means; None when there are none."""
        n = sub.shape[0]
        flat = sub.reshape(n, -1)
        mask = np.isfinite(flat).all(axis=0)
        if valid is not None:
            mask &= valid[:, :, cols].reshape(n, -1).all(axis=0)
        if not mask.any():
            return None, np.zeros(0)
        dev = (flat if mask.all() else flat[:, mask]).astype(np.float64)  # (N, <= SAMPLES)
        mean = dev.mean(axis=0)
        dev -= mean
        return dev, mean

    def correlation(self) -> float:
        """Lag-1 correlation of the added curves across frames; 0 for flat curves or none."""
        if self.frames < 2 or self.pixels == 0:
            return 0.0
        scale = self.level / self.pixels
        if scale <= 0 or self.power <= 1e-12 * self.frames * self.pixels * scale**2:
            return 0.0  # flat curves (up to rounding): no peak at all
        return self.cross / self.power

    def coherence(self) -> float:
        """Mean cosine of the centred curves of pixels :data:`OFFSET` px apart; 0 for none."""
        return self.cosines / self.pairs if self.pairs else 0.0

    def evidence(self) -> float:
        """Factor in [0, 1] for the confidence (see the module doc), to 3 decimals."""
        n = self.frames
        if n < MIN_FRAMES:
            return 1.0
        noise = -1.0 / n
        across_frames = (self.correlation() - noise) / (RHO_FULL - noise)
        across_image = (self.coherence() - COS_NOISE) / (COS_FULL - COS_NOISE)
        value = max(across_frames, across_image)
        return round(float(np.clip(value, 0.0, 1.0)), 3)


def _whole(volume: FocusVolume) -> CurveSums:
    sums = CurveSums.for_image(*volume.data.shape[1:])
    sums.add(volume)
    return sums


def curve_correlation(volume: FocusVolume) -> float:
    """Lag-1 correlation across frames of the focus curves of a whole volume."""
    return _whole(volume).correlation()


def curve_coherence(volume: FocusVolume) -> float:
    """Mean cosine of the focus curves of pixels :data:`OFFSET` px apart, whole volume."""
    return _whole(volume).coherence()


def focus_evidence(volume: FocusVolume) -> float:
    """Factor in [0, 1] for the confidence of a stack: 0 = no focus information (see the
    module doc), 1 = a real focal sweep."""
    return _whole(volume).evidence()
