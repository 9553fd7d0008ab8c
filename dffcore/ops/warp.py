"""Geometry shared by every aligner: transforms, their composition, warping, validity.

A *transform* of frame ``i`` maps reference-frame pixel coordinates to frame ``i``'s
coordinates. It is either a 3x3 homography (affine and similarity transforms are
homographies too) or a dense *map* ``(H,W,2) float32`` holding, for each reference
pixel, the (x, y) position in frame ``i`` (what ``cv2.remap`` samples); NaN marks a
pixel with no correspondence (occluded, or outside a frame somewhere along a chain).
A pairwise transform from frame ``a`` to frame ``b`` has the same form on ``a``'s grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from dffcore.core.data import Transform


def is_map(t: Transform) -> bool:
    return t is not None and t.ndim == 3


def grid(shape: tuple[int, int]) -> np.ndarray:
    """(H,W,2) float32 map of the identity: each pixel's own (x, y)."""
    h, w = shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([xs, ys])


def to_map(t: Transform, shape: tuple[int, int]) -> np.ndarray:
    """Any transform as a dense (H,W,2) map on a grid of ``shape``."""
    if is_map(t):
        return t
    g = grid(shape)
    if t is None:
        return g
    return cv2.perspectiveTransform(g.reshape(-1, 1, 2), t.astype(np.float64)).reshape(g.shape)


def flow_to_map(flow: np.ndarray) -> np.ndarray:
    """OpenCV flow (a(x) ≈ b(x + flow(x))) -> map from a's grid into b."""
    return grid(flow.shape[:2]) + flow.astype(np.float32)


