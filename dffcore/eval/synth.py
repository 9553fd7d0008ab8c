"""Synthetic focal stacks with known ground truth: a thin-lens, layered renderer.

Use it to test and benchmark depth from focus where real stacks have no ground truth::

    from dffcore.eval.synth import render_stack, write_stack

    s = render_stack("spheres", n_frames=16, size=(240, 320), noise_sigma=2.0, seed=1,
                     exposure_flicker=0.02, focus_breathing=0.03, shake_px=1.5, shake_deg=0.2)
    s.frames        # (16, 240, 320, 3) uint8, focused near -> far
    s.index         # (240, 320) float32 ground-truth slice index, in frame 0's grid
    s.transforms    # (16, 3, 3) frame-0 pixel -> frame-k pixel (identity when no motion)
    write_stack(s, "stack/")   # frames, focus_distances.txt, ground_truth/ (+ metadata.json)
    write_stack_tiff(s, "zstack/stack.ome.tif", "ome", z_step_um=0.5)  # one 16-bit z-stack

or ``dff synth stack/ --scene spheres --frames 16 --noise 2``. The user guide with a table
of every scene and option is ``docs/synthetic.md``.

**Camera.** An ideal thin lens (:class:`ThinLensCamera`; default 25 mm, f/2, 10 um
pixels). A point at distance ``z`` seen with the lens focused at ``s`` is spread over a
blur circle of diameter (Potmesil & Chakravarty, "A lens and aperture camera model for
synthetic image generation", SIGGRAPH 1981)::

    c = f^2 / (N (s - f)) * |z - s| / z          (f focal length, N f-number)

divided by the pixel pitch to get pixels. The point-spread function is a Gaussian of
``sigma = c / (2 sqrt 2)`` (the blur radius over sqrt 2, the usual Gaussian approximation
of depth from defocus, e.g. Subbarao & Surya, IJCV 13(3), 1994). The default sweep, 0.8 m
to 1.25 m, blurs the farthest scene point by about 14.5 px in the nearest frame.

**Focus sweep and index.** Frame ``k`` of ``N`` is focused at ``1 / s_k`` evenly spaced in
diopters from ``1 / near`` (frame 0) to ``1 / far`` (frame N-1), so a point at depth ``z``
is sharpest at the fractional index ``(N - 1) (1/near - 1/z) / (1/near - 1/far)``; that is
``index.npy``. Every scene lies within ``[near, far]``.

**Rendering.** A scene is a few surfaces, each an alpha mask and an inverse depth per
pixel. Each surface's inverse depth is split (with linear weights) over 48 depth bins
uniform in diopters; for every frame each bin is blurred with its PSF, the bins of one
surface are summed (a surface does not occlude itself) and the surfaces are composited
"over" one another far to near. Hidden parts of farther surfaces are rendered too, so a
defocused near edge reveals what is behind it (partial occlusion). Textures mix
multi-scale colour noise with crops of scikit-image's bundled photographs.

**Scenes** (:data:`SCENES`, defined in :mod:`dffcore.eval.scenes` with their
layouts): ``default``, ``planes``, ``slant``, ``steps``, ``spheres``, ``cones``, ``smooth``
and ``textureless``; layouts are fixed fractions of the image, textures and the
``smooth`` surface follow ``seed``.

**Nuisances** (all off by default; each draws from its own generator seeded
``[seed, k]``, so switching one on changes nothing else):

- ``noise_sigma``: additive Gaussian noise (grey levels), generator ``[seed, 1]``.
- ``exposure_flicker``: frame ``k``'s image is multiplied by a gain ``g_k ~ 1 + flicker *
  N(0, 1)`` (clipped to >= 0.05) before noise and 8-bit clipping; ``[seed, 3]``.
- ``focus_breathing``: frame ``k`` is magnified by ``m_k = 1 + breathing * k / (N - 1)``
  about the image centre ``((W-1)/2, (H-1)/2)``: frame 0 has magnification 1 and is the
  reference grid of the ground truth.
- ``shake_px``, ``shake_deg``: hand-held shake, a random translation (std ``shake_px`` per
  axis) and rotation (std ``shake_deg``) about the centre per frame, ``[seed, 4]``;
  frame 0 is not moved.

Frame ``k``'s transform is ``T_k = S_k @ B_k`` (breathing, then shake): a 3x3 homography
mapping frame-0 pixel coordinates ``(x, y, 1)`` to frame-``k`` pixel coordinates, the
convention of :mod:`dffcore.ops.warp`, so ``dffcore.ops.warp.warp(frame_k, T_k, (H, W))`` brings a
frame back onto the ground truth's grid. The frames are the defocused renders warped
by ``T_k`` (bicubic, on the float image before flicker and noise). Content that a moved
frame shows from outside the rendered view is the mirror image of the view's border
(``cv2.BORDER_REFLECT_101``), not new scene content: score alignment only where
``dffcore.ops.warp.valid_mask(T_k, (H, W), (H, W))`` is true. The PSF is not rescaled by the
magnification (a 3 % change of a blur of at most ~15 px).

**Ground truth** (always in frame 0's grid; :func:`write_stack` writes it in
``ground_truth/``): ``index.npy`` (float32 fractional slice index), ``depth.npy`` (float32
metres), ``all_in_focus.png`` (sharp, no noise, flicker or motion) and ``metadata.json``
(camera, sweep, scene, seed and every nuisance setting, the drawn exposure gains and the
per-frame transforms).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dffcore.core.errors import DffError, did_you_mean
from dffcore.eval.scenes import SCENES, TEXTURE_IMAGES, scene_surfaces, texture
from dffcore.io.images import atomic_write_bytes, write_image, write_npy

logger = logging.getLogger(__name__)

#: the largest stack :func:`render_stack` renders: frames, pixels a side, pixels a frame
MAX_FRAMES, MAX_SIDE, MAX_PIXELS = 1000, 16384, 64_000_000
_N_BINS = 48  # depth bins (uniform in diopters) for continuous surfaces


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
        ``(N,H,W,3)`` uint8 RGB; frame 0 is focused nearest and is the reference grid.
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
    transforms : ndarray or None
        ``(N,3,3)`` float64 homographies mapping frame-0 pixels ``(x, y, 1)`` to frame
        ``k``'s pixels (the :mod:`dffcore.ops.warp` convention); identity without breathing
        or shake. ``None`` for a stack not made by :func:`render_stack`.
    metadata : dict
        JSON-serialisable description of the render (camera, focus distances, range,
        scene, seed, nuisance settings, exposure gains, transforms); written by
        :func:`write_stack` as ``ground_truth/metadata.json``.
    """

    frames: np.ndarray
    focus_distances_m: np.ndarray
    depth_m: np.ndarray
    index: np.ndarray
    all_in_focus: np.ndarray
    camera: ThinLensCamera
    scene: str
    transforms: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


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


