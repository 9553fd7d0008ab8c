"""The focus-measure catalogue: every registered measure, and hand-computed values."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from dffcore_plugins.focus import COMPONENTS
from pydantic import ValidationError
from scipy.fft import dctn
from skimage import data as skdata

from dffcore import load_spec, read_stack, run_pipeline
from dffcore.eval.synth import SynthStack

from .conftest import dff

NAMES = [cls.name for cls in COMPONENTS]
BY_NAME = {cls.name: cls for cls in COMPONENTS}
COLOURED = [cls.name for cls in COMPONENTS if "colour" in cls.Params.model_fields]
SIGMAS = (0, 0.7, 1.2, 2, 3, 4.5)


def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Band-limited noise plus a crop of skimage's camera, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    camera = cv2.resize(skdata.camera()[100:292, 160:416], (w, h), interpolation=cv2.INTER_AREA)
    tex = 0.6 * camera.astype(np.float32) / 255 + 0.4 * (0.5 + 0.25 * noise / noise.std())
    return np.clip(tex, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return _texture()


@pytest.fixture(scope="module")
def colour_image(texture: np.ndarray) -> np.ndarray:
    """RGB uint8 whose channels differ: sharp texture, its blur, a flipped copy."""
    rgb = np.stack([texture, cv2.GaussianBlur(texture, (0, 0), 2), texture[::-1]], axis=2)
    return np.round(rgb * 255).astype(np.uint8)


def _measure(name: str, frame: np.ndarray, **params: object) -> np.ndarray:
    return BY_NAME[name](params).measure(frame)


# --- every registered measure ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_response_falls_strictly_with_blur(name: str, texture: np.ndarray) -> None:
    m = BY_NAME[name]()
    local_std = np.sqrt(
        np.maximum(cv2.blur(texture**2, (9, 9)) - cv2.blur(texture, (9, 9)) ** 2, 0)
    )
    textured = local_std > 0.03
    textured[:12], textured[-12:], textured[:, :12], textured[:, -12:] = False, False, False, False
    assert textured.mean() > 0.3
    means = []
    for s in SIGMAS:
        frame = cv2.GaussianBlur(texture, (0, 0), s) if s else texture
        means.append(float(m.measure(frame[..., None])[textured].mean()))
    assert all(a > b for a, b in itertools.pairwise(means)), dict(zip(SIGMAS, means, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_and_channels_give_the_same_valid_map(name: str, colour_image) -> None:
    m = BY_NAME[name]()
    for img in (colour_image, colour_image[..., :1]):
        ref = m.measure(img)
        assert ref.shape == img.shape[:2] and ref.dtype == np.float32
        assert np.isfinite(ref).all() and ref.min() >= 0 and ref.max() > 0
        as_u16 = img.astype(np.uint16) * 257  # the same picture in 16 bit
        as_f32 = img.astype(np.float32) / 255
        for other in (as_u16, as_f32):
            out = m.measure(other)
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-5 * float(ref.max()))


@pytest.mark.parametrize("name", COLOURED)
def test_colour_max_differs_from_luminance(name: str, colour_image: np.ndarray) -> None:
    lum = _measure(name, colour_image)
    mx = _measure(name, colour_image, colour="max")
    assert mx.shape == lum.shape and mx.dtype == np.float32 and mx.min() >= 0
    assert not np.allclose(mx, lum, rtol=1e-2)
    # on a grey frame there is one channel: max is luminance
    grey = colour_image[..., :1]
    np.testing.assert_array_equal(_measure(name, grey, colour="max"), _measure(name, grey))


def test_plugins_lists_every_measure_with_params_and_citation() -> None:
    proc = dff("plugins", "--kind", "focus", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    for cls in COMPONENTS:
        entry = listed[cls.name]
        assert entry["citation"] and entry["summary"]
        params = {p["name"]: p for p in entry["params"]}
        assert set(params) == set(cls.Params.model_fields)
        assert all(p["doc"] for p in params.values()), cls.name


@pytest.fixture(scope="module")
def synth_stack(synth_dir: Path):
    return read_stack(synth_dir)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_recovers_the_synthetic_depth(name: str, synth: SynthStack, synth_stack) -> None:
    run = run_pipeline(load_spec({"focus": name}), synth_stack)
    error = np.abs(run.result.index - synth.index)
    assert np.median(error) < 1.0, (name, float(np.median(error)), float(error.mean()))


# --- hand-computed values on tiny images ---------------------------------------------------


def _point(size: int = 5) -> np.ndarray:
    """A (size, size, 1) float32 frame, 0 but for a 1 in the centre."""
    frame = np.zeros((size, size, 1), np.float32)
    frame[size // 2, size // 2] = 1.0
    return frame


def test_lape_of_a_point() -> None:
    out = _measure("lape", _point(), window=1)
    assert out[2, 2] == pytest.approx((-4 * 1) ** 2)
    assert out[2, 3] == pytest.approx((1 * 1) ** 2)
    assert out[1, 1] == 0


def test_lapm_of_a_point() -> None:
    out = _measure("lapm", _point(), window=1)
    assert out[2, 2] == pytest.approx(abs(2 * 1 - 0 - 0) + abs(2 * 1 - 0 - 0))
    assert out[2, 3] == pytest.approx(abs(2 * 0 - 1 - 0) + abs(2 * 0 - 0 - 0))
    assert out[1, 1] == 0


def test_sml_step_and_threshold() -> None:
    # step 2: the neighbours compared with the centre are 2 px away
    out = _measure("sml", _point(), window=1, step=2)
    assert out[2, 2] == pytest.approx(abs(2 * 1 - 0 - 0) + abs(2 * 1 - 0 - 0))
    assert out[2, 3] == 0  # its step-2 neighbours are both dark
    assert out[2, 4] == pytest.approx(abs(2 * 0 - 1 - 0))
    thresholded = _measure("sml", _point(), window=1, step=2, threshold=1.5)
    assert thresholded[2, 4] == 0 and thresholded[2, 2] == pytest.approx(4)
    # window 3 around the centre: only the centre's ML (4) is non-zero, mean over 9 pixels
    assert _measure("sml", _point(), window=3, step=2)[2, 2] == pytest.approx(4 / 9)


def test_lapd_of_a_point() -> None:
    out = _measure("lapd", _point(), window=1)
    assert out[2, 2] == pytest.approx(2 + 2 + (2 + 2) / math.sqrt(2))
    # diagonal neighbour: only the diagonal through it sees the point, |-1|/√2
    assert out[1, 1] == pytest.approx(1 / math.sqrt(2))


def test_teng_of_a_point() -> None:
    # Sobel at the 4 edge neighbours: gx or gy = ±2 -> 4; at the 4 diagonals: gx, gy = ±1 -> 2
    expected = (4 * 2**2 + 4 * (1**2 + 1**2) + 0) / 9
    assert _measure("teng", _point(), window=3)[2, 2] == pytest.approx(expected)
    # a threshold of 1.8 on the magnitude keeps the edge neighbours (2) only, not √2
    assert _measure("teng", _point(), window=3, threshold=1.8)[2, 2] == pytest.approx(16 / 9)


def test_grae_of_a_point() -> None:
    # forward differences: centre (-1, -1) -> 2; left and upper neighbours (1, 0) -> 1 each
    expected = ((-1) ** 2 + (-1) ** 2 + 1**2 + 1**2) / 9
    assert _measure("grae", _point(), window=3)[2, 2] == pytest.approx(expected)


def test_sfrq_of_a_point() -> None:
    row_freq2 = ((-1) ** 2 + 1**2) / 9  # horizontal differences in the 3x3 window
    col_freq2 = ((-1) ** 2 + 1**2) / 9
    out = _measure("sfrq", _point(), window=3)
    assert out[2, 2] == pytest.approx(math.sqrt(row_freq2 + col_freq2))


def test_bren_of_a_point() -> None:
    # I(x+1) - I(x-1) is ±1 at the left/right neighbours, likewise vertically; 0 at the centre
    expected = (4 * 1**2 + 0) / 9
    assert _measure("bren", _point(), window=3)[2, 2] == pytest.approx(expected)


def test_glva_of_a_point() -> None:
    mean, mean_sq = 1 / 9, 1 / 9
    out = _measure("glva", _point(), window=3)
    assert out[2, 2] == pytest.approx(mean_sq - mean**2)
    assert _measure("glva", _point(), window=1).max() == 0


def test_vola_of_a_bar() -> None:
    frame = np.zeros((5, 5, 1), np.float32)
    frame[2, 1] = frame[2, 2] = 1.0  # two bright pixels in a row
    # only I(2,1) * (I(2,2) - I(2,3)) = 1 * (1 - 0) is non-zero (vertical terms are 0)
    assert _measure("vola", frame, window=3)[2, 2] == pytest.approx(1 * (1 - 0) / 9)


def test_helm_of_a_point_on_grey() -> None:
    frame = np.full((5, 5, 1), 0.5, np.float32)
    frame[2, 2] = 1.0
    mu = (8 * 0.5 + 1.0) / 9  # every window around the 3x3 centre holds the bright pixel
    expected = (8 * (mu / 0.5) + 1.0 / mu) / 9 - 1
    assert _measure("helm", frame, window=3)[2, 2] == pytest.approx(expected, rel=1e-5)


def test_rdf_of_a_point_leaves_a_gap() -> None:
    out = _measure("rdf", _point(9), window=1)  # disc d ≤ 1 (5 px), ring 2 < d ≤ 3 (16 px)
    assert out[4, 4] == pytest.approx(1 / 5)
    assert out[4, 6] == 0  # d = 2: in the gap
    assert out[4, 7] == pytest.approx(1 / 16)


def test_dcte_equals_the_dct_energy_ratio_of_the_window() -> None:
    patch = _texture(7, 7, seed=3)
    coef = dctn(patch.astype(np.float64), norm="ortho") ** 2
    expected = (coef.sum() - coef[0, 0]) / coef[0, 0]
    out = _measure("dcte", np.pad(patch, 4, mode="symmetric")[..., None], window=7)
    assert out[7, 7] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "params"),
    [("lape", {"window": 4}), ("rdf", {"ring_inner": 3, "ring_outer": 2}), ("sml", {"step": 0})],
)
def test_bad_params_are_rejected(name: str, params: dict) -> None:
    with pytest.raises(ValidationError):
        BY_NAME[name](params)


def test_gaussian_prefilter_blurs_before_the_operator(texture: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(texture, (7, 7), 1.0, borderType=cv2.BORDER_REFLECT)  # 6σ+1
    np.testing.assert_allclose(
        _measure("lape", texture[..., None], gaussian_sigma=1.0),
        _measure("lape", blurred[..., None]),
        rtol=1e-5,
        atol=1e-9,
    )


# --- hand-computed values: variance, derivative, statistics and wavelet measures -----------


def _window(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window of a 2-D array centred on (y, x), as float64."""
    r = size // 2
    return image[y - r : y + r + 1, x - r : x + r + 1].astype(np.float64)


