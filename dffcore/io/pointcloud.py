"""Metric point clouds from a depth map: pinhole back-projection, the orthographic cloud of
a microscope z-stack, and PLY files.

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

**Orthographic** (focus unit ``"z"``, a microscope's z-stack: :func:`orthographic_points`):
a telecentric or high-magnification view has no perspective, so pixel ``(u, v)`` of the
aligner's output grid lies at ``X = (u + crop x) * pixel_x``, ``Y = (v + crop y) * pixel_y``
(the full frame's pixel ``(0, 0)`` at the origin) and ``Z`` = the depth, the focal-plane
position in metres. It needs the lateral pixel size, ``stack.metadata["pixel_size_m"]``
(:func:`lateral_pixel_size`), which readers take from the file.

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

POINT_CLOUD_FRAME = "camera frame: x right, y down, z forward (optical axis), metres"
ORTHOGRAPHIC_FRAME = (
    "stage frame: x right, y down (pixel column, row x pixel size; full-frame pixel 0,0 at 0), "
    "z = focal-plane position along the optical axis, metres"
)

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
    depth, v, u = _kept(depth_m, mask, positive=True)
    z = depth[v, u].astype(np.float64)
    points = np.empty((z.size, 3), np.float32)
    points[:, 0] = (u - cx) * z / fx
    points[:, 1] = (v - cy) * z / fy
    points[:, 2] = z
    return points, _colours_at(colours, depth.shape, v, u)


def _kept(
    depth_m: np.ndarray, mask: np.ndarray | None, positive: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The depth map as an array and the rows and columns of the pixels a cloud keeps:
    finite depth (and > 0 when ``positive``) where ``mask`` is True."""
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise DffError(f"depth map: expected (H,W), got shape {depth.shape}")
    keep = np.isfinite(depth)
    if positive:
        keep &= depth > 0
    if mask is not None:
        if mask.shape != depth.shape:
            raise DffError(f"mask: expected shape {depth.shape}, got {mask.shape}")
        keep &= mask.astype(bool)
    v, u = np.nonzero(keep)
    return depth, v, u


