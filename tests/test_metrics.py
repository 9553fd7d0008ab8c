"""dffcore.eval.metrics: every metric against values worked out by hand on tiny arrays."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import skimage.filters as skf

from dffcore.eval import metrics
from dffcore.eval.metrics import (
    METRIC_INFO,
    abs_rel,
    bad_pixel_rate,
    bumpiness,
    delta_accuracy,
    edge_split,
    evaluate_depth,
    evaluate_index,
    log_rmse,
    mae,
    mse,
    rmse,
    sq_rel,
    ssim,
)

# --- slice units ---------------------------------------------------------------------------
# pred - truth = [[0, 0.5, -1], [0, 2, 2.5]]
# |err|  = 0, 0.5, 1, 0, 2, 2.5        sum 6     -> mae 1
# err^2  = 0, 0.25, 1, 0, 4, 6.25      sum 11.5  -> mse 11.5/6, rmse sqrt(11.5/6)
# |err| > 0.5: 1, 2, 2.5 -> 3/6;  > 1: 2, 2.5 -> 2/6;  > 2: 2.5 -> 1/6 (strict: 0.5 is not > 0.5)
PRED_I = np.array([[0.0, 1.5, 2.0], [3.0, 4.0, 7.5]], np.float32)
TRUTH_I = np.array([[0.0, 1.0, 3.0], [3.0, 2.0, 5.0]], np.float32)


def test_slice_metrics_by_hand() -> None:
    assert mae(PRED_I, TRUTH_I) == pytest.approx(1.0)
    assert mse(PRED_I, TRUTH_I) == pytest.approx(11.5 / 6)
    assert rmse(PRED_I, TRUTH_I) == pytest.approx(math.sqrt(11.5 / 6))
    assert bad_pixel_rate(PRED_I, TRUTH_I, 0.5) == pytest.approx(3 / 6)
    assert bad_pixel_rate(PRED_I, TRUTH_I, 1) == pytest.approx(2 / 6)
    assert bad_pixel_rate(PRED_I, TRUTH_I, 2) == pytest.approx(1 / 6)
    assert isinstance(mae(PRED_I, TRUTH_I), float)


def test_evaluate_index_by_hand() -> None:
    got = evaluate_index(PRED_I, TRUTH_I)
    want = {"mae": 1.0, "rmse": math.sqrt(11.5 / 6), "bad_0.5": 0.5, "bad_1": 1 / 3, "bad_2": 1 / 6}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
        assert type(got[key]) is float


def test_mask_and_invalid_truth_are_excluded() -> None:
    mask = np.ones((2, 3), bool)
    mask[1, 2] = False  # drop the 2.5 error: |err| 0, .5, 1, 0, 2 -> mae 3.5/5
    assert mae(PRED_I, TRUTH_I, mask) == pytest.approx(0.7)
    assert evaluate_index(PRED_I, TRUTH_I, mask)["bad_2"] == 0.0  # 2 is not > 2
    truth = TRUTH_I.copy()
    truth[1, 1] = np.nan  # drop the error 2: 0, .5, 1, 0, 2.5 -> mae 4/5, rmse sqrt(7.5/5)
    truth[0, 0] = np.inf  # and the first 0: 0.5, 1, 0, 2.5 -> mae 4/4
    assert mae(PRED_I, truth) == pytest.approx(1.0)
    assert rmse(PRED_I, truth) == pytest.approx(math.sqrt(7.5 / 4))
    assert bad_pixel_rate(PRED_I, truth, 1) == pytest.approx(1 / 4)


def test_nothing_to_score_is_nan_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dffcore.eval.metrics"):
        value = mae(PRED_I, TRUTH_I, np.zeros((2, 3), bool))
    assert math.isnan(value)
    assert "no pixel to score" in caplog.text


def test_programming_errors_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) != ground-truth shape \(3, 2\)"):
        mae(PRED_I, TRUTH_I.T)
    with pytest.raises(ValueError, match="mask shape"):
        evaluate_index(PRED_I, TRUTH_I, np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="boolean"):
        rmse(PRED_I, TRUTH_I, np.ones((2, 3), np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        bad_pixel_rate(PRED_I, TRUTH_I, -1)
    with pytest.raises(ValueError, match="shape"):
        evaluate_depth(PRED_I, TRUTH_I[:, :2])
    with pytest.raises(ValueError, match="shape"):
        ssim(np.zeros((16, 16), np.uint8), np.zeros((16, 17), np.uint8))


# --- depth units (DDFF-12) -----------------------------------------------------------------
# truth 0 at [1, 2] is missing depth: left out. The 5 scored pixels (p, t):
#   (1,1) (2,1) (4,5) (0.5,1) (3,3);  err = 0, 1, -1, -0.5, 0
# mse      = (0 + 1 + 1 + 0.25 + 0) / 5            = 0.45
# log err  = 0, ln 2, ln 0.8, -ln 2, 0  -> sum of squares 2 ln²2 + ln²0.8
# abs_rel  = (0 + 1/1 + 1/5 + 0.5/1 + 0) / 5       = 0.34
# sq_rel   = (0 + 1/1 + 1/5 + 0.25/1 + 0) / 5      = 0.29
# ratios   = 1, 2, 1.25, 2, 1 -> <1.25: 2/5 (1.25 itself fails), <1.5625: 3/5, <1.953125: 3/5
PRED_D = np.array([[1.0, 2.0, 4.0], [0.5, 3.0, 6.0]])
TRUTH_D = np.array([[1.0, 1.0, 5.0], [1.0, 3.0, 0.0]])
LOG_RMSE_D = math.sqrt((2 * math.log(2) ** 2 + math.log(0.8) ** 2) / 5)


def test_depth_metrics_by_hand() -> None:
    assert log_rmse(PRED_D, TRUTH_D) == pytest.approx(LOG_RMSE_D)
    assert abs_rel(PRED_D, TRUTH_D) == pytest.approx(0.34)
    assert sq_rel(PRED_D, TRUTH_D) == pytest.approx(0.29)
    assert delta_accuracy(PRED_D, TRUTH_D) == pytest.approx(0.4)
    assert delta_accuracy(PRED_D, TRUTH_D, 1.25**2) == pytest.approx(0.6)
    assert delta_accuracy(PRED_D, TRUTH_D, 1.25**3) == pytest.approx(0.6)
    mask = np.array([[True, True, False], [True, True, True]])  # drop (4,5): abs_rel 1.5/4
    assert abs_rel(PRED_D, TRUTH_D, mask) == pytest.approx(1.5 / 4)


def test_evaluate_depth_by_hand() -> None:
    got = evaluate_depth(PRED_D, TRUTH_D)
    assert list(got) == [
        "mse",
        "rmse",
        "log_rmse",
        "abs_rel",
        "sq_rel",
        "delta_1.25",
        "delta_1.25^2",
        "delta_1.25^3",
        "bump",
    ]
    assert got["mse"] == pytest.approx(0.45)  # the t = 0 pixel (error 6) is left out
    assert got["rmse"] == pytest.approx(math.sqrt(0.45))
    assert got["log_rmse"] == pytest.approx(LOG_RMSE_D)
    assert got["abs_rel"] == pytest.approx(0.34)
    assert got["sq_rel"] == pytest.approx(0.29)
    assert (got["delta_1.25"], got["delta_1.25^2"], got["delta_1.25^3"]) == pytest.approx(
        (0.4, 0.6, 0.6)
    )
    truth = TRUTH_D.copy()
    truth[0, 1] = np.nan  # drops err 1: mse (0 + 1 + 0.25 + 0) / 4
    assert evaluate_depth(PRED_D, truth)["mse"] == pytest.approx(1.25 / 4)


def test_nonpositive_predictions_follow_ddff12(caplog: pytest.LogCaptureFixture) -> None:
    pred = np.array([[1.0, 0.0], [-1.0, 2.0]])
    truth = np.ones((2, 2))
    with caplog.at_level(logging.WARNING, logger="dffcore.eval.metrics"):
        # ln-error 0, -, -, ln 2; the two non-positive pixels add 0 but count: sqrt(ln²2 / 4)
        assert log_rmse(pred, truth) == pytest.approx(math.log(2) / 2)
        # only [0, 0] (ratio 1) is within 1.25; 0 and -1 are misses, and so is ratio 2
        assert delta_accuracy(pred, truth) == pytest.approx(0.25)
    assert "2 scored pixel(s) with prediction <= 0" in caplog.text


# --- bumpiness -----------------------------------------------------------------------------
H, W = 10, 12
Y, X = np.mgrid[0:H, 0:W].astype(np.float64)
INNER = np.zeros((H, W), bool)
INNER[2:-2, 2:-2] = True  # at least 2 pixels from the border: no mirrored values involved


def test_bumpiness_of_an_affine_error_is_zero() -> None:
    truth = 1.0 + 0.1 * X
    pred = truth + 0.3 + 0.02 * X - 0.05 * Y  # error is a plane: its Hessian is 0
    assert bumpiness(pred, truth, INNER) == pytest.approx(0.0, abs=1e-12)
    assert bumpiness(pred, truth) > 0  # the mirrored border bends the plane


def test_bumpiness_of_quadratic_errors_by_hand() -> None:
    # Scharr derivative D f(x) = f(x+1) - f(x-1), smoothed by [3,10,3]/16 across (sum 1).
    # e = a x²: dx = a((x+1)² - (x-1)²) = 4ax, dxx = 4a(x+1) - 4a(x-1) = 8a; e is constant in
    # y, so dxy = dyy = dyx = 0. Norm 8a = 0.008 for a = 0.001 -> bump 100 * 0.008 = 0.8.
    # Columns 2..W-3 never touch the border; rows do not matter (e is constant along y).
    cols = np.zeros((H, W), bool)
    cols[:, 2:-2] = True
    truth = np.full((H, W), 2.0)
    assert bumpiness(truth + 0.001 * X**2, truth, cols) == pytest.approx(0.8)
    # a = 0.01: norm 0.08 is clipped at 0.05 -> bump 5; with clip 0.1 it stays 0.08 -> 8
    assert bumpiness(truth + 0.01 * X**2, truth, cols) == pytest.approx(5.0)
    assert bumpiness(truth + 0.01 * X**2, truth, cols, clip=0.1) == pytest.approx(8.0)
    # e = b x y: dx = 2by (smoothing keeps linear functions), dxx = 0, dxy = 2b(y+1) - 2b(y-1)
    # = 4b, likewise dy = 2bx, dyy = 0, dyx = 4b -> norm sqrt(2 * 16b²) = 4√2 b
    b = 0.001
    assert bumpiness(truth + b * X * Y, truth, INNER) == pytest.approx(100 * 4 * math.sqrt(2) * b)


def test_bumpiness_matches_the_hci_scharr_formulation() -> None:
    # The HCI toolkit's get_bumpiness, written out with skimage's Scharr filters.
    rng = np.random.default_rng(3)
    truth = rng.random((H, W))
    pred = truth + rng.normal(0, 0.01, (H, W))
    diff = pred - truth
    dx, dy = skf.scharr_v(diff), skf.scharr_h(diff)
    norm = np.sqrt(
        skf.scharr_v(dx) ** 2
        + skf.scharr_h(dx) ** 2
        + skf.scharr_h(dy) ** 2
        + skf.scharr_v(dy) ** 2
    )
    clipped = np.clip(norm, 0, 0.05)
    assert 0 < (norm > 0.05).mean() < 1  # some pixels clipped, some not
    assert bumpiness(pred, truth, INNER) == pytest.approx(100 * clipped[INNER].mean())


def test_bumpiness_leaves_out_invalid_truth() -> None:
    # A spike of 2 in the error at (5, 5) changes the Hessian of its 5x5 neighbourhood; the
    # smallest entry there (corner: 2 * 9/256 = 0.07) already exceeds the clip, so all 25
    # pixels score 0.05 and the other 95 of the 120 score 0: bump = 100 * 25 * 0.05 / 120.
    truth = np.full((H, W), 2.0)
    truth[5, 5] = 0.0
    pred = np.full((H, W), 2.0)
    assert bumpiness(pred, truth) == pytest.approx(100 * 25 * 0.05 / 120)
    # For depth, truth 0 is missing: the error there is unknown and its neighbourhood is
    # left out; every other pixel has zero error.
    assert evaluate_depth(pred, truth)["bump"] == pytest.approx(0.0, abs=1e-12)
    truth[5, 5] = np.nan  # the same for NaN in the generic bumpiness
    assert bumpiness(pred, truth) == pytest.approx(0.0, abs=1e-12)


def test_evaluate_depth_bump_is_the_bumpiness() -> None:
    truth = np.full((H, W), 2.0)
    cols = np.zeros((H, W), bool)
    cols[:, 2:-2] = True
    got = evaluate_depth(truth + 0.001 * X**2, truth, cols)["bump"]
    assert got == pytest.approx(0.8)  # as in test_bumpiness_of_quadratic_errors_by_hand


def test_bumpiness_needs_2d_maps() -> None:
    with pytest.raises(ValueError, match=r"\(H,W\)"):
        bumpiness(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)))


# --- all-in-focus --------------------------------------------------------------------------


def test_ssim_of_an_image_with_itself_is_one_and_lower_with_noise() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    assert ssim(truth, truth) == pytest.approx(1.0)
    noise = rng.normal(0, 1, truth.shape)
    slight, strong = (np.clip(truth + s * noise, 0, 255).astype(np.uint8) for s in (20, 60))
    assert ssim(strong, truth) < ssim(slight, truth) < 0.99
    assert ssim(truth[..., :1], truth[..., :1]) == pytest.approx(1.0)  # (H,W,1) grey


def test_ssim_of_constant_images_by_hand() -> None:
    # Flat images: both variances and the covariance are 0, so SSIM reduces to the luminance
    # term (2 mx my + C1) / (mx² + my² + C1) with C1 = (0.01 L)².
    img, ref = np.full((16, 16), 100, np.uint8), np.full((16, 16), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(img, ref) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))
    c1 = (0.01 * 65535) ** 2  # uint16: L = 65535
    want = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(img.astype(np.uint16), ref.astype(np.uint16)) == pytest.approx(want)
    c1 = 0.01**2  # float: L = 1
    want = (2 * 0.4 * 0.5 + c1) / (0.4**2 + 0.5**2 + c1)
    assert ssim(np.full((16, 16), 0.4), np.full((16, 16), 0.5)) == pytest.approx(want)


def test_ssim_mask_scores_only_the_masked_pixels() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    image = truth.copy()
    image[:, 20:] = rng.integers(0, 256, (24, 20), dtype=np.uint8)  # right half differs
    left = np.zeros(truth.shape, bool)
    left[:, :15] = True  # windows (radius 5) of columns < 15 never reach column 20
    assert ssim(image, truth, left) == pytest.approx(1.0)
    assert ssim(image, truth) < 0.9
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(truth[:8, :8], truth[:8, :8])


# --- the key table -------------------------------------------------------------------------


def test_metric_info_and_docstring_cover_every_key() -> None:
    keys = set(evaluate_index(PRED_I, TRUTH_I)) | set(evaluate_depth(PRED_D, TRUTH_D))
    assert keys == set(METRIC_INFO)
    for key, (description, better) in METRIC_INFO.items():
        assert description and better in ("lower", "higher"), key
        assert f"``{key}``" in metrics.__doc__, f"{key} missing from the module docstring table"
    assert METRIC_INFO["delta_1.25"][1] == "higher" and METRIC_INFO["bump"][1] == "lower"


def test_nan_predictions_are_not_hidden() -> None:
    pred = PRED_D.copy()
    pred[0, 1] = np.nan  # a scored pixel
    got = evaluate_depth(pred, TRUTH_D)
    for key in ("mse", "rmse", "log_rmse", "abs_rel", "sq_rel"):
        assert math.isnan(got[key]), key
    assert got["delta_1.25"] == pytest.approx(0.4)  # (2, 1) was a miss anyway: still 2/5
    assert math.isnan(mae(pred, TRUTH_D))


def test_edge_split_marks_pixels_near_true_depth_jumps() -> None:
    truth = np.zeros((20, 30), np.float32)
    truth[:, 15:] = 2.0  # a jump between columns 14 and 15
    truth[:, 25:] = 2.4  # a step below the 0.5-slice threshold: no edge
    truth[0, 0] = np.nan  # never makes an edge
    near, inside = edge_split(truth, radius=3)
    cols = np.flatnonzero(near[10])
    assert cols.tolist() == list(range(11, 19))  # 14 - 3 .. 15 + 3
    assert (near.all(axis=0) == near.any(axis=0)).all() and not near[:, :5].any()
    assert (inside == ~near).all()
    near, _ = edge_split(truth, step=2.5, radius=3)  # a 2-slice jump is not above 2.5
    assert not near.any()