def _correlate3(image: np.ndarray, kernel: np.ndarray, y: int, x: int) -> float:
    """Σ kernel[i, j] · image[y + i − 1, x + j − 1]: one 3x3 correlation at an interior pixel."""
    return float((_window(image, y, x, 3) * np.asarray(kernel, np.float64)).sum())


def _random_patch(seed: int = 11, size: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.9, (size, size)).astype(np.float32)


def test_mslog_of_a_point_and_of_a_paraboloid() -> None:
    """mslog is the product over scales of the window-smoothed |LoG|."""
    # no pre-blur (kernel 1), no window: |Laplacian| apertures 1 and 3 at the point are
    # |−4| (kernel [[0,1,0],[1,−4,1],[0,1,0]]) and |−8| (kernel [[2,0,2],[0,−8,0],[2,0,2]])
    out = _measure("mslog", _point(9), scales=[(1, 1), (1, 3)], window_sigma=0)
    assert out[4, 4] == pytest.approx(4 * 8)
    assert out[4, 5] == 0  # aperture 3 is 0 at an edge neighbour
    # one scale, a Gaussian window σ = 1 (7 taps): Σ G · |ΔI| over the point's response
    t = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(t**2) / 2)
    g /= g.sum()
    one = _measure("mslog", _point(9), scales=[(1, 1)], window_sigma=1.0)
    assert one[4, 4] == pytest.approx(g[3] * g[3] * 4 + 4 * g[3] * g[4] * 1, rel=1e-5)
    # I = c (x² + y²): any blur keeps the Laplacian constant; OpenCV's aperture-k Laplacian is
    # the sum of the Sobel second derivatives d2 ⊗ s, which map x² to Σ d2[a] a² · Σ s:
    # aperture 3: d2 = [1, −2, 1], s = [1, 2, 1] -> 2 · 4 = 8 per axis, 16 in all;
    # aperture 5: d2 = [1, 0, −2, 0, 1], s = [1, 4, 6, 4, 1] -> 8 · 16 = 128 per axis, 256.
    c = 1e-3
    yy, xx = np.mgrid[-12:12, -12:12].astype(np.float32)
    paraboloid = (c * (xx**2 + yy**2)).astype(np.float32)[..., None]
    out = _measure("mslog", paraboloid)  # defaults: scales (3, 3), (7, 5), window σ 1
    assert out[12, 12] == pytest.approx((16 * c) * (256 * c), rel=1e-4)
    assert out[10, 14] == pytest.approx((16 * c) * (256 * c), rel=1e-4)


