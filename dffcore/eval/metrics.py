"""Accuracy metrics shared by tests, benchmarks and reports.

Depth is scored in two unit systems:

- **slice units** (:func:`evaluate_index`): a fractional index into the focal stack
  against the ground-truth index, as ``depth_index.npy`` holds it;
- **depth units** (:func:`evaluate_depth`): the DDFF-12 protocol of Hazirbas, Soyer,
  Staab, Leal-Taixé and Cremers, "Deep Depth From Focus", ACCV 2018 — the error and
  accuracy measures of Eigen, Puhrsch and Fergus, "Depth Map Prediction from a Single
  Image using a Multi-Scale Deep Network", NIPS 2014, plus the bumpiness of Honauer,
  Johannsen, Kondermann and Goldluecke, "A Dataset and Evaluation Methodology for Depth
  Estimation on 4D Light Fields", ACCV 2016.

The all-in-focus image is scored with :func:`psnr` and :func:`ssim`.

Every metric takes an optional boolean ``mask`` of the pixels to score. Pixels whose
ground truth is NaN or infinite are never scored; the depth-type metrics (``log_rmse``,
``abs_rel``, ``sq_rel``, ``delta_*`` and everything in :func:`evaluate_depth`) also leave
out ground truth <= 0 (DDFF-12 marks missing depth with 0). Predictions are not
filtered: a NaN prediction on a scored pixel makes an error metric NaN (and is a
miss for ``delta_*``, see :func:`delta_accuracy` for predictions <= 0). With no pixel
left to score a metric is NaN (and a warning is logged). Shape mismatches are
programming errors and raise :class:`ValueError`. DDFF-12 reports the mean over the
test images of these per-image values (and the accuracies in percent, not fractions).

Keys of :func:`evaluate_index` and :func:`evaluate_depth` (stable: they are the
column names of reports; :data:`METRIC_INFO` holds the same descriptions):

================  ======  ==============================================================
key               better  meaning
================  ======  ==============================================================
``mae``           lower   mean absolute error, slices
``rmse``          lower   root-mean-square error (slices in evaluate_index, depth units
                          in evaluate_depth)
``bad_0.5``       lower   fraction of pixels with abs(error) > 0.5 slice
``bad_1``         lower   fraction of pixels with abs(error) > 1 slice
``bad_2``         lower   fraction of pixels with abs(error) > 2 slices
``mse``           lower   mean squared error, depth units squared
``log_rmse``      lower   sqrt(mean((ln p - ln t)^2))
``abs_rel``       lower   mean(abs(p - t) / t)
``sq_rel``        lower   mean((p - t)^2 / t)
``delta_1.25``    higher  fraction with max(p/t, t/p) < 1.25
``delta_1.25^2``  higher  fraction with max(p/t, t/p) < 1.25^2
``delta_1.25^3``  higher  fraction with max(p/t, t/p) < 1.25^3
``bump``          lower   bumpiness: 100 x mean of min(0.05, Frobenius norm of the
                          Hessian of p - t)
================  ======  ==============================================================
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from skimage.metrics import structural_similarity

logger = logging.getLogger(__name__)

BAD_PIXEL_THRESHOLDS = (0.5, 1.0, 2.0)
"""Thresholds (slices) of the ``bad_*`` keys of :func:`evaluate_index`."""
DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)
"""Ratio thresholds of the ``delta_*`` keys of :func:`evaluate_depth` (Eigen et al.)."""
DELTA_KEYS = ("delta_1.25", "delta_1.25^2", "delta_1.25^3")
BUMP_CLIP = 0.05
"""Per-pixel clip of the Hessian norm in :func:`bumpiness` (HCI benchmark and DDFF-12)."""

METRIC_INFO: dict[str, tuple[str, str]] = {
    "mae": ("mean absolute error (slices)", "lower"),
    "rmse": ("root-mean-square error (slices or depth units)", "lower"),
    "bad_0.5": ("fraction of pixels off by more than 0.5 slice", "lower"),
    "bad_1": ("fraction of pixels off by more than 1 slice", "lower"),
    "bad_2": ("fraction of pixels off by more than 2 slices", "lower"),
    "mse": ("mean squared error (depth units squared)", "lower"),
    "log_rmse": ("RMS of the natural-log depth error", "lower"),
    "abs_rel": ("mean absolute relative error", "lower"),
    "sq_rel": ("mean squared relative error", "lower"),
    "delta_1.25": ("fraction with depth ratio below 1.25", "higher"),
    "delta_1.25^2": ("fraction with depth ratio below 1.25^2", "higher"),
    "delta_1.25^3": ("fraction with depth ratio below 1.25^3", "higher"),
    "bump": ("bumpiness: clipped Hessian norm of the error, x100", "lower"),
}
"""Report-table information per metric key: (short description, "lower"/"higher" is better)."""


# --- selecting the scored pixels ----------------------------------------------------------


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} != ground-truth shape {shape}")
    return mask


def _warn_if_empty(valid: np.ndarray) -> None:
    if not valid.any():
        logger.warning("no pixel to score (mask empty or ground truth all invalid): NaN")


def _valid(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, positive: bool
) -> np.ndarray:
    """Boolean map of the scored pixels (checks shapes and the mask)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {truth.shape}")
    mask = _check_mask(mask, truth.shape)
    valid = np.isfinite(truth)
    if positive:
        valid &= truth > 0
    if mask is not None:
        valid &= mask
    _warn_if_empty(valid)
    return valid


