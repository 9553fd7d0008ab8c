"""The fast paths of reading, warping, fitting and writing give what the general ones do:
JPEG/PNG headers without Pillow, warps with a replicated border where no sample leaves
the frame, the block-banded path solve, PNG text chunks without Pillow, package
versions without the e-mail parser."""

from __future__ import annotations

import io
import struct
import zlib
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from dffcore.align import path as pathmod
from dffcore.core.errors import DffError
from dffcore.io.headers import header_size
from dffcore.io.images import image_size, read_image, write_png_text
from dffcore.io.outputs import package_version
from dffcore.io.stack import read_stack
from dffcore.ops.warp import grid, inside, shift_transform, warp

Image = pytest.importorskip("PIL.Image")


def _jpeg(path: Path, w: int, h: int, orientation: int | None = None, **kw) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), **kw)


@pytest.mark.parametrize("orientation", [None, 1, 3, 6, 8])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_header_matches_pillow_and_the_decoder(
    tmp_path: Path, orientation: int | None, progressive: bool
) -> None:
    p = tmp_path / "a.jpg"
    _jpeg(p, 40, 24, orientation, progressive=progressive)
    with Image.open(p) as im:
        assert header_size(p) == (*im.size, im.getexif().get(0x0112))
    h, w = read_image(p).shape[:2]
    assert image_size(p) == (w, h)  # rotated by 90 degrees for orientations 5-8
    assert (w, h) == ((24, 40) if orientation in (6, 8) else (40, 24))


def test_png_header_and_unknown_formats(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((9, 13), np.uint16))
    assert header_size(tmp_path / "a.png") == (13, 9, None)
    cv2.imwrite(str(tmp_path / "a.tif"), np.zeros((9, 13), np.uint8))
    assert header_size(tmp_path / "a.tif") is None  # left to Pillow
    assert image_size(tmp_path / "a.tif") == (13, 9)