def test_lapv_of_a_point() -> None:
    """lapv is the window variance of the 4-neighbour Laplacian (−4 at the point, 1 beside)."""
    out = _measure("lapv", _point(9), window=3)
    # centre: values 0, 1, 0 / 1, −4, 1 / 0, 1, 0: mean 0, mean of squares 20/9
    assert out[4, 4] == pytest.approx(20 / 9, rel=1e-5)
    # one to the right: 1, 0, 0 / −4, 1, 0 / 1, 0, 0: mean −1/9, mean of squares 19/9
    assert out[4, 5] == pytest.approx(19 / 9 - (1 / 9) ** 2, rel=1e-5)
    assert out[0, 0] == pytest.approx(0, abs=1e-7)
    # a random patch against the formula written out
    img = _random_patch()
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    out = _measure("lapv", img[..., None], window=3)
    for y, x in ((5, 5), (6, 4)):
        vals = [_correlate3(img, lap, y + i, x + j) for i in (-1, 0, 1) for j in (-1, 0, 1)]
        assert out[y, x] == pytest.approx(np.var(vals), rel=1e-4)


def test_tenv_of_a_point() -> None:
    """tenv is the window variance of the Sobel gx² + gy², not its mean (that is teng)."""
    # gx² + gy² around the point: 0 at it, 2² = 4 at its 4 edge neighbours, 1 + 1 = 2 at
    # its 4 diagonal neighbours
    out = _measure("tenv", _point(9), window=3)
    mean, mean_sq = (4 * 4 + 4 * 2) / 9, (4 * 4**2 + 4 * 2**2) / 9
    assert out[4, 4] == pytest.approx(mean_sq - mean**2, rel=1e-5)  # 16/9, teng: 24/9
    # one to the right: 4, 0, 4 in its left column, 2, 4, 2 in its middle one, 0s
    mean, mean_sq = (4 + 4 + 2 + 4 + 2) / 9, (16 + 16 + 4 + 16 + 4) / 9
    assert out[4, 5] == pytest.approx(mean_sq - mean**2, rel=1e-5)  # 248/81
    img = _random_patch(12)
    sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    out = _measure("tenv", img[..., None], window=3)
    for y, x in ((5, 5), (6, 4)):
        energy = [
            _correlate3(img, sx, y + i, x + j) ** 2 + _correlate3(img, sx.T, y + i, x + j) ** 2
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
        ]
        assert out[y, x] == pytest.approx(np.var(energy), rel=1e-4)


