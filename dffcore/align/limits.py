"""What a focus sweep can do to the image: bounds on every estimated transform.

A focus sweep changes magnification a little (focus breathing: a few per cent from the
first frame to the last, more in macro work), and a hand-held camera adds shake: a shift,
a small rotation, a little perspective. An estimate outside these bounds is not camera
motion but a failed match (a defocused frame without features, a repeated texture), and
:mod:`dffcore.align.pairwise` treats it as a failed pair instead of chaining it into
every later frame.

A transform is described by :func:`describe`: its magnification (the geometric mean of
the linear part's singular values), anisotropy (their ratio), rotation, the shift of the
image centre and the perspective part (how far the corners move beyond the best affine
transform), the last two as fractions of the image diagonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from dffcore.core.components import Params


class MotionLimits(Params):
    """Largest plausible motion between neighbouring frames (``*_step``) and of any frame
    relative to the reference (the others)."""

    scale_step: float = Field(0.05, gt=0, description="magnification change between neighbours")
    anisotropy_step: float = Field(
        0.02, gt=0, description="ratio of the two magnifications between neighbours, minus 1"
    )
    rotation_step: float = Field(2.0, gt=0, description="rotation between neighbours (degrees)")
    shift_step: float = Field(
        0.1, gt=0, description="shift of the centre between neighbours (fraction of diagonal)"
    )
    perspective_step: float = Field(
        0.02, gt=0, description="corners' move beyond an affine map (fraction of diagonal)"
    )
    scale: float = Field(0.4, gt=0, description="magnification change from the reference")
    anisotropy: float = Field(0.15, gt=0, description="anisotropy relative to the reference")
    rotation: float = Field(15.0, gt=0, description="rotation from the reference (degrees)")
    shift: float = Field(0.3, gt=0, description="shift from the reference (fraction of diagonal)")
    perspective: float = Field(
        0.1, gt=0, description="perspective from the reference (fraction of diagonal)"
    )


@dataclass(frozen=True)
class Motion:
    """The parts of a 3x3 transform that :class:`MotionLimits` bound."""

    scale: float  # magnification - 1
    anisotropy: float  # larger / smaller singular value - 1
    rotation: float  # degrees
    shift: float  # of the image centre, fraction of the diagonal
    perspective: float  # fraction of the diagonal

    def as_dict(self) -> dict[str, float]:
        return {
            "scale": round(self.scale, 5),
            "anisotropy": round(self.anisotropy, 5),
            "rotation_deg": round(self.rotation, 4),
            "shift": round(self.shift, 5),
            "perspective": round(self.perspective, 5),
        }


def describe(t: np.ndarray, shape: tuple[int, int]) -> Motion:
    """The :class:`Motion` of a 3x3 transform on a grid of ``shape`` (H, W)."""
    h, w = shape
    diagonal = math.hypot(h, w)
    t = np.asarray(t, np.float64)
    if not (np.isfinite(t).all() and t[2, 2] != 0):
        return Motion(math.inf, math.inf, math.inf, math.inf, math.inf)
    t = t / t[2, 2]
    linear = t[:2, :2]
    s = np.linalg.svd(linear, compute_uv=False)
    if not (np.isfinite(s).all() and s[1] > 0):
        return Motion(math.inf, math.inf, math.inf, math.inf, math.inf)
    rotation = math.degrees(math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
    centre = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
    moved = t @ centre
    shift = math.hypot(*(moved[:2] / moved[2] - centre[:2])) / diagonal
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float).T
    full = t @ corners
    affine = t.copy()
    affine[2] = [0.0, 0.0, 1.0]
    projective = full[:2] / full[2]
    perspective = float(np.abs(projective - (affine @ corners)[:2]).max()) / diagonal
    return Motion(
        float(math.sqrt(s[0] * s[1]) - 1.0),
        float(s[0] / s[1] - 1.0),
        rotation,
        shift,
        perspective if np.isfinite(perspective) else math.inf,
    )


def implausible(
    t: np.ndarray, shape: tuple[int, int], limits: MotionLimits, *, step: bool
) -> str | None:
    """Why ``t`` is not motion a sweep can produce (between neighbours when ``step``,
    else relative to the reference), or None when it is plausible."""
    m = describe(t, shape)
    suffix = "_step" if step else ""
    checks = (
        ("scale", abs(m.scale), "magnification change {:.1%}"),
        ("anisotropy", m.anisotropy, "anisotropic scale {:.1%}"),
        ("rotation", abs(m.rotation), "rotation {:.2f}°"),
        ("shift", m.shift, "shift of {:.1%} of the diagonal"),
        ("perspective", m.perspective, "perspective of {:.1%} of the diagonal"),
    )
    for name, value, text in checks:
        bound = getattr(limits, name + suffix)
        if not value <= bound:  # NaN and inf fail too
            what = text.format(value) if math.isfinite(value) else f"non-finite {name}"
            return f"implausible motion: {what} (limit {name}{suffix} {bound:g})"
    return None