def test_truncated_or_malformed_jpeg_headers_are_left_to_the_parsers(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    _jpeg(p, 40, 24)
    data = p.read_bytes()
    sof = data.index(b"\xff\xc0")
    for cut in (2, 5, sof + 3, sof + 6):
        (tmp_path / "t.jpg").write_bytes(data[:cut])
        assert header_size(tmp_path / "t.jpg") is None
    (tmp_path / "g.jpg").write_bytes(b"\xff\xd8garbage")
    assert header_size(tmp_path / "g.jpg") is None


def test_a_jpeg_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    _jpeg(p, 40, 24)
    data = bytearray(p.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    p.write_bytes(bytes(data))
    assert header_size(p) == (60000, 60000, None)
    with pytest.raises(DffError, match="megapixels"):
        image_size(p, limit=10**8)


def _warp_reference(frame, t, shape, flag, border):
    return cv2.warpPerspective(
        frame, t, shape[::-1], flags=flag | cv2.WARP_INVERSE_MAP, borderMode=border
    )


def test_inside_tells_which_warps_stay_in_the_frame() -> None:
    t = np.array([[1.0, 0, 3.0], [0, 1.0, 2.0], [0, 0, 1]])
    assert inside(t, (40, 50), (30, 40), "linear")  # samples x 3..42, y 2..31
    assert inside(t, (40, 50), (30, 40), "cubic")
    assert not inside(t, (40, 50), (30, 40), "lanczos")  # needs 3 px before x = 3 - 3
    assert not inside(t, (40, 50), (39, 40), "linear")  # y reaches 40
    assert not inside(np.eye(3), (40, 50), (40, 50), "linear")  # the last column
    mapped = np.dstack(np.meshgrid(np.arange(5.0, 9), np.arange(5.0, 8))).astype(np.float32)
    assert inside(mapped, (20, 20), (3, 4), "cubic")
    mapped[0, 0] = np.nan
    assert not inside(np.nan_to_num(mapped, nan=-1), (20, 20), (3, 4), "cubic")


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("channels", [1, 3])
def test_warp_keeps_the_mirrored_border_and_writes_into_out(
    interpolation: str, channels: int
) -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (60, 80, channels), np.uint8)
    flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[interpolation]
    for t, shape in (
        (np.array([[1.02, 0.01, 4.3], [-0.01, 1.01, 3.7], [0, 0, 1]]), (50, 70)),  # inside
        (np.array([[1.02, 0.01, -4.3], [-0.01, 1.01, -3.7], [0, 0, 1]]), (60, 80)),  # not
        (np.array([[1.0, 0.0, 4.5], [0.0, 1.0, 3.5], [1e-4, 0, 1]]), (50, 70)),  # homography
    ):
        ref = _warp_reference(frame, t, shape, flag, cv2.BORDER_REFLECT).reshape(*shape, -1)
        got = warp(frame, t, shape, interpolation)
        assert got.shape == (*shape, channels)
        # the same samples; OpenCV's vector and generic paths round 1 in 1000 values apart
        err = np.abs(got.astype(int) - ref)
        assert err.max() <= 1 and (err > 0).mean() < 0.01
        out = np.full((*shape, channels), 7, np.uint8)
        assert warp(frame, t, shape, interpolation, out=out) is out
        assert np.array_equal(out, got)


def test_banded_path_solve_equals_the_dense_one() -> None:
    rng = np.random.default_rng(2)
    m, k, rows = 9, 3, 60
    depends = np.zeros((rows, m), bool)
    for r in range(rows):
        s = rng.integers(0, m)
        depends[r, s : s + rng.integers(1, 4)] = True  # at most 3 neighbouring slots
    jac = np.zeros((rows, m * k))
    for r in range(rows):
        for s in np.flatnonzero(depends[r]):
            jac[r, s * k : s * k + k] = rng.normal(size=k)
    w, res = rng.uniform(0.2, 1, rows), rng.normal(size=rows)
    assert pathmod._bandwidth(depends) <= pathmod.BAND
    banded = pathmod._solve_normal(jac, w, res, depends, k, True)
    dense = pathmod._solve_normal(jac, w, res, depends, k, False)
    np.testing.assert_allclose(banded, dense, rtol=1e-8, atol=1e-10)
    wide = np.zeros((2, 6), bool)
    wide[0, [0, 5]] = True
    assert pathmod._bandwidth(wide) == 5


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", png[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        out.append((kind, body))
        pos += 12 + n
    return out


def test_png_text_chunks_read_back_with_pillow(tmp_path: Path) -> None:
    img = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    write_png_text(tmp_path / "a.png", img, {"dffcore:scale": "1 unit = 1 mm", "note": "µ ✓"})
    png = (tmp_path / "a.png").read_bytes()
    kinds = [k for k, _ in _chunks(png)]
    assert kinds[:3] == [b"IHDR", b"tEXt", b"iTXt"]  # ✓ is not Latin-1
    with Image.open(io.BytesIO(png)) as im:
        assert im.text == {"dffcore:scale": "1 unit = 1 mm", "note": "µ ✓"}
        assert np.array_equal(np.array(im), img)
    with pytest.raises(DffError, match="keyword"):
        write_png_text(tmp_path / "b.png", img, {"": "x"})


def test_package_versions_are_the_installed_ones() -> None:
    assert package_version("numpy") == metadata.version("numpy")
    assert package_version("pydantic") == metadata.version("pydantic")
    assert package_version("no-such-distribution-dffcore") is None


def test_warp_into_a_strided_out_still_fills_it() -> None:
    frame = np.random.default_rng(3).integers(0, 255, (30, 40, 3), np.uint8)
    t = np.array([[1.0, 0, 2.5], [0, 1.0, 1.5], [0, 0, 1]])
    big = np.zeros((20, 60, 3), np.uint8)
    out = big[:, ::2]  # not contiguous: OpenCV cannot write into it
    assert warp(frame, t, (20, 30), "linear", out=out) is out
    assert np.array_equal(out, warp(frame, t, (20, 30), "linear"))


def test_a_truncated_png_header_is_a_clear_error(tmp_path: Path) -> None:
    """The PNG signature and IHDR with the size cut off: left to the parsers, then a
    one-line error naming the file (not an internal error)."""
    stub = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00"
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(stub)
    assert header_size(tmp_path / "a.png") is None
    with pytest.raises(DffError, match=r"a\.png"):
        read_stack(tmp_path)


def test_shifting_a_dense_map_crops_it_even_at_the_origin() -> None:
    t = grid((7, 9)) + np.float32(0.5)
    out = shift_transform(t, 0, 0, (5, 6))
    assert out.shape == (5, 6, 2)
    np.testing.assert_array_equal(out, t[:5, :6])
    np.testing.assert_array_equal(shift_transform(t, 2, 1, (5, 6)), t[1:6, 2:8])
