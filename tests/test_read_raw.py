"""The ``raw`` reader: folders of camera RAW photos, here DNGs written by the tests.

The DNGs are minimal CFA (Bayer RGGB) DNGs written with tifffile: 16-bit samples,
PhotometricInterpretation 32803 (CFA) with CFARepeatPatternDim and CFAPattern (without
them LibRaw decodes one grey channel), DNGVersion, UniqueCameraModel, ColorMatrix1 (XYZ
to linear sRGB, so the camera's colours are sRGB's), CalibrationIlluminant1,
AsShotNeutral (the camera white balance; without it LibRaw balances the picture itself),
WhiteLevel and Orientation; optionally an Exif IFD with SubjectDistance.
"""

from __future__ import annotations

import importlib.util
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from dffcore import DffError
from dffcore.eval.synth import SynthStack
from dffcore.io.stack import LazyFrames, read_stack

from .conftest import stderr_lines

needs_rawpy = pytest.mark.skipif(
    importlib.util.find_spec("rawpy") is None,
    reason="rawpy is not installed: pip install 'dffcore[raw]' to test the RAW reader",
)

#: XYZ (D65) -> linear sRGB: a camera whose native colours are sRGB's
XYZ_TO_SRGB = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
EXIF_IFD, SUBJECT_DISTANCE = 34665, 0x9206
PLACEHOLDER = 34664  # tifffile will not write 34665; renamed after (the sort order holds)


def write_dng(
    path: Path,
    rgb: np.ndarray,
    *,
    distance: float | None = None,
    orientation: int = 1,
    neutral: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Path:
    """A CFA DNG of an (H,W,3) uint8 image: each value x 257 as a linear 16-bit sample,
    times the channel's ``neutral`` (a sensor less sensitive in red and blue records a
    white scene as ``neutral``, and says so in AsShotNeutral), mosaiced RGGB;
    ``distance`` (metres) goes to EXIF SubjectDistance."""
    linear = (rgb.astype(np.float32) * 257 * np.float32(neutral)).round().astype(np.uint16)
    cfa = np.empty(rgb.shape[:2], np.uint16)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1]
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1]
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]
    matrix = [v for x in XYZ_TO_SRGB for v in (round(x * 10000), 10000)]
    tags = [
        (50706, 1, 4, (1, 4, 0, 0)),  # DNGVersion
        (50708, 2, 0, "dffcore synthetic"),  # UniqueCameraModel
        (33421, 3, 2, (2, 2)),  # CFARepeatPatternDim
        (33422, 1, 4, (0, 1, 1, 2)),  # CFAPattern: R G / G B
        (50721, 10, 9, matrix),  # ColorMatrix1
        (50778, 3, 1, 21),  # CalibrationIlluminant1: D65
        (50728, 5, 3, tuple(v for x in neutral for v in (round(x * 10000), 10000))),
        (50717, 4, 1, 65535),  # WhiteLevel
        (274, 3, 1, orientation),  # Orientation
    ]
    if distance is not None:
        tags.append((PLACEHOLDER, 4, 1, 0))  # the ExifIFD pointer, set below
    tifffile.imwrite(
        path,
        cfa,
        photometric=32803,
        subfiletype=0,
        metadata=None,
        extratags=[(*t[:4], True) for t in tags],
    )
    if distance is not None:
        _add_exif_ifd(path, distance)
    return path