def _colours_at(
    colours: np.ndarray | None, shape: tuple[int, ...], v: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """(M, 3) uint8 RGB of ``colours`` at pixels ``(v, u)``; white when None."""
    if colours is None:
        return np.full((v.size, 3), 255, np.uint8)
    if colours.shape[:2] != shape:
        raise DffError(f"colours: expected {shape} pixels, got shape {colours.shape}")
    rgb = to_uint8(colours)[v, u].reshape(v.size, -1)
    if rgb.shape[1] == 1:
        rgb = np.repeat(rgb, 3, axis=1)
    return np.ascontiguousarray(rgb[:, :3])


def orthographic_points(
    depth_m: np.ndarray,
    pixel_size_m: tuple[float, float],
    *,
    offset: tuple[int, int] = (0, 0),
    colours: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Points of a z-stack's depth map seen orthographically (see the module docstring).

    Parameters
    ----------
    depth_m : ndarray
        (H, W) focal-plane positions in metres; pixels that are not finite are left out
        (zero and negative positions are kept).
    pixel_size_m : tuple of float
        Lateral pixel size ``(x, y)`` in metres.
    offset : tuple of int
        ``(x, y)`` of the map's pixel ``(0, 0)`` in the full frame (the aligner's crop).
    colours, mask : ndarray, optional
        As for :func:`depth_to_points`.

    Returns
    -------
    points : ndarray
        (M, 3) float32 X, Y, Z in metres, pixels in row-major order.
    colours : ndarray
        (M, 3) uint8 RGB of those pixels.
    """
    depth, v, u = _kept(depth_m, mask, positive=False)
    points = np.empty((v.size, 3), np.float32)
    points[:, 0] = (u + offset[0]) * float(pixel_size_m[0])
    points[:, 1] = (v + offset[1]) * float(pixel_size_m[1])
    points[:, 2] = depth[v, u]
    return points, _colours_at(colours, depth.shape, v, u)


def lateral_pixel_size(stack: FocalStack) -> tuple[float, float] | None:
    """``stack.metadata["pixel_size_m"]`` as ``(x, y)`` metres, or None when it is missing
    or not two finite positive numbers."""
    value = stack.metadata.get("pixel_size_m")
    try:
        x, y = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    ok = all(math.isfinite(v) and v > 0 for v in (x, y))
    return (x, y) if ok else None


def _stack_file(stack: FocalStack) -> Path | None:
    """The one file that holds the whole stack (a z-stack TIFF, a video), else None."""
    return Path(stack.paths[0]) if len(stack.paths) == 1 and stack.n > 1 else None


def point_cloud_problem(stack: FocalStack) -> str | None:
    """Why ``stack`` gives no point cloud (one line naming its source), or None when it
    does: it needs focus distances, and a z-stack also its lateral pixel size."""
    file = _stack_file(stack)
    where = file if file is not None else (stack.paths[0].parent if stack.paths else "stack")
    if stack.focus_distances is None:
        if file is not None:
            return (
                f"{file}: a point cloud needs focus distances and the file gives none: pass "
                "--focus-distances FILE (a TIFF z-stack: --read z_step=UM, in micrometres)"
            )
        return (
            f"{where}: a point cloud needs focus distances: put focus_distances.txt next to "
            "the frames (one distance per frame in reading order, in metres; '# unit: "
            "diopter' for diopters) or pass --focus-distances FILE"
        )
    if stack.focus_unit == "z" and lateral_pixel_size(stack) is None:
        return (
            f"{where}: the stack has no lateral pixel size (pixel_size_m), which the "
            "orthographic point cloud of a z-stack needs"
        )
    return None


@dataclass(frozen=True)
class PointCloud:
    """A run's point cloud: points, colours, PLY comments and ``run.json``'s record."""

    points: np.ndarray
    colours: np.ndarray
    comments: list[str]
    record: dict[str, Any]


def stack_point_cloud(
    stack: FocalStack,
    depth_m: np.ndarray,
    crop: tuple[int, int, int, int] | None,
    colours: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> PointCloud:
    """The point cloud of a run on ``stack``: orthographic for a z-stack (focus unit
    ``"z"``), else pinhole with :func:`stack_intrinsics`; ``depth_m`` in the aligner's
    output grid, cut to ``crop`` = (x, y, w, h) of the full frame."""
    problem = point_cloud_problem(stack)
    if problem is not None:
        raise DffError(problem)
    record: dict[str, Any]
    if stack.focus_unit == "z":
        size = lateral_pixel_size(stack)
        assert size is not None  # point_cloud_problem checked it
        offset = (0, 0) if crop is None else (crop[0], crop[1])
        points, rgb = orthographic_points(depth_m, size, offset=offset, colours=colours, mask=mask)
        comments = [
            f"dffcore {ORTHOGRAPHIC_FRAME}",
            f"orthographic projection (microscope z-stack): pixel size x {size[0]:.6g} m "
            f"y {size[1]:.6g} m, offset x {offset[0]} y {offset[1]} px",
        ]
        record = {
            "frame": ORTHOGRAPHIC_FRAME,
            "model": "orthographic",
            "pixel_size_m": list(size),
            "offset_px": list(offset),
        }
    else:
        k = stack_intrinsics(stack).cropped(crop)
        points, rgb = depth_to_points(depth_m, k.fx, k.fy, k.cx, k.cy, colours, mask)
        comments = [
            f"dffcore {POINT_CLOUD_FRAME}",
            "pinhole projection: "
            f"intrinsics fx {k.fx:.6g} fy {k.fy:.6g} cx {k.cx:.6g} cy {k.cy:.6g} ({k.source})",
        ]
        record = {"frame": POINT_CLOUD_FRAME, "model": "pinhole", "intrinsics": k.as_dict()}
    return PointCloud(points, rgb, comments, record)


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
