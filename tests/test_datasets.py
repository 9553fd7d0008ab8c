"""Dataset readers on tiny replicas of each published layout (built here, never downloaded).

Expected values are placed by hand (or follow from the published constants by a formula
written out here); file names, HDF5 keys, dtypes and axis order copy the real datasets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dffcore.core.errors import DffError
from dffcore.eval.datasets import KINDS, Dataset, fractional_index, open_dataset, read_exr_channel
from dffcore.eval.synth import render_stack, write_stack
from dffcore.io.images import write_image, write_npy

from .conftest import data_folder

H, W = 24, 16  # frames are 16x24 (W x H)


def frame(v: int) -> np.ndarray:
    """An RGB frame whose channels are v, v+1, v+2 (so a BGR mix-up shows)."""
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = v, v + 1, v + 2
    return img


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def first_pixels(sample) -> list[tuple[int, int, int]]:
    return [tuple(int(c) for c in f[0, 0]) for f in sample.stack.frames]


# -- dffcore (dffcore.eval.synth.write_stack) -----------------------------------------------
def make_dffcore(root: Path) -> None:
    a = root / "a"
    a.mkdir(parents=True)
    for k in range(3):
        write_image(a / f"frame_{k:03d}.png", frame(20 * k))
    (a / "focus_distances.txt").write_text("# focus distance in metres per frame\n0.5\n1\n2\n")
    (a / "ground_truth").mkdir()
    index = np.ones((H, W), np.float32)
    index[1, 2], index[3, 4] = 1.5, np.nan
    depth = np.full((H, W), 1.0, np.float32)
    depth[1, 2], depth[5, 6] = 1.5, np.inf
    write_npy(a / "ground_truth" / "index.npy", index)
    write_npy(a / "ground_truth" / "depth.npy", depth)
    write_image(a / "ground_truth" / "all_in_focus.png", frame(7))
    b = root / "b"  # a plain stack: frames only, no focus distances, no ground truth
    b.mkdir()
    for k in range(2):
        write_image(b / f"{k}.png", frame(100 + 50 * k))


def test_dffcore_folder_of_stacks(tmp_path):
    make_dffcore(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.kind == "dffcore" and ds.names == ["a", "b"] and len(ds) == 2
    a = ds.load("a")
    assert first_pixels(a) == [(0, 1, 2), (20, 21, 22), (40, 41, 42)]
    assert a.stack.frames.shape == (3, H, W, 3) and a.stack.frames.dtype == np.uint8
    assert a.focus_values.tolist() == [0.5, 1.0, 2.0] and a.focus_kind == "m"
    assert a.truth_index.dtype == np.float32
    assert a.truth_index[1, 2] == 1.5 and np.isnan(a.truth_index[3, 4])
    assert a.truth_depth[1, 2] == 1.5 and np.isnan(a.truth_depth[5, 6])  # inf is invalid
    assert a.truth_disparity is None
    assert tuple(a.all_in_focus[3, 3]) == (7, 8, 9)
    b = ds["b"]
    assert first_pixels(b) == [(100, 101, 102), (150, 151, 152)]
    assert b.truth_index is b.truth_depth is b.all_in_focus is b.focus_values is None
    assert [s.name for s in ds] == ["a", "b"]
    assert open_dataset(tmp_path / "a").names == ["a"]  # one stack folder is a dataset too


def test_dffcore_reads_what_write_stack_writes(tmp_path):
    synth = render_stack("planes", n_frames=3, size=(H, W), seed=2)
    write_stack(synth, tmp_path / "s")
    sample = open_dataset(tmp_path / "s", kind="dffcore").load("s")
    np.testing.assert_array_equal(sample.stack.frames, synth.frames)
    np.testing.assert_array_equal(sample.truth_index, synth.index)
    np.testing.assert_array_equal(sample.truth_depth, synth.depth_m)
    np.testing.assert_array_equal(sample.all_in_focus, synth.all_in_focus)
    np.testing.assert_allclose(sample.focus_values, synth.focus_distances_m, rtol=1e-8)


# -- HCI ---------------------------------------------------------------------------------
def make_hci(folder: Path, focus: list[float], base: int) -> None:
    (folder / "stack").mkdir(parents=True)
    (folder / "gt").mkdir()
    for k in range(len(focus)):
        write_image(folder / "stack" / f"slice_{k:02d}.png", frame(base + 10 * k))
    (folder / "focus_disparity.txt").write_text("".join(f"{f:.6f}\n" for f in focus))
    disp = np.zeros((H, W), np.float32)
    disp[2, 3], disp[4, 5], disp[6, 7], disp[0, 0] = -1.0, 2.5, -2.0, np.nan
    np.save(folder / "gt" / "disparity.npy", disp)
    write_image(folder / "gt" / "all_in_focus.png", frame(base + 1))


def test_hci_index_from_disparity(tmp_path):
    make_hci(tmp_path / "up", [-1.5, -0.5, 0.5, 1.5], base=0)
    make_hci(tmp_path / "down", [1.5, 0.5, -0.5, -1.5], base=100)
    ds = open_dataset(tmp_path)
    assert ds.kind == "hci" and ds.names == ["down", "up"]
    up = ds.load("up")
    assert first_pixels(up) == [(0, 1, 2), (10, 11, 12), (20, 21, 22), (30, 31, 32)]
    np.testing.assert_allclose(up.focus_values, [-1.5, -0.5, 0.5, 1.5])
    assert up.focus_kind == "disparity" and up.stack.focus_distances is None
    assert up.truth_disparity[2, 3] == -1.0 and np.isnan(up.truth_disparity[0, 0])
    ti = up.truth_index
    assert ti[0, 1] == pytest.approx(1.5)  # disparity 0: between slices 1 and 2
    assert ti[2, 3] == pytest.approx(0.5)
    assert ti[4, 5] == pytest.approx(4.0)  # 2.5 px: one step past the last slice, unclipped
    assert ti[6, 7] == pytest.approx(-0.5)  # before the first slice, unclipped
    assert np.isnan(ti[0, 0]) and np.isfinite(ti).sum() == H * W - 1
    assert tuple(up.all_in_focus[1, 1]) == (1, 2, 3) and up.truth_depth is None
    down = ds.load("down")  # decreasing sweep
    assert first_pixels(down)[0] == (100, 101, 102)
    assert down.truth_index[2, 3] == pytest.approx(2.5)
    assert down.truth_index[4, 5] == pytest.approx(-1.0)


def test_hci_is_lazy_and_reports_the_bad_file(tmp_path):
    make_hci(tmp_path / "s1", [-1.0, 0.0, 1.0], base=0)
    make_hci(tmp_path / "s2", [-1.0, 0.0, 1.0], base=50)
    bad = tmp_path / "s2" / "stack" / "slice_01.png"
    bad.write_bytes(b"not a png")  # damaged after the fact: opening must not notice
    ds = open_dataset(tmp_path, kind="hci")
    assert len(ds) == 2 and ds.names == ["s1", "s2"]
    assert ds[0].name == "s1"
    with pytest.raises(DffError) as e:
        ds.load("s2")
    assert str(bad) in one_line_error(e)


def test_fractional_index_by_hand():
    idx = fractional_index(np.array([0.0, 1.0, 2.5, 4.0, 5.0, np.nan]), [0.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(idx[:5], [0.0, 1.0, 2.25, 3.0, 3.5])
    assert np.isnan(idx[5])
    idx = fractional_index(np.array([2.0, 1.5, 0.0]), [2.0, 1.0])  # decreasing
    np.testing.assert_allclose(idx, [0.0, 0.5, 2.0])
    with pytest.raises(DffError, match=r"sweep\.txt: must be strictly"):
        fractional_index(np.zeros(2), [0.0, 1.0, 1.0], source="sweep.txt")


# -- DDFF-12 (HDF5) ------------------------------------------------------------------
# ddff-toolbox refocus.py: baseline = K2/flens*1e-3, disparities linspace(B*f/0.5, B*f/7, 10)
BF = 1982.0250823695178 / 7317.020641763665 * 1e-3 * 521.4052
DDFF_FOCUS = np.linspace(BF / 0.5, BF / 7, 10)


def make_ddff(folder: Path) -> None:
    h5py = pytest.importorskip("h5py")
    folder.mkdir(exist_ok=True)

    def stack(n: int, base: int) -> np.ndarray:
        return np.stack(
            [np.stack([frame(base + 60 * s + 10 * k) for k in range(10)]) for s in range(n)]
        )

    disp = np.full((2, H, W), BF / 1.0, np.float32)  # 1 m everywhere
    disp[1, 1, 2] = (DDFF_FOCUS[2] + DDFF_FOCUS[3]) / 2
    disp[1, 3, 4] = 0.0  # no measurement
    disp[1, 5, 6] = DDFF_FOCUS[0]
    disp[1, 7, 8] = BF / 7
    with h5py.File(folder / "ddff-dataset-trainval.h5", "w") as f:
        f.create_dataset("stack_train", data=stack(2, 0))
        f.create_dataset("disp_train", data=disp)
        f.create_dataset("stack_val", data=stack(1, 150))
        f.create_dataset("disp_val", data=disp[:1])
    with h5py.File(folder / "ddff-dataset-test.h5", "w") as f:
        f.create_dataset("stack_test", data=stack(1, 5))


def test_ddff12_keys_frames_and_disparity(tmp_path):
    make_ddff(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.kind == "ddff12"
    assert ds.names == ["test/0", "train/0", "train/1", "val/0"]
    s = ds.load("train/1")
    assert s.stack.frames.shape == (10, H, W, 3) and s.stack.frames.dtype == np.uint8
    assert first_pixels(s) == [(60 + 10 * k, 61 + 10 * k, 62 + 10 * k) for k in range(10)]
    np.testing.assert_allclose(s.focus_values, DDFF_FOCUS)
    assert s.focus_kind == "disparity" and s.stack.focus_unit == "m"
    assert s.stack.focus_distances[0] == pytest.approx(0.5)
    assert s.stack.focus_distances[-1] == pytest.approx(7.0)
    assert s.truth_index[1, 2] == pytest.approx(2.5, abs=1e-5)
    assert s.truth_index[5, 6] == pytest.approx(0.0, abs=1e-5)
    assert s.truth_index[7, 8] == pytest.approx(9.0, abs=1e-5)
    # 1 m: disparity BF; slices step (2 - 1/7) BF / 9 = 13 BF / 63 from 2 BF -> 63/13
    assert s.truth_index[0, 0] == pytest.approx(63 / 13, abs=1e-5)
    assert s.truth_depth[0, 0] == pytest.approx(1.0, rel=1e-6)
    assert s.truth_depth[5, 6] == pytest.approx(0.5, rel=1e-6)
    assert s.truth_depth[7, 8] == pytest.approx(7.0, rel=1e-6)
    for gt in (s.truth_index, s.truth_depth, s.truth_disparity):
        assert gt.dtype == np.float32 and np.isnan(gt[3, 4]) and np.isnan(gt).sum() == 1
    assert first_pixels(ds.load("val/0"))[0] == (150, 151, 152)
    t = ds.load("test/0")
    assert first_pixels(t)[0] == (5, 6, 7)
    assert t.truth_index is None and t.truth_disparity is None and t.truth_depth is None
    one = open_dataset(tmp_path / "ddff-dataset-trainval.h5")
    assert one.kind == "ddff12" and one.names == ["train/0", "train/1", "val/0"]


def test_ddff12_without_h5py(tmp_path, monkeypatch):
    (tmp_path / "ddff-dataset-test.h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # never opened
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path)
    assert "pip install 'dffcore[hdf5]'" in one_line_error(e)


def test_ddff12_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f.create_dataset("stack_train", data=np.zeros((1, 10, H, W), np.uint8))  # no colour axis
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "flat.h5")
    assert "stack_train" in one_line_error(e) and "(N, slices, H, W, 3)" in str(e.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DffError) as e:
        open_dataset(junk)
    assert "junk.h5" in one_line_error(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "empty", kind="ddff12")  # a folder without .h5 files
    assert "ddff-dataset-trainval.h5" in one_line_error(e)


# -- FoD500 ------------------------------------------------------------------------------
def write_exr(path: Path, channels: dict[str, np.ndarray], compression: str = "ZIP") -> None:
    """Write a scanline EXR with the official OpenEXR bindings (the ``exr`` extra)."""
    openexr = pytest.importorskip("OpenEXR")
    header = {
        "compression": getattr(openexr, f"{compression}_COMPRESSION"),
        "type": openexr.scanlineimage,
    }
    with openexr.File(header, channels) as f:
        f.write(str(path))


def fod_depth() -> dict[str, np.ndarray]:
    """FoD500-like depth: half-float R = 1 except a few pixels (0 and inf: no surface)."""
    r = np.ones((H, W), np.float16)
    r[2, 3], r[4, 5], r[6, 7], r[8, 9], r[20, 11] = 0.3, 1.5, 0.75, 0.0, np.inf
    return {"R": r, "G": np.full((H, W), 0.5, np.float16), "B": np.full((H, W), 9, np.float16)}


def make_fod(folder: Path, scenes: int = 2) -> None:
    folder.mkdir(exist_ok=True)
    for s in range(scenes):
        for k in range(5):
            write_image(folder / f"{s:06d}_{k:02d}All.tif", frame(100 * s + 20 * k))
        write_exr(folder / f"{s:06d}Dpt.exr", fod_depth())
        write_image(folder / f"{s:06d}Aif.tif", frame(100 * s + 3))


def test_fod500_layout(tmp_path):
    make_fod(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.kind == "fod500" and ds.names == ["000000", "000001"]
    s = ds.load("000001")
    assert first_pixels(s) == [(100 + 20 * k, 101 + 20 * k, 102 + 20 * k) for k in range(5)]
    assert s.focus_values.tolist() == [0.1, 0.15, 0.3, 0.7, 1.5] and s.focus_kind == "m"
    assert s.stack.focus_distances.tolist() == [0.1, 0.15, 0.3, 0.7, 1.5]
    d = s.truth_depth
    assert d.dtype == np.float32 and d[0, 0] == 1.0  # R, not G (0.5) or B (9)
    assert d[2, 3] == pytest.approx(0.3, abs=1e-4) and d[4, 5] == 1.5 and d[6, 7] == 0.75
    assert np.isnan(d[8, 9]) and np.isnan(d[20, 11]) and np.isnan(d).sum() == 2
    ti = s.truth_index  # linear in diopters: 10, 6.67, 3.33, 1.43, 0.67 D
    assert ti[4, 5] == pytest.approx(4.0) and ti[2, 3] == pytest.approx(2.0, abs=2e-3)
    assert ti[6, 7] == pytest.approx(3.125)  # (10/7 - 4/3) / (10/7 - 2/3) = 1/8 past slice 3
    assert ti[0, 0] == pytest.approx(3.5625)  # (10/7 - 1) / (10/7 - 2/3) = 9/16
    assert np.isnan(ti[8, 9]) and np.isnan(ti[20, 11])
    assert tuple(s.all_in_focus[0, 0]) == (103, 104, 105)


def test_fod500_errors(tmp_path, monkeypatch):
    make_fod(tmp_path)
    (tmp_path / "000001_04All.tif").unlink()
    ds = open_dataset(tmp_path, kind="fod500")
    assert ds.load("000000").name == "000000"
    with pytest.raises(DffError) as e:
        ds.load("000001")
    assert "000001" in one_line_error(e) and "4 focal images" in str(e.value)
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # as if OpenEXR were not installed
    with pytest.raises(DffError) as e:
        ds.load("000000")
    msg = one_line_error(e)
    assert "000000Dpt.exr" in msg and "pip install 'dffcore[exr]'" in msg


@pytest.mark.parametrize(
    ("dtype", "compression"),
    [(np.float16, "ZIP"), (np.float32, "PIZ"), (np.float32, "ZIPS"), (np.uint32, "RLE")],
)
def test_read_exr_channel_round_trip(tmp_path, dtype, compression):
    rng = np.random.default_rng(0)
    values = (rng.random((H, W)) * 100).astype(dtype)
    other = np.full((H, W), 7, dtype)
    path = tmp_path / f"{compression}.exr"
    write_exr(path, {"B": other, "R": values, "Z": other}, compression)
    got = read_exr_channel(path)  # R before Z
    assert got.dtype == np.float32 and got.shape == (H, W)
    assert np.array_equal(got, values.astype(np.float32))
    shifted = values + dtype(1)
    write_exr(path, {"A": other, "Y": values, "Z": shifted}, compression)
    assert np.array_equal(read_exr_channel(path), shifted.astype(np.float32))  # Z before Y
    assert np.array_equal(read_exr_channel(path, prefer=("Y",)), values.astype(np.float32))
    write_exr(path, {"depth": values, "A": other}, compression)
    assert np.array_equal(read_exr_channel(path), other.astype(np.float32))  # first: A


def test_read_exr_channel_errors(tmp_path, monkeypatch):
    path = tmp_path / "d.exr"
    write_exr(path, fod_depth(), "PIZ")
    data = path.read_bytes()
    (tmp_path / "cut.exr").write_bytes(data[: len(data) // 2])
    (tmp_path / "header.exr").write_bytes(data[:40])
    (tmp_path / "text.exr").write_text("not an image")
    write_image(tmp_path / "a.tif", frame(3))
    for name, why in [
        ("cut.exr", "damaged or truncated"),
        ("header.exr", "damaged or truncated"),
        ("text.exr", "not an OpenEXR file"),
        ("a.tif", "not an OpenEXR file"),
        ("missing.exr", "no such file"),
    ]:
        with pytest.raises(DffError) as e:
            read_exr_channel(tmp_path / name)
        assert name in one_line_error(e) and why in str(e.value), (name, str(e.value))
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # as if OpenEXR were not installed
    with pytest.raises(DffError) as e:
        read_exr_channel(path)
    msg = one_line_error(e)
    assert "d.exr" in msg and "pip install 'dffcore[exr]'" in msg and "dffcore[datasets]" in msg


# -- detection and generic errors ---------------------------------------------------
def test_auto_detection_and_layout_errors(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "notes")
    msg = one_line_error(e)
    assert all(k in msg for k in KINDS)
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "missing")
    assert "missing" in one_line_error(e)
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "notes", kind="hcl")
    assert "Did you mean 'hci'?" in one_line_error(e)
    make_dffcore(tmp_path / "ours")
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "ours" / "a", kind="hci")  # wrong layout named explicitly
    assert "focus_disparity.txt" in one_line_error(e)
    make_hci(tmp_path / "mixed" / "h", [0.0, 1.0], base=0)
    make_dffcore(tmp_path / "mixed")
    with pytest.raises(DffError) as e:
        open_dataset(tmp_path / "mixed")
    assert "mix" in one_line_error(e)
    ds = open_dataset(tmp_path / "mixed", kind="hci")
    assert isinstance(ds, Dataset) and ds.names == ["h"]
    with pytest.raises(DffError) as e:
        ds.load("hh")
    assert "Did you mean 'h'?" in one_line_error(e)
    with pytest.raises(DffError) as e:
        ds[1]
    assert "out of range" in one_line_error(e)


# -- the real HCI sample ------------------------------------------------------------------
@pytest.mark.data
def test_real_hci_antinous():
    folder = data_folder("hci_antinous")
    ds = open_dataset(folder)
    assert ds.kind == "hci" and ds.names == ["hci_antinous"]
    s = ds.load("hci_antinous")
    assert s.stack.frames.shape == (10, 512, 512, 3) and s.stack.frames.dtype == np.uint8
    assert s.focus_values[0] == pytest.approx(-2.5) and s.focus_values[-1] == pytest.approx(2.5)
    assert s.truth_disparity.shape == (512, 512) and np.isfinite(s.truth_disparity).all()
    # the README's formula: slice = (d + 2.5) / (5 / 9)
    expected = (s.truth_disparity.astype(np.float64) + 2.5) / (5 / 9)
    np.testing.assert_allclose(s.truth_index, expected, atol=2e-3)
    assert s.all_in_focus.shape == (512, 512, 3)