def test_gder_of_a_ramp_and_of_a_point() -> None:
    """gder: (I ∗ ∂G/∂x)² + (I ∗ ∂G/∂y)², the derivative filter scaled to slope 1 on a ramp."""
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    ramp = (0.02 * xx + 0.01 * yy)[..., None]
    out = _measure("gder", ramp, window=3)  # σ 1: kernels of 7 taps
    assert out[8, 8] == pytest.approx(0.02**2 + 0.01**2, rel=1e-4)
    # the point: at (4, 5) only the x derivative is non-zero, d[−1] · g[0], with
    # g the normalised Gaussian and d = t·g scaled so that Σ t · d = 1
    t = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(t**2) / 2)
    g /= g.sum()
    d = t * g / (t * t * g).sum()
    out = _measure("gder", _point(9), window=1)
    assert out[4, 5] == pytest.approx((d[3 - 1] * g[3]) ** 2, rel=1e-5)
    assert out[5, 6] == pytest.approx((d[3 - 2] * g[3 - 1]) ** 2 + (g[3 - 2] * d[3 - 1]) ** 2)
    assert out[4, 4] == pytest.approx(0, abs=1e-12)


def test_glvn_of_a_point_on_grey() -> None:
    """glvn is the window variance over the window mean."""
    frame = np.full((9, 9, 1), 0.5, np.float32)
    frame[4, 4] = 1.0
    mean, mean_sq = (8 * 0.5 + 1.0) / 9, (8 * 0.25 + 1.0) / 9
    out = _measure("glvn", frame, window=3)
    assert out[4, 4] == pytest.approx((mean_sq - mean**2) / mean, rel=1e-4)  # 2/45
    assert out[0, 0] == pytest.approx(0, abs=1e-7)
    # a black image: the mean's floor (1e-3) keeps it 0, not NaN
    assert np.all(_measure("glvn", np.zeros((9, 9, 1), np.float32), window=3) == 0)


