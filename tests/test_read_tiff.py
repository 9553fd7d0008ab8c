"""The ``tiff`` reader: OME-TIFF, ImageJ and plain z-stacks, physical sizes in metres,
frame selection, lazy reading, channels and series, and broken files; ``dff synth
--format``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from dffcore import DffError
from dffcore.eval.synth import SynthStack, render_stack, write_stack, write_stack_tiff
from dffcore.io.stack import LazyFrames, read_stack

from .conftest import dff, stderr_lines

N, H, W = 12, 64, 80


@pytest.fixture(scope="module")
def small() -> SynthStack:
    return render_stack("default", n_frames=N, size=(H, W), seed=2)


@pytest.fixture(scope="module")
def grey16(small: SynthStack) -> np.ndarray:
    """The frames as write_stack_tiff stores them: 16-bit grey."""
    weights = np.float32([0.299, 0.587, 0.114])
    grey = np.rint(small.frames.astype(np.float32) @ weights).astype(np.uint16)
    return grey * np.uint16(257)


def _data(n: int = 6, *shape: int, dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 60000, (n, *(shape or (H, W)))).astype(dtype)


# -- physical sizes ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["ome", "imagej"])
def test_synthetic_tiffs_read_back_with_their_z_step_in_metres(
    small: SynthStack, grey16: np.ndarray, tmp_path: Path, fmt: str
) -> None:
    path = write_stack_tiff(
        small, tmp_path / f"z.{fmt}.tif", fmt, z_step_um=0.5, pixel_size_um=0.25
    )
    truth = np.load(tmp_path / "ground_truth" / "depth.npy")  # z of the in-focus plane
    np.testing.assert_allclose(truth, small.index * 0.5e-6, rtol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file is gone
    stack = read_stack(path)
    assert stack.frames.dtype == np.uint16 and stack.frames.shape == (N, H, W, 1)
    assert np.abs(stack.frames[..., 0].astype(int) - grey16).max() <= 257  # rounding
    assert stack.focus_unit == "z" and stack.metadata["format"] == fmt
    np.testing.assert_allclose(stack.focus_distances, np.arange(N) * 0.5e-6)
    np.testing.assert_allclose(stack.metadata["pixel_size_m"], (0.25e-6, 0.25e-6))
    assert stack.metadata["z_step_m"] == pytest.approx(0.5e-6)


def test_ome_units_and_the_first_plane_position(tmp_path: Path) -> None:
    data = _data(5)
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": 250.0,
            "PhysicalSizeZUnit": "nm",
            "PhysicalSizeX": 0.1,  # the unit defaults to µm
            "PhysicalSizeY": 0.2,
            "Plane": {"PositionZ": [3.0, 3.25, 3.5, 3.75, 4.0], "PositionZUnit": ["mm"] * 5},
        },
    )
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.frames[..., 0], data)
    np.testing.assert_allclose(stack.focus_distances, 3e-3 + np.arange(5) * 250e-9)
    np.testing.assert_allclose(stack.metadata["pixel_size_m"], (0.1e-6, 0.2e-6))
    # an explicit step wins over the file's; the start stays
    stack = read_stack(path, read_params={"z_step": 2})
    np.testing.assert_allclose(stack.focus_distances, 3e-3 + np.arange(5) * 2e-6)


@pytest.mark.parametrize(("unit", "factor"), [("micron", 1e-6), ("\\u00B5m", 1e-6), ("nm", 1e-9)])
def test_imagej_spacing_units(tmp_path: Path, unit: str, factor: float) -> None:
    data = _data(4)
    path = tmp_path / "ij.tif"
    meta = {"axes": "ZYX", "spacing": 2.0, "unit": unit}
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 5.0), metadata=meta)
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.frames[..., 0], data)
    np.testing.assert_allclose(stack.focus_distances, np.arange(4) * 2.0 * factor)
    np.testing.assert_allclose(stack.metadata["pixel_size_m"], (factor / 4, factor / 5))


def test_without_a_z_step_depth_stays_in_frame_indices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "plain.tiff"
    data = _data(3, dtype=np.float32)
    tifffile.imwrite(path, data, photometric="minisblack")
    with caplog.at_level("INFO"):
        stack = read_stack(path)
    assert stack.focus_distances is None and stack.metadata["format"] == "tiff"
    assert stack.frames.dtype == np.float32
    assert "--read z_step=" in caplog.text
    stack = read_stack(path, read_params={"z_step": 0.5})
    np.testing.assert_allclose(stack.focus_distances, [0, 0.5e-6, 1e-6])


# -- selection, order, lazy -------------------------------------------------------------
def test_frame_selection_reverse_and_lazy_reading(small: SynthStack, tmp_path: Path) -> None:
    path = write_stack_tiff(small, tmp_path / "s.ome.tif", z_step_um=0.5)
    full = read_stack(path).frames
    stack = read_stack(path, frames="2:10:2", reverse=True)
    np.testing.assert_array_equal(stack.frames, full[2:10:2][::-1])
    np.testing.assert_allclose(stack.focus_distances, np.array([8, 6, 4, 2]) * 0.5e-6)
    lazy = read_stack(path, lazy=True, frames="1::3")
    assert isinstance(lazy.frames, LazyFrames) and lazy.frames.shape == (4, H, W, 1)
    np.testing.assert_array_equal(lazy.frames[2], full[7])
    np.testing.assert_allclose(lazy.focus_distances, np.array([1, 4, 7, 10]) * 0.5e-6)


# -- end to end: depth from the TIFFs as good as from the folder ------------------------
@pytest.fixture(scope="module")
def runs(small: SynthStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``dff run best`` on the folder, the OME-TIFF and the ImageJ TIFF of one stack."""
    root = tmp_path_factory.mktemp("tiff-runs")
    write_stack(small, root / "folder")
    sources = {
        "folder": root / "folder",
        "ome": write_stack_tiff(small, root / "ome" / "stack.ome.tif", "ome", z_step_um=0.5),
        "imagej": write_stack_tiff(small, root / "ij" / "stack.tif", "imagej", z_step_um=0.5),
    }
    outs = {}
    for name, source in sources.items():
        outs[name] = root / f"out-{name}"
        proc = dff("run", "best", str(source), "-o", str(outs[name]), "-q")
        assert proc.returncode == 0, proc.stderr
    return outs


