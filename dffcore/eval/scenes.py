"""The scenes of the synthetic renderer (:mod:`dffcore.eval.synth`): surfaces and textures.

A scene is a few surfaces, far to near, each an alpha mask, a position ``t`` in the diopter
range per pixel (0 nearest, 1 farthest) and a texture flag; :func:`scene_surfaces` builds
them and :func:`texture` paints one. Textures mix multi-scale colour noise with crops of
scikit-image's bundled photographs (:data:`TEXTURE_IMAGES`).

**Scenes** (:data:`SCENES`; layouts are fixed fractions of the image, textures and the
``smooth`` surface follow ``seed``):

- ``default``: a slanted background, two discs and a rectangle at three depths.
- ``planes``: four fronto-parallel planes (background, rectangle, disc, rectangle).
- ``slant``: one plane, depth linear in x in diopters (index linear in x).
- ``steps``: five vertical bands at different depths; the middle band is untextured.
- ``spheres``: three spherical caps bulging toward the camera over a flat background
  (each cap's inverse depth is ``t_rim - (t_rim - t_apex) sqrt(1 - (r/R)^2)``, so the
  nearest point is its centre; stretched in depth to span many slices, so strictly
  half-ellipsoids). The small one sits on the background, the others float.
- ``cones``: three cones, apex toward the camera, inverse depth linear in the radius.
- ``smooth``: one smooth random surface (a 4-row grid of Gaussian numbers upsampled
  bicubically, scaled to 5 %..95 % of the range); the shape depends on ``seed`` but not
  on the image size.
- ``textureless``: a textured slanted background and disc with three uniform patches: one
  painted on the background (same depth), two floating nearer.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SCENES: tuple[str, ...] = (
    "default",
    "planes",
    "slant",
    "steps",
    "spheres",
    "cones",
    "smooth",
    "textureless",
)
TEXTURE_IMAGES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "camera",
    "brick",
)
"""Names of the ``skimage.data`` photographs that textures are cropped from."""


@functools.cache
def _skimage(name: str) -> np.ndarray | None:
    try:
        from skimage import data

        img = np.asarray(getattr(data, name)())
    except Exception as exc:  # missing or needs a download: fall back to pure noise
        logger.warning("skimage.data.%s unavailable (%s); using noise texture", name, exc)
        return None
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def texture(rng: np.random.Generator, h: int, w: int, image: str | None) -> np.ndarray:
    """Colourful multi-scale noise, optionally mixed with a cropped sample image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the noise, tint and crop; the draws follow a fixed order.
    h, w : int
        Size in pixels.
    image : str or None
        A ``skimage.data`` photograph (one of :data:`TEXTURE_IMAGES`) to mix in, or None
        for noise only (also the fallback when the photograph cannot be loaded).

    Returns
    -------
    ndarray
        ``(h, w, 3)`` float32 RGB in ``[0, 255]``.
    """
    noise = np.zeros((h, w, 3), np.float32)
    for scale, weight in ((1, 0.6), (3, 0.8), (9, 1.0), (27, 1.0)):
        small = rng.standard_normal((-(-h // scale), -(-w // scale), 3)).astype(np.float32)
        noise += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise /= noise.std() + 1e-6
    tint = rng.uniform(60.0, 200.0, 3).astype(np.float32)
    tex = tint + 50.0 * noise
    img = _skimage(image) if image else None
    if img is not None:
        ih, iw = img.shape[:2]
        scale = rng.uniform(0.6, 1.0) * min(ih / h, iw / w)
        ch, cw = max(int(h * scale), 1), max(int(w * scale), 1)
        y0, x0 = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
        crop = img[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        tex = 0.6 * crop + 0.4 * tex
    return np.clip(tex, 0.0, 255.0)


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    return np.clip(r - np.hypot((yy - cy * h), (xx - cx * w)) + 0.5, 0.0, 1.0).astype(np.float32)


def _rect(h: int, w: int, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = 1.0
    return m


def _cap(
    h: int, w: int, cy: float, cx: float, r: float, t_rim: float, t_apex: float, cone: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """A textured spherical cap (or cone) of radius ``r`` px: ``(alpha, t, True)``.

    ``t`` goes from ``t_rim`` at the rim to ``t_apex`` (nearest) at the centre, with the
    profile ``sqrt(1 - (rho/r)^2)`` of a sphere, or ``1 - rho/r`` for a cone.
    """
    yy, xx = np.ogrid[:h, :w]
    rho = np.minimum(np.hypot(yy - cy * h, xx - cx * w) / r, 1.0)
    bulge = 1.0 - rho if cone else np.sqrt(1.0 - rho * rho)
    return _disc(h, w, cy, cx, r), (t_rim - (t_rim - t_apex) * bulge).astype(np.float32), True


def _smooth_surface(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random ``t`` field: a coarse Gaussian grid upsampled bicubically, 0.05..0.95."""
    rng = np.random.default_rng([seed, 2])
    rows = 4
    cols = max(2, round(rows * w / h))
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    field_ = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field_.min()), float(field_.max())
    return (0.05 + 0.9 * (field_ - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def scene_surfaces(
    name: str, h: int, w: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    """The surfaces of scene ``name``, far to near: ``(alpha (H,W), t (H,W), textured)``.

    ``t`` is the position in the diopter range (0 near ... 1 far), so a plane has ``t``
    affine in (x, y). ``textured`` is True (photographic texture), False (nearly uniform)
    or a float: nearly uniform with that brightness factor. An unknown ``name`` gives the
    ``default`` scene (:func:`dffcore.eval.synth.render_stack` checks names first);
    ``seed`` matters only for ``smooth``.
    """
    full = np.ones((h, w), np.float32)
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, w))

    def const(t: float) -> np.ndarray:
        return np.full((h, w), t, np.float32)

    r = min(h, w)
    if name == "planes":
        return [
            (full, const(0.92), True),
            (_rect(h, w, 0.08, 0.45, 0.55, 0.92), const(0.68), True),
            (_disc(h, w, 0.62, 0.62, 0.24 * r), const(0.42), True),
            (_rect(h, w, 0.2, 0.85, 0.08, 0.34), const(0.12), True),
        ]
    if name == "slant":
        return [(full, 0.02 + 0.96 * ramp, True)]
    if name == "steps":  # band 2 (t = 0.55) is nearly uniform
        band_t = np.array([0.85, 0.15, 0.55, 0.35, 0.7], np.float32)
        col_t = band_t[np.minimum((ramp[0] * len(band_t)).astype(int), len(band_t) - 1)]
        # a band also exists behind every nearer band, so defocused near edges reveal it
        return [
            (
                (np.broadcast_to(col_t, (h, w)) <= band_t[i]).astype(np.float32),
                const(float(band_t[i])),
                i != 2,
            )
            for i in np.argsort(-band_t)
        ]
    if name in ("spheres", "cones"):
        cone = name == "cones"
        return [
            (full, const(0.9), True),
            _cap(h, w, 0.8, 0.3, 0.14 * r, 0.9, 0.6, cone),  # sits on the background
            _cap(h, w, 0.35, 0.28, 0.26 * r, 0.75, 0.25, cone),
            _cap(h, w, 0.62, 0.7, 0.3 * r, 0.85, 0.08, cone),
        ]
    if name == "smooth":
        return [(full, _smooth_surface(h, w, seed), True)]
    if name == "textureless":
        back_t = 0.55 + 0.4 * ramp
        return [
            (full, back_t, True),
            (_rect(h, w, 0.1, 0.45, 0.6, 0.9), back_t, 0.75),  # painted on the background
            (_disc(h, w, 0.7, 0.75, 0.18 * r), const(0.35), True),
            (_rect(h, w, 0.15, 0.55, 0.1, 0.45), const(0.25), 1.15),
            (_disc(h, w, 0.72, 0.3, 0.16 * r), const(0.1), 0.85),
        ]
    return [  # default
        (full, 0.5 + 0.48 * ramp, True),
        (_disc(h, w, 0.72, 0.2, 0.2 * r), const(0.4), True),
        (_rect(h, w, 0.42, 0.92, 0.48, 0.8), const(0.26), True),
        (_disc(h, w, 0.3, 0.32, 0.24 * r), const(0.06), True),
    ]
