"""Reading stacks: order, bit depth, colour, orientation, sidecars; atomic writing."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dffcore.core.errors import DffError
from dffcore.io.images import atomic_write_bytes, read_image, write_image
from dffcore.io.stack import natural_key, read_stack


def test_natural_sort_puts_2_before_10(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((4, 5), i, np.uint8))
    stack = read_stack(tmp_path)
    assert [p.name for p in stack.paths] == ["f1.png", "f2.png", "f10.png"]
    assert stack.frames[:, 0, 0, 0].tolist() == [1, 2, 10]
    assert sorted(["a10", "a2"], key=natural_key) == ["a2", "a10"]


def test_sixteen_bit_and_grey_keep_native_dtype(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.tif"), np.full((6, 7), 1000 * (i + 1), np.uint16))
    stack = read_stack(tmp_path)
    assert stack.frames.dtype == np.uint16 and stack.frames.shape == (3, 6, 7, 1)
    assert stack.frames[2, 0, 0, 0] == 3000


def test_colour_is_rgb_and_alpha_is_dropped(tmp_path: Path) -> None:
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 128  # pure blue in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    img = read_image(tmp_path / "a.png")
    assert img.shape == (4, 4, 3) and img[0, 0].tolist() == [0, 0, 255]


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    _ok, buf = cv2.imencode(".jpg", img)
    data = buf.tobytes()
    # insert an APP1 EXIF segment with Orientation = 6 (rotate 90° clockwise)
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        + b"\x00\x01"
        + b"\x01\x12\x00\x03\x00\x00\x00\x01"
        + b"\x00\x06\x00\x00"
        + b"\x00\x00\x00\x00"
    )
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    (tmp_path / "r.jpg").write_bytes(data[:2] + segment + data[2:])
    out = read_image(tmp_path / "r.jpg")
    assert out.shape[:2] == (40, 20)  # rotated to portrait
    assert out[5, 10].mean() > 200 and out[35, 10].mean() < 50  # white half now on top


def test_focus_distance_sidecar_and_reverse(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 4), 10 * i, np.uint8))
    (tmp_path / "focus_distances.txt").write_text("# unit: m\n0.5\n1.0\n2.0\n")
    stack = read_stack(tmp_path, reverse=True)
    assert stack.focus_unit == "m"
    assert stack.focus_distances.tolist() == [2.0, 1.0, 0.5]
    assert [p.name for p in stack.paths] == ["2.png", "1.png", "0.png"]
    assert stack.frames[0, 0, 0, 0] == 20


def test_sidecar_with_wrong_count_is_an_error(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "focus_distances.txt").write_text("0.5\n1.0\n")
    with pytest.raises(DffError, match="2 focus distances for 3 frames"):
        read_stack(tmp_path)


def test_glob_and_explicit_list(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((4, 4), i, np.uint8))
    assert read_stack(str(tmp_path / "img[12].png")).n == 2
    explicit = read_stack([tmp_path / "img3.png", tmp_path / "img0.png"])
    assert explicit.frames[:, 0, 0, 0].tolist() == [3, 0]


def test_write_image_is_atomic_and_leaves_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(DffError):
        write_image(target, np.zeros((4, 4, 3), np.float64))  # not an image dtype
    assert target.read_bytes() == b"old"

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("dffcore.io.images.os.replace", crash)
    with pytest.raises(OSError):
        write_image(target, np.full((4, 4, 3), 7, np.uint8))
    assert target.read_bytes() == b"old"  # a crash mid-write leaves the old file intact
    monkeypatch.undo()
    write_image(target, np.full((4, 4, 3), 7, np.uint8))
    assert read_image(target)[0, 0].tolist() == [7, 7, 7]
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        (tmp_path / "b.bin").write_bytes(b"x")  # what a plain open gives
    finally:
        os.umask(old)
    mode = (tmp_path / "a.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644