def _motion(
    n: int, h: int, w: int, breathing: float, shake_px: float, shake_deg: float, seed: int
) -> np.ndarray:
    """``(n,3,3)`` frame-0 pixel -> frame-k pixel: magnification about the centre, then shake."""
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    out = np.tile(np.eye(3), (n, 1, 1))
    draws = np.zeros((n, 3))
    if shake_px > 0 or shake_deg > 0:
        rng = np.random.default_rng([seed, 4])
        draws[1:] = rng.standard_normal((n - 1, 3)) * [shake_px, shake_px, shake_deg]
    for k in range(1, n):
        m = 1.0 + breathing * k / (n - 1)
        dx, dy, deg = draws[k]
        cos, sin = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        rot = np.array([[cos, -sin], [sin, cos]])
        a = rot * m  # x' = c + (dx, dy) + R m (x - c)
        out[k, :2, :2] = a
        out[k, :2, 2] = c + np.array([dx, dy]) - a @ c
    return out


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
    sweep_m: tuple[float, float] | None = None,
    exposure_flicker: float = 0.0,
    focus_breathing: float = 0.0,
    shake_px: float = 0.0,
    shake_deg: float = 0.0,
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
        Seed for textures, the ``smooth`` surface and every random nuisance; output is
        deterministic given all arguments.
    camera : ThinLensCamera, optional
        Defaults to ``ThinLensCamera()`` (25 mm, f/2, 10 um pixels).
    near_m, far_m : float, optional
        Nearest and farthest focus distances (default 0.8 m and 1.25 m, about 14.5 px
        of maximum blur with the default camera). Scene depths lie in this range.
    sweep_m : tuple of float, optional
        Focus distances of the first and the last frame when the sweep should not match the
        scene's depth range: ``(0.4, 1.25)`` starts far in front of a scene at 0.8-1.25 m,
        so the first frames are defocused everywhere and almost featureless. Default
        ``(near_m, far_m)``. Ground-truth indices then lie inside the sweep's range.
    exposure_flicker : float
        Relative standard deviation of a per-frame gain ``1 + flicker * N(0, 1)`` (clipped
        to >= 0.05), applied before noise; the gains are in ``metadata["exposure_gains"]``.
        0 (default) = off.
    focus_breathing : float
        Magnification change from the first to the last frame, linear in the frame index,
        about the image centre: 0.03 zooms the last frame in by 3 %, negative zooms out.
        Frame 0 keeps magnification 1. 0 (default) = off.
    shake_px, shake_deg : float
        Standard deviations of a random per-frame translation (pixels, per axis) and
        rotation about the image centre (degrees); frame 0 is not moved. 0 = off.

    Returns
    -------
    SynthStack
        Frames focused from near to far (evenly spaced in diopters), ground truth in frame
        0's grid, the per-frame ``transforms`` and ``metadata``.
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
    if not 2 <= n_frames <= MAX_FRAMES:
        raise DffError(f"n_frames = {n_frames}: expected 2 to {MAX_FRAMES} frames")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and h * w <= MAX_PIXELS):
        raise DffError(
            f"size = {h}x{w}: expected 1 to {MAX_SIDE} pixels a side and at most "
            f"{MAX_PIXELS / 1e6:g} megapixels"
        )
    if not (np.isfinite(noise_sigma) and 0 <= noise_sigma <= 255):
        raise DffError(f"noise_sigma = {noise_sigma}: expected a number in [0, 255] grey levels")
    if not cam.focal_length_mm / 1000.0 < near < far:
        raise DffError(f"need focal length < near_m < far_m, got near {near} m, far {far} m")
    nuisances = {
        "exposure_flicker": (exposure_flicker, 0.0, 1.0),
        "focus_breathing": (focus_breathing, -0.5, 0.5),
        "shake_px": (shake_px, 0.0, float(max(h, w))),
        "shake_deg": (shake_deg, 0.0, 45.0),
    }
    for name, (value, lo, hi) in nuisances.items():
        if not (np.isfinite(value) and lo <= value <= hi):
            raise DffError(f"{name} = {value}: expected a number in [{lo:g}, {hi:g}]")

    d_near, d_far = 1.0 / near, 1.0 / far
    s_near, s_far = (near, far) if sweep_m is None else (float(sweep_m[0]), float(sweep_m[1]))
    if not cam.focal_length_mm / 1000.0 < s_near < s_far:
        raise DffError(f"need focal length < sweep_m[0] < sweep_m[1], got {sweep_m}")
    focus = 1.0 / np.linspace(1.0 / s_near, 1.0 / s_far, n_frames)
    bin_depth = 1.0 / np.linspace(d_near, d_far, _N_BINS)
    sigma = np.stack([cam.coc_px(bin_depth, s) for s in focus]) / (2.0 * np.sqrt(2.0))

    rng = np.random.default_rng(seed)
    images = rng.permutation(len(TEXTURE_IMAGES))
    sharp = np.zeros((h, w, 3), np.float32)
    t_vis = np.zeros((h, w), np.float32)
    layers = []
    for i, (alpha, t, textured) in enumerate(scene_surfaces(scene, h, w, seed)):
        if textured and not isinstance(textured, float):
            tex = texture(rng, h, w, TEXTURE_IMAGES[images[i % len(images)]])
        else:  # nearly uniform, faintly tinted
            tex = 140.0 + 2.0 * rng.standard_normal((h, w, 3)).astype(np.float32)
            tex = cv2.GaussianBlur(tex, (0, 0), 2.0) * np.float32([1.0, 0.9, 0.7])
            if isinstance(textured, float):  # a brightness factor
                tex *= np.float32(textured)
        sharp += alpha[..., None] * (tex - sharp)
        t_vis = np.where(alpha >= 0.5, t, t_vis)
        layers.append(_bin_layers(tex, alpha, t))

    transforms = _motion(n_frames, h, w, focus_breathing, shake_px, shake_deg, seed)
    gains = np.ones(n_frames)
    if exposure_flicker > 0:
        flicker_rng = np.random.default_rng([seed, 3])
        gains = np.maximum(1.0 + exposure_flicker * flicker_rng.standard_normal(n_frames), 0.05)

    frames = np.empty((n_frames, h, w, 3), np.uint8)
    noise_rng = np.random.default_rng([seed, 1])
    for k in range(n_frames):
        img = _composite(layers, sigma[k], h, w)
        if not np.array_equal(transforms[k], np.eye(3)):
            img = cv2.warpPerspective(
                img,
                transforms[k],
                (w, h),
                flags=cv2.INTER_CUBIC,
                borderMode=cv2.BORDER_REFLECT_101,
            )
        if gains[k] != 1.0:
            img *= np.float32(gains[k])
        if noise_sigma > 0:
            img += noise_rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
        frames[k] = np.rint(np.clip(img, 0.0, 255.0)).astype(np.uint8)

    depth = (1.0 / (d_near + t_vis.astype(np.float64) * (d_far - d_near))).astype(np.float32)
    index = np.interp(1.0 / depth, 1.0 / focus[::-1], np.arange(n_frames, dtype=float)[::-1])
    metadata = {
        "generator": "dffcore.eval.synth.render_stack",
        "scene": scene,
        "seed": int(seed),
        "n_frames": int(n_frames),
        "size_hw": [h, w],
        "camera": {
            "focal_length_mm": cam.focal_length_mm,
            "f_number": cam.f_number,
            "pixel_pitch_um": cam.pixel_pitch_um,
        },
        "near_m": near,
        "far_m": far,
        "sweep_m": [s_near, s_far],
        "focus_distances_m": focus.tolist(),
        "focus_spacing": "even in diopters, frame 0 nearest",
        "noise_sigma": float(noise_sigma),
        "exposure_flicker": float(exposure_flicker),
        "exposure_gains": gains.tolist(),
        "focus_breathing": float(focus_breathing),
        "magnification": (1.0 + focus_breathing * np.arange(n_frames) / (n_frames - 1)).tolist(),
        "shake_px": float(shake_px),
        "shake_deg": float(shake_deg),
        "reference_frame": 0,
        "transform_convention": "3x3 homography: frame-0 pixel (x, y, 1) -> frame-k pixel "
        "(as dffcore.ops.warp); pixel centres at integer coordinates",
        "border": "BORDER_REFLECT_101 (mirrored view border, not scene content)",
        "transforms": transforms.tolist(),
    }
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
        transforms=transforms,
        metadata=metadata,
    )


