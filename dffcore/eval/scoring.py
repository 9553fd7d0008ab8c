"""Score a run against a sample's ground truth, in the run's pixel grid.

Scores (keys of :func:`score`'s result, the groups of ``dff compare``'s report):

- ``slice.*``: :func:`dffcore.eval.metrics.evaluate_index` of the fractional index against
  the ground-truth index, whenever the stack has one. ``slice.mae_edges`` and
  ``slice.mae_inside`` split the MAE between the pixels within 5 px of a ground-truth
  depth jump of more than half a slice and the rest
  (:func:`dffcore.eval.metrics.edge_split`): depth from focus errs most along occlusion
  boundaries, where a defocused near edge spreads its focus response over the far side.
  The ground truth is **not clipped**: a pixel whose truth lies outside the sweep
  ``[0, N-1]`` (a dataset's truth can, see :mod:`dffcore.eval.datasets`) stays in every
  score, and ``slice.outside_sweep`` says which fraction of the scored pixels that is (no pipeline
  can reach them: its index is clipped to the sweep).
- ``disparity.*``: with disparity ground truth (HCI, DDFF-12) the index is mapped to
  disparity by :func:`index_to_disparity` and scored like the HCI 4D light-field
  benchmark (Honauer, Johannsen, Kondermann and Goldluecke, ACCV 2016): ``mse`` (px²,
  their tables show MSE x 100), ``rmse`` (px) and ``bump``
  (:func:`dffcore.eval.metrics.bumpiness`). Every pixel with finite ground truth is
  scored (the benchmark's web tables also leave out a 15-px border). ``mse_edges`` and
  ``mse_inside`` split the MSE like the slice scores, a jump being more than half the
  mean spacing of the slices' focus disparities.
- ``depth.*``: with metric depth ground truth (synthetic, FoD500, DDFF-12) the run's
  metric depth (``run.result.depth``, known when the stack has focus distances) is
  scored by :func:`dffcore.eval.metrics.evaluate_depth` (the DDFF-12 protocol of
  Hazirbas et al., ACCV 2018).
- ``aif.*``: :func:`dffcore.eval.metrics.psnr` and :func:`dffcore.eval.metrics.ssim` of
  the all-in-focus image against the true one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from dffcore.eval.datasets import Sample
from dffcore.eval.metrics import (
    bumpiness,
    edge_split,
    evaluate_depth,
    evaluate_index,
    mae,
    mse,
    psnr,
    ssim,
    to_output_grid,
)
from dffcore.ops.convert import to_float32
from dffcore.run.engine import Run

logger = logging.getLogger(__name__)


def score(run: Run, sample: Sample) -> dict[str, float]:
    """Every score of a run against ``sample``'s ground truth (see the module doc).

    Parameters
    ----------
    run : Run
        The result of :func:`dffcore.run.engine.run_pipeline` on ``sample.stack``.
    sample : Sample
        The stack's ground truth (any of index, disparity, depth, all-in-focus).

    Returns
    -------
    dict of str to float
        ``"group.metric"`` -> value, for the groups the ground truth allows. The truth is
        cut to the run's crop (:func:`dffcore.eval.metrics.to_output_grid`) first.
    """
    crop, index, n = run.crop, run.result.index, run.stack.n
    out: dict[str, float] = {}
    if sample.truth_index is not None:
        truth = to_output_grid(sample.truth_index, crop)
        out.update({f"slice.{k}": v for k, v in evaluate_index(index, truth).items()})
        near, inside = edge_split(truth)
        out["slice.mae_edges"] = _masked(mae, index, truth, near)
        out["slice.mae_inside"] = _masked(mae, index, truth, inside)
        t = truth[np.isfinite(truth)]
        out["slice.outside_sweep"] = float(((t < 0) | (t > n - 1)).mean()) if t.size else math.nan
    if sample.truth_disparity is not None and sample.focus_kind == "disparity":
        truth = to_output_grid(sample.truth_disparity, crop)
        pred = index_to_disparity(index, sample.focus_values)
        out["disparity.mse"] = mse(pred, truth)
        out["disparity.rmse"] = math.sqrt(out["disparity.mse"])
        out["disparity.bump"] = bumpiness(pred, truth)
        focus = np.asarray(sample.focus_values, np.float64)
        spacing = float(np.abs(np.diff(focus)).mean()) if focus.size > 1 else math.inf
        near, inside = edge_split(truth, step=0.5 * spacing)
        out["disparity.mse_edges"] = _masked(mse, pred, truth, near)
        out["disparity.mse_inside"] = _masked(mse, pred, truth, inside)
    depth = run.result.depth
    if sample.truth_depth is not None and depth is not None:  # the runner's depth is metres
        truth = to_output_grid(sample.truth_depth, crop)
        out.update({f"depth.{k}": v for k, v in evaluate_depth(depth, truth).items()})
    aif = run.result.all_in_focus
    if sample.all_in_focus is not None and aif is not None:
        truth = to_output_grid(sample.all_in_focus, crop)
        if aif.shape == truth.shape:
            if aif.dtype != truth.dtype:
                aif, truth = to_float32(aif), to_float32(truth)
            peak = np.iinfo(truth.dtype).max if truth.dtype.kind in "ui" else 1.0
            out["aif.psnr"] = psnr(aif, truth, peak=float(peak))
            if min(truth.shape[:2]) >= 11:
                out["aif.ssim"] = ssim(aif, truth)
        else:
            logger.warning("all-in-focus %s vs truth %s: not scored", aif.shape, truth.shape)
    return out


def _masked(metric, pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """``metric`` over ``mask``; NaN without a warning when the mask is empty (a scene
    without depth edges has no near-edge pixels)."""
    return metric(pred, truth, mask) if mask.any() else math.nan


def index_to_disparity(index: np.ndarray, focus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fractional slice index -> disparity.

    Parameters
    ----------
    index : ndarray
        Fractional slice index (0 = first frame).
    focus : sequence of float or ndarray
        The focus disparity of each slice.

    Returns
    -------
    ndarray
        float32 disparity: linear interpolation of the slices' focus disparities
        (``np.interp`` over the slice index; the ends hold outside the sweep).
    """
    focus = np.asarray(focus, np.float64)
    return np.interp(index, np.arange(focus.size), focus).astype(np.float32)