def _index_error(out: Path, small: SynthStack) -> float:
    index = np.load(out / "depth_index.npy")
    assert index.shape == small.index.shape
    return float(np.abs(index - small.index).mean())


@pytest.mark.parametrize("fmt", ["ome", "imagej"])
def test_depth_from_a_tiff_matches_the_folder_and_is_metric(
    runs: dict[str, Path], small: SynthStack, fmt: str
) -> None:
    folder, tiff = _index_error(runs["folder"], small), _index_error(runs[fmt], small)
    assert tiff <= 1.3 * folder, (tiff, folder)
    index = np.load(runs[fmt] / "depth_index.npy")
    depth = np.load(runs[fmt] / "depth.npy")
    np.testing.assert_allclose(depth, index * 0.5e-6, rtol=1e-5, atol=1e-12)


def test_lazy_and_selected_runs_on_a_tiff(
    runs: dict[str, Path], small: SynthStack, tmp_path: Path
) -> None:
    path = write_stack_tiff(small, tmp_path / "stack.ome.tif", z_step_um=0.5)
    proc = dff("run", "best", str(path), "-o", str(tmp_path / "lazy"), "--memory", "1GB", "-q")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "lazy" / "depth.npy"), np.load(runs["ome"] / "depth.npy"), atol=1e-9
    )
    out = tmp_path / "sel"
    args = ("run", "best", str(path), "-o", str(out), "--frames", "2:10:2", "--reverse", "-q")
    proc = dff(*args)
    assert proc.returncode == 0, proc.stderr
    index, depth = np.load(out / "depth_index.npy"), np.load(out / "depth.npy")
    assert index.max() <= 3  # four frames
    z = np.array([8, 6, 4, 2]) * 0.5e-6  # reversed: frame 0 is z = 4 µm
    np.testing.assert_allclose(depth, np.interp(index, np.arange(4), z), rtol=1e-5, atol=1e-12)