def write_stack(stack: SynthStack, folder: str | os.PathLike) -> list[Path]:
    """Write a stack to ``folder`` (created if needed).

    Writes ``frame_000.png`` ..., ``focus_distances.txt`` (metres, one per line, ``#``
    header) and, in ``ground_truth/``, ``index.npy``, ``depth.npy``, ``all_in_focus.png``
    and ``metadata.json`` (``stack.metadata``; for a stack built by hand, at least the
    scene, camera and focus distances); the folder itself is a stack that ``dff run`` reads.
    Every file is written atomically.

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
    _write_ground_truth(stack, out)
    logger.info("wrote %d frames of synthetic scene %r to %s", len(paths), stack.scene, out)
    return paths


def _write_ground_truth(
    stack: SynthStack, out: Path, depth: np.ndarray | None = None, **extra: Any
) -> None:
    """``out/ground_truth/``: index.npy, depth.npy (``depth``, else the scene's distances
    in metres), all_in_focus.png, metadata.json (``extra`` added to the metadata)."""
    gt = out / "ground_truth"
    gt.mkdir(exist_ok=True)
    write_npy(gt / "index.npy", stack.index)
    write_npy(gt / "depth.npy", stack.depth_m if depth is None else depth)
    write_image(gt / "all_in_focus.png", stack.all_in_focus)
    cam = stack.camera
    metadata = {
        "scene": stack.scene,
        "n_frames": len(stack.frames),
        "camera": {
            "focal_length_mm": cam.focal_length_mm,
            "f_number": cam.f_number,
            "pixel_pitch_um": cam.pixel_pitch_um,
        },
        "focus_distances_m": np.asarray(stack.focus_distances_m, dtype=float).tolist(),
        **stack.metadata,
        **extra,
    }
    # one line per key: readable, and the transforms stay one compact list
    lines = [f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in metadata.items()]
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    atomic_write_bytes(gt / "metadata.json", text.encode("utf-8"))


#: the TIFF layouts :func:`write_stack_tiff` writes and their file names
TIFF_FORMATS = {"ome": "stack.ome.tif", "imagej": "stack.tif"}


def write_stack_tiff(
    stack: SynthStack,
    path: str | os.PathLike,
    fmt: str = "ome",
    *,
    z_step_um: float = 1.0,
    pixel_size_um: float = 1.0,
) -> Path:
    """Write a stack as one 16-bit grey z-stack TIFF, with its ground truth next to it.

    The frames become grey (ITU-R BT.601) and 16-bit (x 257); frame ``k`` is the focal
    plane at ``z = k * z_step_um``, the way a microscope's z-stack is stored, so a reader
    of the file gives depth in metres along the optical axis (``depth = index * z
    step``), not the thin-lens distances of :func:`write_stack`. The file is written
    atomically (a temporary file in the same folder, then renamed); ``ground_truth/``
    (as :func:`write_stack` writes it, with ``depth.npy`` the z of each pixel's in-focus
    plane in metres, and the file's format and steps in ``metadata.json``) goes to the
    file's folder.

    Parameters
    ----------
    stack : SynthStack
        The stack to write.
    path : str or os.PathLike
        The TIFF file (``stack.ome.tif`` by convention for OME, ``stack.tif`` for ImageJ).
    fmt : {"ome", "imagej"}
        OME-TIFF (``PhysicalSizeZ/X/Y`` in µm in the OME-XML) or an ImageJ hyperstack
        (``spacing`` and ``unit=um`` in its description, X/Y resolution in pixels per µm).
    z_step_um, pixel_size_um : float
        The z step between frames and the lateral pixel size, micrometres (> 0).

    Returns
    -------
    Path
        The TIFF file written.
    """
    import tempfile

    import tifffile

    if fmt not in TIFF_FORMATS:
        raise DffError(f"TIFF format {fmt!r}: expected one of {', '.join(TIFF_FORMATS)}")
    for name, value in (("z_step_um", z_step_um), ("pixel_size_um", pixel_size_um)):
        if not (np.isfinite(value) and value > 0):
            raise DffError(f"{name} = {value}: expected a number > 0 (micrometres)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = np.stack(
        [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f for f in stack.frames]
    )
    data = grey.astype(np.uint16) * np.uint16(257)
    if fmt == "ome":
        options: dict[str, Any] = {
            "ome": True,
            "metadata": {
                "axes": "ZYX",
                "PhysicalSizeZ": z_step_um,
                "PhysicalSizeZUnit": "µm",
                "PhysicalSizeX": pixel_size_um,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": pixel_size_um,
                "PhysicalSizeYUnit": "µm",
            },
        }
    else:
        options = {
            "imagej": True,
            "resolution": (1.0 / pixel_size_um, 1.0 / pixel_size_um),
            "metadata": {"axes": "ZYX", "spacing": z_step_um, "unit": "um"},
        }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, data, **options)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _write_ground_truth(
        stack,
        path.parent,
        (stack.index * np.float32(z_step_um * 1e-6)).astype(np.float32),  # z of the plane
        file=path.name,
        file_format=fmt,
        z_step_um=float(z_step_um),
        pixel_size_um=float(pixel_size_um),
    )
    logger.info(
        "wrote %d frames of synthetic scene %r to %s (%s)", len(data), stack.scene, path, fmt
    )
    return path
