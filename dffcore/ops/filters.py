"""Small image operations shared by several components."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from dffcore.core.errors import DffError


def gaussian_ksize(sigma: float) -> int:
    """Kernel size 6σ+1 (rounded up to odd), the classic pipeline's convention."""
    k = math.ceil(6 * sigma) + 1
    return k if k % 2 else k + 1


def gaussian(image: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Gaussian blur (kernel 6σ+1) of a float32 image, ignoring pixels where ``valid`` is False.

    With a mask this is normalised convolution: blur(image·valid) / blur(valid), so data
    from outside a warped frame never leaks in; invalid pixels come back as NaN.
    """
    if sigma <= 0:
        return image
    k = gaussian_ksize(sigma)
    if valid is None or valid.all():
        return cv2.GaussianBlur(image, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    v = valid.astype(np.float32)
    masked = np.where(valid, image, np.float32(0)).astype(np.float32, copy=False)
    num = cv2.GaussianBlur(masked, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(v, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    np.maximum(den, np.float32(1e-6), out=den)
    out = np.divide(num, den, out=num)
    out[~valid] = np.nan
    return out


#: pixels per block of :func:`pick`
_PICK_BLOCK = 1 << 16


def pick(volume: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``volume[labels[y, x], y, x]`` for an (N,H,W) or (N,H,W,C) array: (H,W[,C]).

    ``labels`` (H,W) must lie in [0, N). The same as ``np.take_along_axis(volume,
    labels[None], 0)[0]`` (which it falls back to for a non-contiguous volume), about
    three times faster: one gather at flat indices.
    """
    n, h, w = volume.shape[:3]
    if not volume.flags.c_contiguous:  # reshaping would copy the whole volume
        extra = (None,) * (volume.ndim - 3)
        return np.take_along_axis(volume, labels[(None, ..., *extra)], axis=0)[0]
    flat = volume.reshape(n * h * w, *volume.shape[3:])
    out = np.empty((h, w, *volume.shape[3:]), volume.dtype)
    # blocks of rows: the flat indices stay in cache instead of two (H,W) int64 arrays
    rows = max(1, min(h, _PICK_BLOCK // max(w, 1)))
    offsets = np.arange(rows * w, dtype=np.intp).reshape(rows, w)
    lin = np.empty((rows, w), np.intp)
    for top in range(0, h, rows):
        m = min(rows, h - top)
        part = lin[:m]
        part[...] = labels[top : top + m]  # as astype(intp)
        part *= h * w
        part += offsets[:m]
        part += top * w
        np.take(flat, part, axis=0, out=out[top : top + m])
    return out


def nearest_valid(labels: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``labels`` (H,W) moved to the nearest frame that has data at each pixel.

    Ties go to the lower frame; a pixel that no frame covers keeps its (clipped) label.
    Only the pixels whose own frame lacks data are searched.
    """
    if valid is None:
        return labels
    n = valid.shape[0]
    out = np.clip(labels, 0, n - 1).astype(np.intp)
    bad = ~pick(valid, out)
    if not bad.any():
        return out
    ys, xs = np.nonzero(bad)
    cur = out[ys, xs]
    # search outwards, one step at a time, on the pixels still unresolved (most find a
    # frame within a few steps): at step d the frame below, then the one above
    todo = np.arange(ys.size)
    for d in range(1, n):
        if todo.size == 0:
            break
        c, y, x = cur[todo], ys[todo], xs[todo]
        below, above = c - d, c + d
        ok_below = (below >= 0) & valid[np.maximum(below, 0), y, x]
        ok_above = (above < n) & valid[np.minimum(above, n - 1), y, x]
        found = ok_below | ok_above
        take = todo[found]
        out[ys[take], xs[take]] = np.where(ok_below, below, above)[found]
        todo = todo[~found]
    return out  # a pixel no frame covers keeps its label


def take_frames(
    frames: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Pick each pixel from frame ``labels[y, x]``: (N,H,W,C) x (H,W) int -> (H,W,C).

    With ``valid`` (N,H,W), a frame without data at a pixel is replaced by the nearest
    frame that has data there.
    """
    idx = np.clip(labels, 0, frames.shape[0] - 1).astype(np.intp)
    idx = nearest_valid(idx, valid)
    return pick(frames, idx)


def box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window, mirrored at the border."""
    k = 2 * radius + 1
    return cv2.boxFilter(image, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` (H,W) steered by a grey ``guide`` (He et al. 2010).

    With ``weight`` (H,W) the local linear fits are weighted (e.g. by confidence), so
    unreliable pixels take their value from reliable neighbours. O(H·W) per call.
    """
    guide = guide.astype(np.float32)
    src = src.astype(np.float32)
    if weight is None:
        mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
        cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
        var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    else:
        w = weight.astype(np.float32)
        sw = np.maximum(box_mean(w, radius), 1e-6)
        mean_i = box_mean(w * guide, radius) / sw
        mean_p = box_mean(w * src, radius) / sw
        cov_ip = box_mean(w * guide * src, radius) / sw - mean_i * mean_p
        var_i = box_mean(w * guide * guide, radius) / sw - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def _ximgproc():
    """OpenCV's contrib module ``cv2.ximgproc``, or a one-line error saying how to get it."""
    if not hasattr(cv2, "ximgproc"):
        raise DffError(
            "edge-aware smoothing needs OpenCV's contrib modules (cv2.ximgproc), which this "
            "OpenCV lacks (another opencv package was installed over dffcore's): run "
            "'pip uninstall -y opencv-python opencv-python-headless opencv-contrib-python "
            "opencv-contrib-python-headless && pip install opencv-contrib-python-headless'"
        )
    return cv2.ximgproc


def mean_edge(image: np.ndarray) -> float:
    """Mean colour distance between horizontally adjacent pixels: the scale of an image's
    edges (busy textures give large values, smooth photographs small ones)."""
    d = np.diff(image.astype(np.float32), axis=1)
    dist = np.sqrt((d * d).sum(-1)) if d.ndim == 3 else np.abs(d)
    return max(float(dist.mean()), 1e-4)


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own threads limited to ``count`` inside the block (restored after)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def wls_smoother(guide: np.ndarray, lam: float, sigma: float, iterations: int = 3):
    """Return ``smooth(data, weight=None)``: edge-aware global smoothing steered by ``guide``.

    The fast global smoother of Min et al. (2014), as implemented in OpenCV's
    ``ximgproc``: it approximately minimises ``Σ_p (u_p − f_p)² + λ Σ_{p~q} w_pq
    (u_p − u_q)²`` over 4-neighbours, the weights ``w_pq`` falling with the colour
    difference of ``guide`` (H,W) or (H,W,3) in [0, 1] on a scale of ``sigma`` (same
    units), by alternating exact 1-D solves along rows and columns, ``iterations``
    times with λ divided by 4 each time. Smoothing crosses guide edges weaker than about
    ``sigma`` and stops at stronger ones; ``lam`` sets how far it reaches (≈ √λ px).

    ``smooth(data)`` takes (H,W) or (H,W,K) float32 (K channels filtered one by one);
    it may be called from several threads at once (each gets its own OpenCV filter).
    OpenCV's result depends (in the last bit) on how many threads it splits one call
    over: for results that do not depend on timing or on the number of cores, call it
    from several threads inside :func:`opencv_threads` ``(1)``.
    With a ``weight`` (H,W) ≥ 0 (e.g. confidence) it returns
    ``S(weight·data) / S(weight)``: the paper's interpolation of sparse or unreliable data,
    where pixels of weight 0 take their value from weighted neighbours along the guide.
    The guide's edges are computed once for any number of calls. O(H·W·K).

    Min, Choi, Lu, Ham, Sohn & Do, Fast global image smoothing based on weighted least
    squares, IEEE TIP 23(12), 2014.
    """
    g = np.clip(np.rint(guide.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    create = _ximgproc().createFastGlobalSmootherFilter
    args = (g, float(lam), float(sigma) * 255, 0.25, iterations)
    # OpenCV's filter object keeps scratch buffers: one per thread (creating one costs
    # about a channel's filtering)
    own = threading.local()

    def filter_one(channel: np.ndarray) -> np.ndarray:
        fgs = getattr(own, "fgs", None)
        if fgs is None:
            fgs = own.fgs = create(*args)
        return fgs.filter(np.ascontiguousarray(channel, np.float32))

    def run(data: np.ndarray) -> np.ndarray:
        if data.ndim == 2:
            return filter_one(data)
        # channel by channel: the same result as filtering them together, without the
        # interleaved copies (and no slower per channel)
        out = np.empty(data.shape, np.float32)
        for k in range(data.shape[2]):
            out[:, :, k] = filter_one(data[:, :, k])
        return out

    def smooth(data: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        if weight is None:
            return run(data)
        w = weight.astype(np.float32)
        num = run(data * (w if data.ndim == 2 else w[..., None]))
        den = np.maximum(run(w), np.float32(1e-6))
        return num / (den if data.ndim == 2 else den[..., None])

    return smooth
