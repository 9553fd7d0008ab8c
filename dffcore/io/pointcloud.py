"""Metric point clouds from a depth map: pinhole back-projection and PLY files.

**Camera frame** (OpenCV's convention): x right, y down, z forward along the optical axis,
in metres; pixel centres at integer coordinates, so the principal point of a W x H image
is ``((W - 1) / 2, (H - 1) / 2)``. A focus distance is measured to the plane of focus, so
depth from focus gives the depth ``Z`` along the optical axis (not the range along the
ray), and pixel ``(u, v)`` back-projects to (Hartley & Zisserman, *Multiple View
Geometry*, 2nd ed., section 6.1)::

    X = (u - cx) Z / fx,   Y = (v - cy) Z / fy,   Z = depth

**Intrinsics** (:func:`stack_intrinsics`), first that is known:

1. ``stack.metadata["camera"]`` or, for a synthetic stack written by
   :func:`dffcore.eval.synth.write_stack`, ``ground_truth/metadata.json`` next to the frames:
   ``focal_length_mm`` and ``pixel_pitch_um`` give ``fx = fy = f / pitch``;
2. the first frame's EXIF ``FocalLengthIn35mmFilm`` (JPEG): the 35 mm equivalent is
   defined by the image diagonal (CIPA DC-008 Exif 2.32, tag 0xA405), so
   ``fx = fy = f35 * hypot(W, H) / hypot(36 mm, 24 mm)``;
3. otherwise a horizontal field of view of :data:`DEFAULT_HFOV_DEG` (60°), with a
   warning that the cloud's x/y scale is approximate (its z is not).

The principal point is the image centre, shifted by the aligner's crop.

**PLY** (Greg Turk's polygon file format, http://paulbourke.net/dataformats/ply/):
:func:`write_ply` writes binary little-endian ``x y z`` float and ``red green blue`` uchar
vertices (read them with any PLY reader, e.g. the ``plyfile`` package).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dffcore.core.data import FocalStack
from dffcore.core.errors import DffError
from dffcore.io.exif import read_exif_numbers
from dffcore.io.images import atomic_write_bytes
from dffcore.ops.convert import to_uint8

logger = logging.getLogger(__name__)

DEFAULT_HFOV_DEG = 60.0
"""Horizontal field of view assumed when nothing tells the focal length."""
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""Diagonal of a 36 x 24 mm frame, the reference of 35 mm equivalent focal lengths."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels; ``source`` says where they came from."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str

    def cropped(self, crop: tuple[int, int, int, int] | None) -> Intrinsics:
        """The same camera for an image cut to ``crop`` = (x, y, w, h)."""
        if crop is None:
            return self
        return replace(self, cx=self.cx - crop[0], cy=self.cy - crop[1])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def intrinsics_from_focal_length(
    focal_length_mm: float, pixel_pitch_um: float, width: int, height: int, source: str = ""
) -> Intrinsics:
    """Square pixels of ``pixel_pitch_um``: ``fx = fy = focal length / pitch``."""
    f = focal_length_mm * 1000.0 / pixel_pitch_um
    src = source or f"focal length {focal_length_mm:g} mm, pixel pitch {pixel_pitch_um:g} um"
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, src)


def intrinsics_from_35mm(focal_35mm: float, width: int, height: int) -> Intrinsics:
    """From a 35 mm equivalent focal length (diagonal definition, CIPA DC-008)."""
    f = focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
    src = f"EXIF 35 mm equivalent focal length {focal_35mm:g} mm"
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, src)


def intrinsics_from_fov(hfov_deg: float, width: int, height: int) -> Intrinsics:
    """From a horizontal field of view across the ``width`` pixels."""
    f = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    src = f"assumed {hfov_deg:g} degree horizontal field of view (x/y scale approximate)"
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, src)


def _camera_record(stack: FocalStack) -> tuple[dict[str, Any], str] | None:
    camera = stack.metadata.get("camera")
    if isinstance(camera, dict):
        return camera, "stack metadata"
    if not stack.paths:
        return None
    meta = Path(stack.paths[0]).parent / "ground_truth" / "metadata.json"
    if not meta.is_file():
        return None
    try:
        camera = json.loads(meta.read_text(encoding="utf-8")).get("camera")
    except (OSError, ValueError, AttributeError) as exc:
        logger.debug("%s: not readable, ignored: %s", meta, exc)
        return None
    return (camera, str(meta)) if isinstance(camera, dict) else None


def stack_intrinsics(stack: FocalStack) -> Intrinsics:
    """The stack's camera in pixels of its full frames (see the module docstring)."""
    h, w = stack.shape
    found = _camera_record(stack)
    if found is not None:
        camera, where = found
        try:
            f_mm, pitch = float(camera["focal_length_mm"]), float(camera["pixel_pitch_um"])
        except (KeyError, TypeError, ValueError):
            logger.debug("%s: no focal_length_mm and pixel_pitch_um, ignored", where)
        else:
            if f_mm > 0 and pitch > 0 and math.isfinite(f_mm / pitch):
                src = f"{where}: focal length {f_mm:g} mm, pixel pitch {pitch:g} um"
                return intrinsics_from_focal_length(f_mm, pitch, w, h, src)
    if stack.paths:
        f35 = read_exif_numbers(stack.paths[0]).get("FocalLengthIn35mmFilm", 0.0)
        if 0 < f35 < math.inf:
            return intrinsics_from_35mm(f35, w, h)
    logger.warning(
        "focal length unknown (no EXIF FocalLengthIn35mmFilm): the point cloud assumes a "
        "%g degree horizontal field of view, so its x/y scale is approximate (z is not)",
        DEFAULT_HFOV_DEG,
    )
    return intrinsics_from_fov(DEFAULT_HFOV_DEG, w, h)