def test_dff_synth_writes_tiffs(tmp_path: Path) -> None:
    args = ("--frames", "4", "--size", "24x32", "--z-step", "0.25")
    proc = dff("synth", str(tmp_path / "o"), "--format", "ome-tiff", *args)
    assert proc.returncode == 0, proc.stderr
    stack = read_stack(tmp_path / "o" / "stack.ome.tif")
    np.testing.assert_allclose(stack.focus_distances, np.arange(4) * 0.25e-6)
    assert (tmp_path / "o" / "ground_truth" / "metadata.json").is_file()
    proc = dff("synth", str(tmp_path / "i"), "--format", "imagej-tiff", *args)
    assert proc.returncode == 0, proc.stderr
    assert read_stack(tmp_path / "i" / "stack.tif").metadata["format"] == "imagej"


# -- series and channels ----------------------------------------------------------------
def test_series_of_a_multi_series_file(tmp_path: Path) -> None:
    a, b = _data(3), _data(4, 20, 30)
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(a, metadata={"axes": "ZYX", "PhysicalSizeZ": 1.0})
        tw.write(b, metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0})
    np.testing.assert_array_equal(read_stack(path).frames[..., 0], a)
    second = read_stack(path, read_params={"series": 1})
    np.testing.assert_array_equal(second.frames[..., 0], b)
    np.testing.assert_allclose(second.focus_distances, np.arange(4) * 3e-6)
    with pytest.raises(DffError, match=r"two\.ome\.tif: --read series=2: .* 2 image series"):
        read_stack(path, read_params={"series": 2})


def test_channels(tmp_path: Path) -> None:
    rgb = _data(3, H, W, 3, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    stack = read_stack(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(stack.frames, rgb)
    two = _data(5, 2, H, W)  # ZCYX
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(path, two, ome=True, metadata={"axes": "ZCYX"})
    with pytest.raises(DffError, match=r"two\.ome\.tif: has 2 channels .*--read channel=K"):
        read_stack(path)
    stack = read_stack(path, read_params={"channel": 1})
    np.testing.assert_array_equal(stack.frames[..., 0], two[:, 1])
    lazy = read_stack(path, read_params={"channel": 1}, lazy=True)
    np.testing.assert_array_equal(lazy.frames[3][..., 0], two[3, 1])
    with pytest.raises(DffError, match=r"--read channel=2: the stack has 2 channels"):
        read_stack(path, read_params={"channel": 2})


# -- hostile input ----------------------------------------------------------------------
def _one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_time_series_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tl.ome.tif"
    tifffile.imwrite(path, _data(3, 4, 16, 16), ome=True, metadata={"axes": "TZYX"})
    proc = dff("run", "best", str(path), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "tl.ome.tif", "time axis (T) of 3 points")


def test_truncated_and_fake_tiffs_are_one_line_errors(small: SynthStack, tmp_path: Path) -> None:
    good = write_stack_tiff(small, tmp_path / "good.ome.tif")
    cut = tmp_path / "cut.ome.tif"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = dff("run", "best", str(cut), "-o", str(tmp_path / "o1"))
    _one_line_error(proc, "cut.ome.tif")
    fake = tmp_path / "x.tif"
    fake.write_text("not an image\n")
    proc = dff("run", "best", str(fake), "-o", str(tmp_path / "o2"))
    _one_line_error(proc, "x.tif", "not a readable TIFF")


def test_empty_and_oversized_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"II*\x00\x00\x00\x00\x00")  # a header and no image directory
    with pytest.raises(DffError, match=r"empty\.tif: "):
        read_stack(empty)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, _data(2, 40, 50))
    monkeypatch.setenv("DFF_MAX_PIXELS", "1000")
    with pytest.raises(DffError, match=r"big\.tif: frames of 50x40 .* DFF_MAX_PIXELS"):
        read_stack(path)