def compose(first: Transform, then: Transform, shape: tuple[int, int]) -> Transform:
    """``then ∘ first``: reference -> a (``first``), then a -> b (``then``, on a's grid).

    Homographies multiply; with a map involved, ``then`` is sampled (bilinearly) at the
    positions ``first`` gives, which composes flows correctly (not a sum of vectors).
    """
    if then is None:
        return first
    if first is None:
        return then
    if not is_map(first) and not is_map(then):
        return then @ first
    if not is_map(then):  # homography after a map: transform the map's points
        pts = first.reshape(-1, 1, 2).astype(np.float64)
        out = cv2.perspectiveTransform(pts, then.astype(np.float64)).reshape(first.shape)
        out = out.astype(np.float32)
        out[np.isnan(first).any(axis=2)] = np.nan  # OpenCV maps NaN to (0, 0)
        return out
    pos = to_map(first, shape)
    # sample the displacement, not the absolute position: cv2.remap quantises its
    # interpolation weights to 1/32 px, which would bias every chained step
    disp = then - grid(then.shape[:2])
    out = (
        cv2.remap(
            disp,
            pos[..., 0],
            pos[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=np.nan,
        )
        + pos
    )
    out[np.isnan(pos).any(axis=2)] = np.nan
    return out


INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
#: taps of each interpolation before and after a sample's pixel (floor of its position)
FOOTPRINT = {"linear": (0, 1), "cubic": (1, 2), "lanczos": (3, 4)}
#: slack (px) for the positions OpenCV rounds to 1/32 px
_SLACK = 1.0 / 16


def inside(
    t: Transform, frame_shape: tuple[int, int], shape: tuple[int, int], interpolation: str
) -> bool:
    """Whether every pixel of a grid of ``shape`` warped by ``t`` (a 3x3 transform or a
    map) samples frame pixels only, footprint of ``interpolation`` included: then the
    border mode cannot change the result.

    A 3x3 transform maps the grid's rectangle to the convex quadrilateral of its corners
    (when the corners' homogeneous weights are positive), so the corners decide.
    """
    fh, fw = frame_shape
    before, after = FOOTPRINT[interpolation]
    lo = before + _SLACK
    hi_x, hi_y = fw - after - _SLACK, fh - after - _SLACK
    if is_map(t):
        x, y = t[..., 0], t[..., 1]
        with np.errstate(invalid="ignore"):
            return bool(x.min() >= lo and x.max() <= hi_x and y.min() >= lo and y.max() <= hi_y)
    h, w = shape
    corners = np.array([[0, w - 1, w - 1, 0], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], np.float64)
    q = (np.eye(3) if t is None else np.asarray(t, np.float64)) @ corners
    if not (np.isfinite(q).all() and (q[2] > 0).all()):
        return False
    x, y = q[0] / q[2], q[1] / q[2]
    return bool(x.min() >= lo and x.max() <= hi_x and y.min() >= lo and y.max() <= hi_y)


def warp(
    frame: np.ndarray,
    t: Transform,
    shape: tuple[int, int],
    interpolation: str = "cubic",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Frame ``i`` resampled on the reference grid (mirrored outside the frame).

    Bicubic by default: bilinear resampling blurs by up to half a pixel, differently
    for each frame's sub-pixel phase, which a focus measure reads as defocus.

    ``out`` (``shape`` and the frame's channels and dtype) receives the result when
    given, written in place when it is C-contiguous. An affine transform is applied
    with ``cv2.warpAffine`` (no per-pixel division); when no sample reaches beyond the
    frame (:func:`inside`) the border is replicated instead of mirrored: the same
    samples, 2-3x faster for 3-channel frames (OpenCV's mirrored border has no vector
    path for them), rounded by another code path (1 grey level in about 1 of 10 000
    values differs).
    """
    interp = INTERPOLATION[interpolation]
    h, w = shape
    if t is None and frame.shape[:2] == shape:
        if out is None:
            return frame
        out[...] = frame.reshape(out.shape)
        return out
    dst = None
    if out is not None and out.flags.c_contiguous:
        dst = out.reshape(h, w) if frame.ndim == 2 or frame.shape[2] == 1 else out
        frame = frame.reshape(frame.shape[:2]) if dst.ndim == 2 else frame
    m = np.nan_to_num(t, nan=-1.0) if is_map(t) else t
    safe = inside(m, frame.shape[:2], shape, interpolation)
    border = cv2.BORDER_REPLICATE if safe else cv2.BORDER_REFLECT
    if is_map(m):
        res = cv2.remap(frame, m[..., 0], m[..., 1], interp, dst, border)
    else:
        a = np.eye(3) if m is None else np.asarray(m, np.float64)
        flags = interp | cv2.WARP_INVERSE_MAP
        if a[2, 0] == 0 and a[2, 1] == 0 and a[2, 2] == 1:
            res = cv2.warpAffine(frame, a[:2], (w, h), dst, flags, border)
        else:
            res = cv2.warpPerspective(frame, a, (w, h), dst, flags, border)
    if out is not None:
        if not np.shares_memory(res, out):  # OpenCV allocated anew (another layout)
            out[...] = res.reshape(out.shape)
        return out
    return res.reshape(h, w, *frame.shape[2:])


def valid_mask(t: Transform, frame_shape: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Reference pixels whose bilinear footprint lies inside frame ``i`` (and not NaN)."""
    fh, fw = frame_shape
    if t is not None and not is_map(t):  # the frame's outline, mapped back: a polygon
        corners = np.array([[0, 0], [fw - 1, 0], [fw - 1, fh - 1], [0, fh - 1]], np.float64)
        back = cv2.perspectiveTransform(corners[None], np.linalg.inv(t))[0]
        if np.isfinite(back).all():
            mask = np.zeros(shape, np.uint8)
            cv2.fillConvexPoly(mask, np.round(back * 16).astype(np.int32), 1, cv2.LINE_8, 4)
            return cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    m = to_map(t, shape)
    x, y = m[..., 0], m[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= 0) & (x <= fw - 1) & (y >= 0) & (y <= fh - 1)


def scale_transform(t: Transform, s: float, shape: tuple[int, int]) -> Transform:
    """A transform estimated on a grid scaled by ``s`` (pixel centres), on the grid of
    ``shape`` (the full resolution)."""
    if t is None or s == 1.0:
        return t
    if is_map(t):  # resample the displacements (smooth, so the borders need no care)
        h, w = shape
        moved = t - grid(t.shape[:2])
        return grid((h, w)) + cv2.resize(moved, (w, h), interpolation=cv2.INTER_LINEAR) / s
    o = 0.5 * s - 0.5
    to_small = np.array([[s, 0, o], [0, s, o], [0, 0, 1]], np.float64)
    return np.linalg.inv(to_small) @ np.asarray(t, np.float64) @ to_small


def shift_transform(t: Transform, x0: int, y0: int, shape: tuple[int, int]) -> Transform:
    """``t`` on the grid of the crop of ``shape`` whose corner is (x0, y0)."""
    if x0 == 0 and y0 == 0 and not is_map(t):
        return t
    if t is None:
        t = np.eye(3)
    if is_map(t):
        return t[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    return t @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1]])


def fit_homography(t: Transform) -> np.ndarray:
    """A 3x3 transform as it is (the identity for None), or the homography that best fits
    a dense map (least squares on a coarse grid of its finite points; NaN when fewer
    than 8 are finite)."""
    if t is None:
        return np.eye(3)
    if np.ndim(t) == 2:
        return np.asarray(t, np.float64)
    h, w = t.shape[:2]
    ys, xs = np.mgrid[0 : h : max(1, h // 16), 0 : w : max(1, w // 16)]
    dst = t[ys, xs].reshape(-1, 2).astype(np.float64)
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    ok = np.isfinite(dst).all(axis=1)
    if ok.sum() < 8:
        return np.full((3, 3), np.nan)
    fitted, _ = cv2.findHomography(src[ok], dst[ok], 0)
    return fitted if fitted is not None else np.full((3, 3), np.nan)