def _scored(pred, truth, mask, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """1-D float64 prediction and ground truth at the scored pixels."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    valid = _valid(pred, truth, mask, positive)
    return pred[valid].astype(np.float64), truth[valid].astype(np.float64)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _warn_nonpositive(p: np.ndarray) -> None:
    n = int(np.count_nonzero(p <= 0))
    if n:
        logger.warning(
            "%d scored pixel(s) with prediction <= 0: log/ratio metrics treat "
            "them as in the DDFF-12 evaluation (see log_rmse, delta_accuracy)",
            n,
        )


# --- slice-unit metrics -------------------------------------------------------------------


def mae(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error ``mean(|pred - truth|)`` over the scored pixels."""
    p, t = _scored(pred, truth, mask)
    return _mean(np.abs(p - t))


def mse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error ``mean((pred - truth)^2)`` over the scored pixels."""
    p, t = _scored(pred, truth, mask)
    return _mean((p - t) ** 2)


def rmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error ``sqrt(mean((pred - truth)^2))`` over the scored pixels."""
    return float(np.sqrt(mse(pred, truth, mask)))


def bad_pixel_rate(
    pred: np.ndarray, truth: np.ndarray, threshold: float, mask: np.ndarray | None = None
) -> float:
    """Fraction (0..1) of the scored pixels with ``|pred - truth| > threshold``.

    For slice indices the usual thresholds are 0.5 slice (the nearest slice is wrong),
    1 slice (off by more than one focus step) and 2 slices (gross error); these are the
    ``bad_0.5``, ``bad_1`` and ``bad_2`` keys of :func:`evaluate_index`. The comparison
    is strict, as in the HCI benchmark's BadPix (an error exactly at the threshold is not
    bad).
    """
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    p, t = _scored(pred, truth, mask)
    return _mean(np.abs(p - t) > threshold)


def evaluate_index(
    pred_index: np.ndarray, truth_index: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Slice-unit scores of a fractional index map: ``mae``, ``rmse``, ``bad_0.5``,
    ``bad_1``, ``bad_2`` (see the table in the module docstring)."""
    p, t = _scored(pred_index, truth_index, mask)
    err = np.abs(p - t)
    out = {"mae": _mean(err), "rmse": float(np.sqrt(_mean(err**2)))}
    for thr in BAD_PIXEL_THRESHOLDS:
        out[f"bad_{thr:g}"] = _mean(err > thr)
    return out


# --- depth-unit metrics (DDFF-12 / Eigen et al.) --------------------------------------------


def _log_rmse(p: np.ndarray, t: np.ndarray) -> float:
    keep = ~(p <= 0)  # NaN stays in and makes the result NaN
    sq = (np.log(p[keep]) - np.log(t[keep])) ** 2
    return float(np.sqrt(sq.sum() / p.size)) if p.size else float("nan")


def _delta(p: np.ndarray, t: np.ndarray, threshold: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(p / t, t / p)
    return _mean((p > 0) & (ratio < threshold))


def log_rmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS of the natural-log error ``sqrt(mean((ln pred - ln truth)^2))``.

    Only ground truth > 0 is scored. A prediction <= 0 has no logarithm: as in the
    DDFF-12 evaluation code (``np.ma.log`` masks it, the sum is divided by the number of
    valid ground-truth pixels), it adds nothing to the sum but still counts in the
    mean, so the score stays comparable with published DDFF-12 tables. A warning is
    logged when that happens, since it flatters such predictions.
    """
    p, t = _scored(pred, truth, mask, positive=True)
    _warn_nonpositive(p)
    return _log_rmse(p, t)


def abs_rel(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Absolute relative error ``mean(|pred - truth| / truth)`` over ground truth > 0."""
    p, t = _scored(pred, truth, mask, positive=True)
    return _mean(np.abs(p - t) / t)


def sq_rel(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Squared relative error ``mean((pred - truth)^2 / truth)`` over ground truth > 0."""
    p, t = _scored(pred, truth, mask, positive=True)
    return _mean((p - t) ** 2 / t)


def delta_accuracy(
    pred: np.ndarray, truth: np.ndarray, threshold: float = 1.25, mask: np.ndarray | None = None
) -> float:
    """Fraction (0..1) of pixels with ``max(pred/truth, truth/pred) < threshold``.

    Eigen et al. use thresholds 1.25, 1.25² and 1.25³ (:data:`DELTA_THRESHOLDS`); the
    comparison is strict. Only ground truth > 0 is scored, and a prediction <= 0 (or NaN)
    always counts as a miss. The DDFF-12 code also misses a prediction of exactly 0 (its
    masked ratio is never below the threshold) but, through a sign slip, counts a
    negative prediction as a hit; here it is a miss.
    """
    p, t = _scored(pred, truth, mask, positive=True)
    _warn_nonpositive(p)
    return _delta(p, t, threshold)


def _scharr(f: np.ndarray, axis: int) -> np.ndarray:
    """skimage's ``scharr_h`` (axis 0) / ``scharr_v`` (axis 1): the unnormalised central
    difference ``f[i+1] - f[i-1]`` along ``axis``, smoothed by [3, 10, 3]/16 across it,
    with mirrored borders (scipy 'reflect', as current skimage does; older releases set
    the outermost pixel of each derivative to 0 instead)."""
    p = np.pad(f, 1, mode="symmetric")
    if axis == 1:
        d = p[:, 2:] - p[:, :-2]
        return (3 * d[:-2] + 10 * d[1:-1] + 3 * d[2:]) / 16
    d = p[2:] - p[:-2]
    return (3 * d[:, :-2] + 10 * d[:, 1:-1] + 3 * d[:, 2:]) / 16


def bumpiness(
    pred: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray | None = None,
    clip: float = BUMP_CLIP,
) -> float:
    """Bumpiness of the error ``pred - truth`` of two (H,W) maps.

    The metric of the 4D Light Field Benchmark (Honauer et al., ACCV 2016), reused by
    DDFF-12: per pixel the Frobenius norm ``sqrt(dxx² + dxy² + dyx² + dyy²)`` of the
    Hessian of the error, clipped at ``clip`` (0.05), averaged over the scored pixels
    and multiplied by 100. The derivatives are those of the HCI evaluation toolkit
    (``BumpinessPlanes.get_bumpiness``, github.com/lightfield-analysis/evaluation-toolkit)
    and of the DDFF-12 evaluation code: ``dx = scharr_v(e)``, ``dy = scharr_h(e)``,
    ``dxx = scharr_v(dx)``, ``dxy = scharr_h(dx)``, ``dyy = scharr_h(dy)``,
    ``dyx = scharr_v(dy)`` with skimage's Scharr filters, in float64. These are
    unnormalised central differences (``f[i+1] - f[i-1]``, twice the derivative), so
    the "Hessian" is 4x the analytic one: for ``e = a·x²`` the norm is ``8|a|``, and an
    affine error (a tilted plane) scores 0 away from the border. Pixels within 2 of the
    image border see the mirrored border (the HCI benchmark leaves a 15-pixel boundary
    out of all its scores; pass a mask to do the same).

    The value depends on the scale of the maps: HCI computes it on disparity in pixels,
    DDFF-12 on its depth/disparity maps; scores in different units are not comparable.

    Ground truth that is not finite makes the error NaN there; every pixel whose Hessian
    is then not finite (within 2 pixels of an invalid one, or of a non-finite
    prediction) is left out of the average, as the HCI toolkit does with
    ``get_mask_valid``. ``mask`` only selects the pixels averaged: the Hessian still
    uses the error of unmasked neighbours. (The DDFF-12 code keeps ground truth 0 in
    the error, so its neighbours score a clipped spike; :func:`evaluate_depth` instead
    treats it as invalid.)
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    valid = _valid(pred, truth, mask, positive=False)
    if truth.ndim != 2:
        raise ValueError(f"bumpiness needs (H,W) maps, got shape {truth.shape}")
    err = pred.astype(np.float64) - truth.astype(np.float64)
    err[~np.isfinite(truth)] = np.nan
    dx, dy = _scharr(err, 1), _scharr(err, 0)
    dxx, dxy, dyy, dyx = _scharr(dx, 1), _scharr(dx, 0), _scharr(dy, 0), _scharr(dy, 1)
    norm = np.minimum(np.sqrt(dxx**2 + dxy**2 + dyy**2 + dyx**2), clip)
    valid &= np.isfinite(norm)
    return 100.0 * _mean(norm[valid])


def evaluate_depth(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """DDFF-12 scores of a depth map: ``mse``, ``rmse``, ``log_rmse``, ``abs_rel``,
    ``sq_rel``, ``delta_1.25``, ``delta_1.25^2``, ``delta_1.25^3``, ``bump`` (see the
    table in the module docstring). Ground truth <= 0 or not finite is left out of all
    of them; non-positive predictions are handled as in :func:`log_rmse` and
    :func:`delta_accuracy`."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    valid = _valid(pred, truth, mask, positive=True)
    p, t = pred[valid].astype(np.float64), truth[valid].astype(np.float64)
    _warn_nonpositive(p)
    err = p - t
    out = {"mse": _mean(err**2)}
    out["rmse"] = float(np.sqrt(out["mse"]))
    out["log_rmse"] = _log_rmse(p, t)
    out["abs_rel"] = _mean(np.abs(err) / t)
    out["sq_rel"] = _mean(err**2 / t)
    for key, thr in zip(DELTA_KEYS, DELTA_THRESHOLDS, strict=True):
        out[key] = _delta(p, t, thr)
    positive_truth = np.where(truth > 0, truth.astype(np.float64), np.nan)
    out["bump"] = bumpiness(pred, positive_truth, valid)
    return out


# --- all-in-focus image -------------------------------------------------------------------

_SSIM_WIN = 11  # Gaussian window of Wang et al.: sigma 1.5, truncated at 3.5 sigma -> 11 taps


def ssim(
    image: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Mean structural similarity of ``image`` to ``truth``, (H,W) or (H,W,C).

    Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error Visibility
    to Structural Similarity", IEEE TIP 2004, via
    ``skimage.metrics.structural_similarity`` with the paper's settings (Gaussian window
    sigma 1.5, population covariance, K1 0.01, K2 0.03); colour channels are scored
    separately and averaged. ``data_range`` defaults to the range of ``truth``'s dtype
    (255 for uint8, 65535 for uint16) and to 1.0 for float images. The SSIM map is
    averaged over the scored pixels, leaving out the 5-pixel border (as skimage's mean
    does) and every pixel whose window touches a non-finite value.
    """
    image, truth = np.asarray(image), np.asarray(truth)
    if image.shape != truth.shape:
        raise ValueError(f"image shape {image.shape} != ground-truth shape {truth.shape}")
    if truth.ndim == 3 and truth.shape[2] == 1:
        image, truth = image[..., 0], truth[..., 0]
        if mask is not None and np.shape(mask) == (*truth.shape, 1):
            mask = np.asarray(mask)[..., 0]
    if truth.ndim not in (2, 3) or min(truth.shape[:2]) < _SSIM_WIN:
        raise ValueError(
            f"ssim needs (H,W) or (H,W,C) images of at least {_SSIM_WIN}x"
            f"{_SSIM_WIN} pixels, got shape {truth.shape}"
        )
    if data_range is None:
        if np.issubdtype(truth.dtype, np.integer):
            info = np.iinfo(truth.dtype)
            data_range = float(info.max) - float(info.min)
        else:
            data_range = 1.0
    colour = truth.ndim == 3
    _, smap = structural_similarity(
        image.astype(np.float64),
        truth.astype(np.float64),
        win_size=_SSIM_WIN,
        data_range=data_range,
        channel_axis=-1 if colour else None,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    valid = np.isfinite(truth).all(axis=2) if colour else np.isfinite(truth)
    mask = _check_mask(mask, valid.shape)
    if mask is not None:
        valid &= mask
    if colour:
        smap = smap.mean(axis=2)
    pad = (_SSIM_WIN - 1) // 2
    inner = np.zeros_like(valid)
    inner[pad:-pad, pad:-pad] = True
    valid &= inner & np.isfinite(smap)
    _warn_if_empty(valid)
    return _mean(smap[valid])


def psnr(image: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``peak`` is the value range, 255 for 8 bit)."""
    mse = np.mean((image.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


#: the near-edge band of the edge scores: within this many pixels of a depth jump ...
EDGE_RADIUS = 5
#: ... of more than this many slices between neighbouring pixels of the ground truth
EDGE_STEP = 0.5


def depth_edges(index: np.ndarray, radius: int, step: float = 0.5) -> np.ndarray:
    """Pixels within ``radius`` of a place where ``index`` jumps by more than ``step``
    between 4-neighbours (non-finite values never make a jump)."""
    j = np.zeros(index.shape, bool)
    dx, dy = np.abs(np.diff(index, axis=1)) > step, np.abs(np.diff(index, axis=0)) > step
    j[:, 1:] |= dx
    j[:, :-1] |= dx
    j[1:] |= dy
    j[:-1] |= dy
    k = 2 * radius + 1
    return cv2.dilate(j.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def edge_split(
    truth: np.ndarray, step: float = EDGE_STEP, radius: int = EDGE_RADIUS
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps ``(near, inside)`` of the edge scores: ``near`` holds the pixels within
    ``radius`` px of a jump of the ground truth by more than ``step`` (its units: slices
    for an index, e.g. half a slice's disparity for disparity), ``inside`` the rest. Both
    are used as the ``mask`` of a metric, so non-finite truth stays unscored."""
    near = depth_edges(np.asarray(truth, np.float32), radius, step)
    return near, ~near


def seam_strength(image: np.ndarray, truth: np.ndarray, smooth: float = 0.0) -> np.ndarray:
    """(H,W) gradient magnitude of the error image (optionally Gaussian-smoothed first):
    high along seams of a composite, low where its error is smooth."""
    err = image.astype(np.float32) - truth.astype(np.float32)
    if smooth:
        err = cv2.GaussianBlur(err, (0, 0), smooth)
    gx = cv2.Sobel(err, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(err, cv2.CV_32F, 0, 1, ksize=1)
    mag = np.sqrt(gx * gx + gy * gy)
    return mag.mean(axis=2) if mag.ndim == 3 else mag


def to_output_grid(truth: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """Ground truth in a result's pixel grid: cut to the aligner's ``crop`` (x, y, w, h)."""
    if crop is None:
        return truth
    x, y, w, h = crop
    return truth[y : y + h, x : x + w]