def test_glll_of_a_point() -> None:
    """glll is the window variance of the window variance."""
    v = 1 / 9 - (1 / 9) ** 2  # the 3x3 variance of every window holding the point
    out = _measure("glll", _point(9), window=3)
    assert out[4, 4] == pytest.approx(0, abs=1e-9)  # its window sees v 9 times
    assert out[4, 5] == pytest.approx(6 / 9 * v**2 - (6 / 9 * v) ** 2, rel=1e-4)
    assert out[5, 5] == pytest.approx(4 / 9 * v**2 - (4 / 9 * v) ** 2, rel=1e-4)


def test_acmo_of_a_point() -> None:
    """acmo: window mean of |I − μ|, μ the window mean around each pixel (as documented)."""
    # μ is 1/9 on the point's 3x3 neighbourhood: |I − μ| is 8/9 at the point, 1/9 beside it
    out = _measure("acmo", _point(9), window=3)
    assert out[4, 4] == pytest.approx((8 / 9 + 8 * (1 / 9)) / 9, rel=1e-5)
    assert out[4, 5] == pytest.approx((8 / 9 + 5 * (1 / 9)) / 9, rel=1e-5)
    assert out[1, 1] == pytest.approx(0, abs=1e-7)
    assert np.all(_measure("acmo", np.full((9, 9, 1), 0.3, np.float32), window=3) < 1e-7)


def test_wavs_of_a_ramp_a_checkerboard_and_a_point() -> None:
    """wavs: window mean of |LH| + |HL| + |HH| of the 2x2 Haar block [[a, b], [c, d]]:
    (a − b + c − d)/2, (a + b − c − d)/2, (a − b − c + d)/2."""
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float32)
    # a ramp I = 0.03 x + 0.02 y: |−2·0.03/2| + |−2·0.02/2| + 0
    out = _measure("wavs", (0.03 * xx + 0.02 * yy)[..., None], window=3)
    assert out[4, 4] == pytest.approx(0.03 + 0.02, rel=1e-4)
    # a checkerboard ±h: only the diagonal detail, |(h + h + h + h)/2| = 2h
    h = 0.1
    board = (0.5 + h * (-1.0) ** (xx + yy)).astype(np.float32)[..., None]
    assert _measure("wavs", board, window=3)[4, 4] == pytest.approx(2 * h, rel=1e-4)
    # the point: every block holding it has three details of magnitude 1/2 (4 blocks, whose
    # top-left pixels are (3..4, 3..4))
    out = _measure("wavs", _point(9), window=1)
    assert out[3, 3] == out[3, 4] == out[4, 3] == pytest.approx(1.5)
    assert out[4, 4] == pytest.approx(1.5) and out[2, 2] == 0 and out[5, 5] == 0
    assert _measure("wavs", _point(9), window=3)[4, 4] == pytest.approx(4 * 1.5 / 9, rel=1e-5)


def test_wavv_of_a_ramp_a_checkerboard_and_a_point() -> None:
    """wavv: Σ over |LH|, |HL|, |HH| of their window variance."""
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float32)
    # constant details: no variance
    assert _measure("wavv", (0.03 * xx + 0.02 * yy)[..., None], window=3)[4, 4] < 1e-9
    board = (0.5 + 0.1 * (-1.0) ** (xx + yy)).astype(np.float32)[..., None]
    assert _measure("wavv", board, window=3)[4, 4] < 1e-9
    # the point: each detail is 1/2 on the 4 pixels (3..4, 3..4), 0 elsewhere
    out = _measure("wavv", _point(9), window=3)
    # at (4, 4) the window holds all 4: mean 4/18, mean of squares 4/36
    assert out[4, 4] == pytest.approx(3 * (4 / 36 - (4 / 18) ** 2), rel=1e-4)  # 5/27
    # at (2, 2) it holds one: mean 1/18, mean of squares 1/36
    assert out[2, 2] == pytest.approx(3 * (1 / 36 - (1 / 18) ** 2), rel=1e-4)  # 2/27
