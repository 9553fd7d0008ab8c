"""Synthetic focal stacks with known ground truth (thin-lens, layered rendering).

The scene is a handful of textured surfaces. Each surface's inverse depth is
split (with linear weights) over depth bins uniform in diopters; for every
frame each bin is blurred with a Gaussian PSF of its circle of confusion, the
bins of one surface are summed (a surface does not occlude itself) and the
surfaces are composited "over" one another far to near. Hidden parts of farther
surfaces are rendered too, so a defocused near edge correctly reveals what is
behind it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dffcore.errors import DffError, did_you_mean
from dffcore.io import write_image, write_npy

logger = logging.getLogger(__name__)

SCENES: tuple[str, ...] = ("default", "planes", "slant", "steps")
_N_BINS = 48  # depth bins (uniform in diopters) for continuous surfaces
_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera", "brick")


@dataclass(frozen=True)
class ThinLensCamera:
    """An ideal thin lens.

    Parameters
    ----------
    focal_length_mm : float
        Focal length in millimetres.
    f_number : float
        Aperture as an f-number (focal length / aperture diameter).
    pixel_pitch_um : float
        Sensor pixel pitch in micrometres.
    """

    focal_length_mm: float = 25.0
    f_number: float = 2.0
    pixel_pitch_um: float = 10.0

    def coc_px(self, depth_m: np.ndarray | float, focus_m: float) -> np.ndarray:
        """Blur-circle diameter in pixels of points at ``depth_m`` when focused at ``focus_m``.

        ``c = f^2 / (N (s_f - f)) * |z - s_f| / z`` (millimetres), divided by the pixel pitch.

        Parameters
        ----------
        depth_m : ndarray or float
            Object distance(s) in metres.
        focus_m : float
            Focus distance in metres; must exceed the focal length.

        Returns
        -------
        ndarray
            Diameter(s) in pixels, float64, same shape as ``depth_m``.
        """
        f = self.focal_length_mm
        s_f = float(focus_m) * 1000.0
        if s_f <= f:
            raise DffError(f"focus distance {focus_m} m is not beyond the focal length {f} mm")
        z = np.asarray(depth_m, dtype=np.float64) * 1000.0
        c_mm = f * f / (self.f_number * (s_f - f)) * np.abs(z - s_f) / z
        return c_mm * 1000.0 / self.pixel_pitch_um


@dataclass
class SynthStack:
    """A rendered focal stack and its ground truth.

    Attributes
    ----------
    frames : ndarray
        ``(N,H,W,3)`` uint8 RGB; frame 0 is focused nearest.
    focus_distances_m : ndarray
        ``(N,)`` float64 focus distances in metres, increasing.
    depth_m : ndarray
        ``(H,W)`` float32 depth of the visible surface in metres.
    index : ndarray
        ``(H,W)`` float32 fractional slice index where each pixel is sharpest (linear in
        diopters between bracketing focus distances), clipped to ``[0, N-1]``.
    all_in_focus : ndarray
        ``(H,W,3)`` uint8 sharp image.
    camera : ThinLensCamera
        Camera used for rendering.
    scene : str
        Scene name.
    """

    frames: np.ndarray
    focus_distances_m: np.ndarray
    depth_m: np.ndarray
    index: np.ndarray
    all_in_focus: np.ndarray
    camera: ThinLensCamera
    scene: str


@functools.cache
def _skimage(name: str) -> np.ndarray | None:
    try:
        from skimage import data

        img = np.asarray(getattr(data, name)())
    except Exception as exc:  # missing or needs a download: fall back to pure noise
        logger.warning("skimage.data.%s unavailable (%s); using noise texture", name, exc)
        return None
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _texture(rng: np.random.Generator, h: int, w: int, image: str | None) -> np.ndarray:
    """Colourful multi-scale noise, optionally mixed with a cropped sample image; float32."""
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


def _scene(name: str, h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Surfaces far to near: ``(alpha (H,W), t (H,W), textured)``; t = 0 near ... 1 far.

    ``t`` is the position in the diopter range, so a plane has ``t`` affine in (x, y).
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
    return [  # default
        (full, 0.5 + 0.48 * ramp, True),
        (_disc(h, w, 0.72, 0.2, 0.2 * r), const(0.4), True),
        (_rect(h, w, 0.42, 0.92, 0.48, 0.8), const(0.26), True),
        (_disc(h, w, 0.3, 0.32, 0.24 * r), const(0.06), True),
    ]


def _bin_layers(tex: np.ndarray, alpha: np.ndarray, t: np.ndarray) -> list[tuple]:
    """Split a surface over depth bins, linearly weighted in ``t``.

    Returns ``(bin, y0, y1, x0, x1, premultiplied RGBA crop)`` per touched bin.
    """
    pos = np.clip(t, 0.0, 1.0) * (_N_BINS - 1)
    b0 = np.minimum(pos.astype(np.int32), _N_BINS - 2)
    frac = pos - b0
    out = []
    for b in np.unique(np.concatenate([b0[alpha > 0], b0[alpha > 0] + 1])):
        wgt = alpha * (np.where(b0 == b, 1.0 - frac, 0.0) + np.where(b0 + 1 == b, frac, 0.0))
        ys, xs = np.nonzero(wgt.any(axis=1))[0], np.nonzero(wgt.any(axis=0))[0]
        if ys.size:
            y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
            wc = wgt[y0:y1, x0:x1, None].astype(np.float32)
            out.append((int(b), y0, y1, x0, x1, np.concatenate([tex[y0:y1, x0:x1] * wc, wc], 2)))
    return out


def _composite(layers: list[list[tuple]], sigma: np.ndarray, h: int, w: int) -> np.ndarray:
    """One frame: blur each bin (Gaussian, ``sigma[bin]`` px), sum per surface, "over" far to near.

    Returns the un-premultiplied RGB image, float32.
    """
    acc = np.zeros((h, w, 4), np.float32)
    for surface in layers:
        buf = np.zeros((h, w, 4), np.float32)
        for b, y0, y1, x0, x1, crop in surface:
            s = float(sigma[b])
            if s < 0.3:
                buf[y0:y1, x0:x1] += crop
                continue
            m = int(np.ceil(4.0 * s)) + 1
            ya, yb, xa, xb = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
            patch = np.zeros((yb - ya, xb - xa, 4), np.float32)
            patch[y0 - ya : y1 - ya, x0 - xa : x1 - xa] = crop
            buf[ya:yb, xa:xb] += cv2.GaussianBlur(patch, (0, 0), s)  # reflects at image edges
        acc = buf + (1.0 - np.clip(buf[..., 3:], 0.0, 1.0)) * acc
    # normalising by coverage removes seams where adjacent blurred layers do not sum to 1
    return acc[..., :3] / np.maximum(acc[..., 3:], 1e-6)


def render_stack(
    scene: str = "default",
    *,
    n_frames: int = 16,
    size: tuple[int, int] = (240, 320),
    noise_sigma: float = 0.0,
    seed: int = 0,
    camera: ThinLensCamera | None = None,
    near_m: float | None = None,
    far_m: float | None = None,
) -> SynthStack:
    """Render a synthetic focal stack with ground truth.

    Parameters
    ----------
    scene : str
        One of :data:`SCENES`.
    n_frames : int
        Number of frames (>= 2).
    size : tuple of int
        ``(H, W)`` in pixels.
    noise_sigma : float
        Standard deviation of additive Gaussian noise in 8-bit grey levels.
    seed : int
        Seed for textures and noise; output is deterministic given all arguments.
    camera : ThinLensCamera, optional
        Defaults to ``ThinLensCamera()`` (25 mm, f/2, 10 um pixels).
    near_m, far_m : float, optional
        Nearest and farthest focus distances (default 0.8 m and 1.25 m, about 14.5 px
        of maximum blur with the default camera). Scene depths lie in this range.

    Returns
    -------
    SynthStack
        Frames focused from near to far (evenly spaced in diopters) and ground truth.
    """
    t_start = time.perf_counter()
    if scene not in SCENES:
        raise DffError(
            f"unknown synthetic scene {scene!r}; valid: {', '.join(SCENES)}."
            + did_you_mean(scene, SCENES)
        )
    cam = camera if camera is not None else ThinLensCamera()
    near = 0.8 if near_m is None else float(near_m)
    far = 1.25 if far_m is None else float(far_m)
    h, w = (int(v) for v in size)
    if n_frames < 2 or h < 1 or w < 1 or noise_sigma < 0:
        raise DffError(
            f"need n_frames >= 2, a positive size and noise_sigma >= 0, "
            f"got {n_frames}, {size}, {noise_sigma}"
        )
    if not cam.focal_length_mm / 1000.0 < near < far:
        raise DffError(f"need focal length < near_m < far_m, got near {near} m, far {far} m")

    d_near, d_far = 1.0 / near, 1.0 / far
    focus = 1.0 / np.linspace(d_near, d_far, n_frames)
    bin_depth = 1.0 / np.linspace(d_near, d_far, _N_BINS)
    sigma = np.stack([cam.coc_px(bin_depth, s) for s in focus]) / (2.0 * np.sqrt(2.0))

    rng = np.random.default_rng(seed)
    images = rng.permutation(len(_IMAGES))
    sharp = np.zeros((h, w, 3), np.float32)
    t_vis = np.zeros((h, w), np.float32)
    layers = []
    for i, (alpha, t, textured) in enumerate(_scene(scene, h, w)):
        if textured:
            tex = _texture(rng, h, w, _IMAGES[images[i % len(images)]])
        else:  # nearly uniform, faintly tinted
            tex = 140.0 + 2.0 * rng.standard_normal((h, w, 3)).astype(np.float32)
            tex = cv2.GaussianBlur(tex, (0, 0), 2.0) * np.float32([1.0, 0.9, 0.7])
        sharp += alpha[..., None] * (tex - sharp)
        t_vis = np.where(alpha >= 0.5, t, t_vis)
        layers.append(_bin_layers(tex, alpha, t))

    frames = np.empty((n_frames, h, w, 3), np.uint8)
    noise_rng = np.random.default_rng([seed, 1])
    for k in range(n_frames):
        img = _composite(layers, sigma[k], h, w)
        if noise_sigma > 0:
            img += noise_rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
        frames[k] = np.rint(np.clip(img, 0.0, 255.0)).astype(np.uint8)

    depth = (1.0 / (d_near + t_vis.astype(np.float64) * (d_far - d_near))).astype(np.float32)
    index = np.interp(1.0 / depth, 1.0 / focus[::-1], np.arange(n_frames, dtype=float)[::-1])
    logger.debug(
        "rendered %s: %d x %dx%d in %.2f s", scene, n_frames, h, w, time.perf_counter() - t_start
    )
    return SynthStack(
        frames=frames,
        focus_distances_m=focus,
        depth_m=depth,
        index=np.clip(index, 0, n_frames - 1).astype(np.float32),
        all_in_focus=np.rint(sharp).astype(np.uint8),
        camera=cam,
        scene=scene,
    )


def write_stack(stack: SynthStack, folder: str | os.PathLike) -> list[Path]:
    """Write a stack to ``folder`` (created if needed).

    Writes ``frame_000.png`` ..., ``focus_distances.txt`` (metres, one per line, ``#``
    header) and, in ``ground_truth/``, ``index.npy``, ``depth.npy`` and ``all_in_focus.png``;
    the folder itself is a stack that ``dff run`` reads.

    Parameters
    ----------
    stack : SynthStack
        The stack to write.
    folder : str or os.PathLike
        Destination folder.

    Returns
    -------
    list of Path
        The frame paths, in frame order.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(stack.frames):
        path = out / f"frame_{k:03d}.png"
        write_image(path, frame)
        paths.append(path)
    np.savetxt(
        out / "focus_distances.txt",
        stack.focus_distances_m,
        fmt="%.9g",
        header=f"focus distance in metres per frame (synthetic scene {stack.scene!r})",
    )
    gt = out / "ground_truth"
    gt.mkdir(exist_ok=True)
    write_npy(gt / "index.npy", stack.index)
    write_npy(gt / "depth.npy", stack.depth_m)
    write_image(gt / "all_in_focus.png", stack.all_in_focus)
    logger.info("wrote %d frames of synthetic scene %r to %s", len(paths), stack.scene, out)
    return paths