def depth_to_points(
    depth_m: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    colours: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a depth map to camera-frame points (see the module docstring).

    Parameters
    ----------
    depth_m : ndarray
        (H, W) depth along the optical axis in metres. Pixels that are not finite or
        not positive are left out.
    fx, fy, cx, cy : float
        Pinhole intrinsics in pixels (pixel centres at integer coordinates).
    colours : ndarray, optional
        (H, W, 3), (H, W, 1) or (H, W) image of any dtype (converted with
        :func:`dffcore.ops.convert.to_uint8`, grey repeated); white when omitted.
    mask : ndarray, optional
        (H, W) boolean: only pixels where it is True are kept.

    Returns
    -------
    points : ndarray
        (M, 3) float32 X, Y, Z in metres, pixels in row-major order.
    colours : ndarray
        (M, 3) uint8 RGB of those pixels.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise DffError(f"depth map: expected (H,W), got shape {depth.shape}")
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        if mask.shape != depth.shape:
            raise DffError(f"mask: expected shape {depth.shape}, got {mask.shape}")
        keep &= mask.astype(bool)
    v, u = np.nonzero(keep)
    z = depth[v, u].astype(np.float64)
    points = np.empty((z.size, 3), np.float32)
    points[:, 0] = (u - cx) * z / fx
    points[:, 1] = (v - cy) * z / fy
    points[:, 2] = z
    if colours is None:
        return points, np.full((z.size, 3), 255, np.uint8)
    if colours.shape[:2] != depth.shape:
        raise DffError(f"colours: expected {depth.shape} pixels, got shape {colours.shape}")
    rgb = to_uint8(colours)[v, u].reshape(z.size, -1)
    if rgb.shape[1] == 1:
        rgb = np.repeat(rgb, 3, axis=1)
    return points, np.ascontiguousarray(rgb[:, :3])


def write_ply(
    path: str | Path,
    points: np.ndarray,
    colours: np.ndarray | None = None,
    comments: Sequence[str] = (),
) -> None:
    """Write a binary little-endian PLY point cloud atomically.

    ``points`` (M, 3) is written as ``x y z`` float32, ``colours`` (M, 3) uint8 as
    ``red green blue`` uchar (left out when None). ``comments`` become ``comment`` lines.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise DffError(f"{path}: points must be (M,3), got shape {points.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        colours = np.asarray(colours)
        if colours.shape != points.shape:
            raise DffError(f"{path}: colours must be {points.shape}, got {colours.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), np.dtype(fields))
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if colours is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colours[:, channel]
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}".replace("\n", " ") for c in comments]
    lines.append(f"element vertex {len(points)}")
    lines += [f"property {'float' if t == '<f4' else 'uchar'} {n}" for n, t in fields]
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii", "replace")
    atomic_write_bytes(path, header + vertices.tobytes())