def _add_exif_ifd(path: Path, distance: float) -> None:
    """Append an Exif IFD holding SubjectDistance (RATIONAL, millimetre precision) and
    make IFD0's placeholder tag (a classic little-endian TIFF's) the ExifIFD pointer to it."""
    data = bytearray(path.read_bytes())
    (ifd0,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd0)
    entry = next(
        ifd0 + 2 + 12 * i
        for i in range(count)
        if struct.unpack_from("<H", data, ifd0 + 2 + 12 * i)[0] == PLACEHOLDER
    )
    data += b"\0" * (len(data) % 2)
    exif = len(data)
    rational = exif + 2 + 12 + 4
    data += struct.pack("<HHHII", 1, SUBJECT_DISTANCE, 5, 1, rational) + struct.pack("<I", 0)
    data += struct.pack("<II", round(distance * 1000), 1000)
    struct.pack_into("<H", data, entry, EXIF_IFD)
    struct.pack_into("<I", data, entry + 8, exif)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def raw_dir(synth: SynthStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw") / "stack"
    folder.mkdir()
    for k, (frame, d) in enumerate(zip(synth.frames, synth.focus_distances_m, strict=True)):
        write_dng(folder / f"IMG_{k + 1}.dng", frame, distance=float(d))  # 1 .. 8: natural
    return folder


def dff(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dffcore.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@needs_rawpy
def test_a_folder_of_dngs_gives_a_sensible_depth(
    raw_dir: Path, synth: SynthStack, tmp_path: Path
) -> None:
    proc = dff("run", "fast", str(raw_dir), "-o", str(tmp_path), "-q")
    assert proc.returncode == 0, proc.stderr
    index = np.load(tmp_path / "depth_index.npy")
    assert index.shape == (96, 128)
    assert np.abs(index - synth.index).mean() < 0.8  # PNG frames: about 0.5
    depth = np.load(tmp_path / "depth.npy")  # metric: the focus distances came from EXIF
    inside = (depth > 0) & np.isfinite(depth)
    assert np.median(np.abs(depth[inside] - synth.depth_m[inside])) < 0.05


@needs_rawpy
def test_frames_are_linear_16_bit_rgb_with_exif_focus_distances(
    raw_dir: Path, synth: SynthStack
) -> None:
    stack = read_stack(raw_dir)
    assert stack.frames.shape == (8, 96, 128, 3) and stack.frames.dtype == np.uint16
    assert [p.name for p in stack.paths] == [f"IMG_{k}.dng" for k in range(1, 9)]
    inner = (slice(None), slice(4, -4), slice(4, -4))  # demosaicing at the border
    expected = synth.frames[inner].astype(np.float32)
    got = stack.frames[inner].astype(np.float32) / 257
    gain = got.mean(axis=(0, 1, 2)) / expected.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(gain, 1.0, atol=0.03)  # linear, camera WB, no brightening
    error = np.abs(got - expected)
    assert np.median(error) < 4.0  # demosaicing errs on fine texture
    assert np.abs(got[..., ::-1] - expected).mean() > 3 * error.mean()  # RGB order
    np.testing.assert_allclose(stack.focus_distances, synth.focus_distances_m, atol=6e-4)
    assert stack.focus_unit == "m" and stack.metadata["focus_distances_source"] == "exif"
    assert stack.metadata["reader"] == "raw"


@needs_rawpy
def test_the_camera_white_balance_is_applied(synth: SynthStack, tmp_path: Path) -> None:
    """A sensor that records white as (0.5, 1, 0.7): the as-shot white balance brings the
    colours back (without it, red and blue stay at half and 70 %)."""
    for k in range(2):
        write_dng(tmp_path / f"{k}.dng", synth.frames[k], neutral=(0.5, 1.0, 0.7))
    got = read_stack(tmp_path).frames[:, 4:-4, 4:-4].astype(np.float32) / 257
    expected = synth.frames[:2, 4:-4, 4:-4].astype(np.float32)
    gain = got.mean(axis=(0, 1, 2)) / expected.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(gain / gain[1], 1.0, atol=0.03)


@needs_rawpy
def test_frame_selection_lazy_reading_and_threads_agree(raw_dir: Path) -> None:
    full = read_stack(raw_dir, jobs=1).frames
    np.testing.assert_array_equal(read_stack(raw_dir, jobs=3).frames, full)
    picked = read_stack(raw_dir, frames="1::3", reverse=True)
    assert [p.name for p in picked.paths] == ["IMG_8.dng", "IMG_5.dng", "IMG_2.dng"]
    np.testing.assert_array_equal(picked.frames, full[1::3][::-1])
    lazy = read_stack(raw_dir, lazy=True, frames=":-2")
    assert isinstance(lazy.frames, LazyFrames) and lazy.frames.shape == (6, 96, 128, 3)
    for k in (0, 3, 5, 0):
        np.testing.assert_array_equal(lazy.frames[k], full[k])


@needs_rawpy
def test_the_files_orientation_is_applied(synth: SynthStack, tmp_path: Path) -> None:
    for name, orientation in (("upright", 1), ("turned", 6)):  # 6: turn 90° clockwise
        (tmp_path / name).mkdir()
        for k in range(2):
            write_dng(tmp_path / name / f"{k}.dng", synth.frames[k], orientation=orientation)
    upright = read_stack(tmp_path / "upright").frames
    turned = read_stack(tmp_path / "turned")
    assert turned.frames.shape == (2, 128, 96, 3) and turned.focus_distances is None
    np.testing.assert_array_equal(np.rot90(turned.frames, k=1, axes=(1, 2)), upright)


@needs_rawpy
def test_exif_distances_are_all_or_none(
    synth: SynthStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_dng(tmp_path / "1.dng", synth.frames[0], distance=0.8)
    write_dng(tmp_path / "2.dng", synth.frames[1])
    with caplog.at_level(logging.WARNING):
        stack = read_stack(tmp_path)
    assert stack.focus_distances is None
    assert "only 1 of 2 frames have SubjectDistance (2.dng has none)" in caplog.text


@needs_rawpy
def test_a_broken_dng_is_one_line_naming_it(raw_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    for k in (1, 2, 3):
        (folder / f"{k}.dng").write_bytes((raw_dir / f"IMG_{k}.dng").read_bytes())
    (folder / "2.dng").write_bytes(b"II*\x00" + b"\x00" * 60)  # a TIFF header, nothing more
    proc = dff("run", "fast", str(folder), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(folder / "2.dng") in lines[0] and "LibRaw" in lines[0], lines[0]


def test_without_rawpy_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in (1, 2):
        (tmp_path / f"{k}.dng").write_bytes(b"II*\x00")
    monkeypatch.setitem(sys.modules, "rawpy", None)  # `import rawpy` fails
    with pytest.raises(DffError) as caught:
        read_stack(tmp_path)
    message = str(caught.value)
    assert message == (
        f"{tmp_path / '1.dng'}: reading RAW frames needs rawpy: pip install 'dffcore[raw]'"
    )
    from dffcore.cli import main

    assert main(["run", "fast", str(tmp_path), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"dff: error: {message}"]
