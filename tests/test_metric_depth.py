"""Metric depth: EXIF focus distances, depth_metres.png and its scale, PLY point clouds."""

from __future__ import annotations

import json
import logging
import math
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import dffcore
from dffcore.core.errors import DffError
from dffcore.eval.metrics import evaluate_depth
from dffcore.eval.synth import SynthStack, render_stack, write_stack
from dffcore.io.exif import exif_focus_distance, read_exif_numbers
from dffcore.io.images import read_image, write_png_text
from dffcore.io.outputs import depth_metres_png
from dffcore.io.pointcloud import (
    depth_to_points,
    intrinsics_from_35mm,
    intrinsics_from_fov,
    stack_intrinsics,
    write_ply,
)
from dffcore.io.stack import read_stack
from dffcore.ops.depth import index_to_depth

from .conftest import dff

RATIONAL, SHORT = 5, 3


# -- EXIF ---------------------------------------------------------------------------
def exif_tiff(entries: list[tuple[int, int, object]], order: str = "<") -> bytes:
    """A TIFF block: IFD0 holding only the ExifIFD pointer (0x8769), then the Exif IFD.

    ``entries`` are (tag, type, value): (numerator, denominator) for RATIONAL, an int
    for SHORT (stored left-justified in the 4-byte value field).
    """
    exif_at = 8 + 2 + 12 + 4  # header, IFD0 with one entry and its next-IFD offset
    data_at = exif_at + 2 + 12 * len(entries) + 4
    tiff = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "HHHII", 1, 0x8769, 4, 1, exif_at) + bytes(4)
    tiff += struct.pack(order + "H", len(entries))
    data = b""
    for tag, ftype, value in entries:
        if ftype == RATIONAL:
            tiff += struct.pack(order + "HHII", tag, ftype, 1, data_at + len(data))
            data += struct.pack(order + "II", *value)
        else:
            tiff += struct.pack(order + "HHIHH", tag, ftype, 1, value, 0)
    return tiff + bytes(4) + data


def subject_distance(num: int, den: int, order: str = "<") -> bytes:
    return exif_tiff([(0x9206, RATIONAL, (num, den))], order)


# SubjectDistance 4/1 m, big-endian, written out byte by byte
BIG_ENDIAN_4M = (
    b"MM\x00\x2a\x00\x00\x00\x08"  # header: Motorola order, 42, IFD0 at 8
    b"\x00\x01" + b"\x87\x69\x00\x04\x00\x00\x00\x01\x00\x00\x00\x1a" + b"\x00\x00\x00\x00"
    b"\x00\x01" + b"\x92\x06\x00\x05\x00\x00\x00\x01\x00\x00\x00\x2c" + b"\x00\x00\x00\x00"
    b"\x00\x00\x00\x04\x00\x00\x00\x01"  # at 44: 4 / 1
)


def jpeg(path: Path, tiff: bytes | None, value: int = 100) -> Path:
    """A 16x16 JPEG whose APP1 Exif segment (right after SOI) holds ``tiff``."""
    img = np.full((16, 16, 3), value, np.uint8)
    img[4:12, 4:12] = 255 - value
    data = cv2.imencode(".jpg", img)[1].tobytes()
    if tiff is not None:
        app1 = b"Exif\x00\x00" + tiff
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    path.write_bytes(data)
    return path


def test_subject_distance_of_every_frame_gives_focus_distances_in_metres(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jpeg(tmp_path / "1.jpg", subject_distance(1234, 1000))
    jpeg(tmp_path / "2.jpg", subject_distance(5, 2, order=">"), 120)
    jpeg(tmp_path / "10.jpg", BIG_ENDIAN_4M, 140)
    assert exif_tiff([(0x9206, RATIONAL, (4, 1))], ">") == BIG_ENDIAN_4M  # the builder
    assert read_exif_numbers(tmp_path / "1.jpg") == {"SubjectDistance": 1.234}
    with caplog.at_level(logging.INFO, logger="dffcore.io"):
        stack = read_stack(tmp_path)
    assert [p.name for p in stack.paths] == ["1.jpg", "2.jpg", "10.jpg"]
    assert stack.focus_unit == "m"
    assert stack.focus_distances.tolist() == [1.234, 2.5, 4.0]
    assert stack.metadata["focus_distances_source"] == "exif"
    assert any("EXIF SubjectDistance of 3 frames" in r.message for r in caplog.records)
    assert read_stack(tmp_path, reverse=True).focus_distances.tolist() == [4.0, 2.5, 1.234]


def test_focal_length_tags_are_read_too(tmp_path: Path) -> None:
    tiff = exif_tiff(
        [(0x9206, RATIONAL, (3, 2)), (0x920A, RATIONAL, (47, 10)), (0xA405, SHORT, 26)]
    )
    numbers = read_exif_numbers(jpeg(tmp_path / "a.jpg", tiff))
    assert numbers == {"SubjectDistance": 1.5, "FocalLength": 4.7, "FocalLengthIn35mmFilm": 26}


def test_exif_on_only_some_frames_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jpeg(tmp_path / "a.jpg", subject_distance(1, 1))
    jpeg(tmp_path / "b.jpg", None, 120)
    jpeg(tmp_path / "c.jpg", subject_distance(3, 1), 140)
    with caplog.at_level(logging.WARNING, logger="dffcore.io"):
        stack = read_stack(tmp_path)
    assert stack.focus_distances is None and stack.focus_unit is None
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 3 frames" in warnings[0] and "b.jpg" in warnings[0]


@pytest.mark.parametrize(
    "tiff",
    [
        b"",  # empty TIFF block
        b"II*\x00",  # truncated header
        b"XX*\x00\x08\x00\x00\x00",  # unknown byte order
        b"II*\x00\xff\xff\x00\x00",  # IFD0 far outside the segment
        subject_distance(1, 1)[:30],  # Exif IFD cut short
        exif_tiff([(0x9206, RATIONAL, (5, 0))]),  # zero denominator
        exif_tiff([(0x9206, RATIONAL, (0, 1))]),  # 0 = distance unknown (Exif)
        exif_tiff([(0x9206, RATIONAL, (0xFFFFFFFF, 1))]),  # infinity (Exif)
        exif_tiff([(0x9206, SHORT, 2)]),  # not a RATIONAL: SHORT 2 is read as 2 m
    ],
)
def test_bad_exif_never_fails_the_read(tmp_path: Path, tiff: bytes) -> None:
    for i in range(3):
        jpeg(tmp_path / f"{i}.jpg", tiff, 60 * i)
    stack = read_stack(tmp_path)
    assert stack.frames.shape == (3, 16, 16, 3)
    expected = 2.0 if tiff == exif_tiff([(0x9206, SHORT, 2)]) else None
    assert exif_focus_distance(tmp_path / "0.jpg") == expected
    if expected is None:
        assert stack.focus_distances is None
    else:  # a lenient reader takes a SHORT distance; every frame has it
        assert stack.focus_distances.tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\x00\x00garbage",  # no marker after SOI
        b"\xff\xd8\xff\xe1\x00\x01Exif\x00\x00",  # segment length below 2
        b"\xff\xd8\xff\xfe\xff\xff" + b"c" * 70000,  # a comment past the 64 KB read
        b"\x89PNG\r\n\x1a\n",  # not a JPEG
        None,  # no such file
    ],
)
def test_exif_of_malformed_or_other_files_is_empty(tmp_path: Path, data: bytes | None) -> None:
    path = tmp_path / "x.jpg"
    if data is not None:
        path.write_bytes(data)
    assert read_exif_numbers(path) == {}
    assert exif_focus_distance(path) is None


def test_sidecar_wins_over_exif(tmp_path: Path) -> None:
    jpeg(tmp_path / "a.jpg", subject_distance(1, 1))
    jpeg(tmp_path / "b.jpg", subject_distance(2, 1), 140)
    (tmp_path / "focus_distances.txt").write_text("# unit: diopter\n4\n2\n")
    stack = read_stack(tmp_path)
    assert stack.focus_unit == "diopter" and stack.focus_distances.tolist() == [4.0, 2.0]
    assert stack.metadata["focus_distances_source"].endswith("focus_distances.txt")


# -- depth_metres.png and PNG text ---------------------------------------------------
def test_depth_metres_png_is_millimetres_with_0_for_unknown() -> None:
    depth = np.array([[0.8, 1.2344, 1.2346, 70.0], [np.nan, -1.0, 0.0002, np.inf]])
    conf = np.array([[1, 0.5, 1, 1], [1, 1, 1, 1]], np.float32)
    assert depth_metres_png(depth, conf).tolist() == [[800, 1234, 1235, 65535], [0, 0, 1, 65535]]
    conf[0, 1] = 0  # unreliable: unknown
    assert depth_metres_png(depth, conf)[0].tolist() == [800, 0, 1235, 65535]
    assert depth_metres_png(depth).dtype == np.uint16
    # diopter focus distances -> metres: 1 / d, interpolated in diopters; 0 D is infinity
    metres = index_to_depth(np.array([0.0, 1.0, 0.5, 2.0]), np.array([2.0, 0.5, 0.0]), "diopter")
    assert np.allclose(metres, [0.5, 2.0, 0.8, np.inf])  # 0.5 -> 1.25 D


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked with zlib.crc32."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_png_text_chunks_are_valid_and_keep_16_bits(tmp_path: Path) -> None:
    img = np.array([[0, 1000], [65535, 7]], np.uint16)
    write_png_text(tmp_path / "t.png", img, {"k": "v w", "dffcore:scale": "1 unit = 1 mm"})
    png = (tmp_path / "t.png").read_bytes()
    chunks = png_chunks(png)  # every CRC checked
    assert chunks[0][0] == b"IHDR"
    assert (b"tEXt", b"k\x00v w") in chunks
    assert (b"tEXt", b"dffcore:scale\x001 unit = 1 mm") in chunks
    assert chunks.index((b"tEXt", b"k\x00v w")) < [k for k, _ in chunks].index(b"IDAT")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and decoded.tolist() == img.tolist()


# -- a classic run with --ply on the synthetic stack ----------------------------------
def ply_vertices(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a PLY file read by ``plyfile``: (M,3) points and (M,3) colours or None."""
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(str(path), mmap=False)["vertex"].data
    points = np.stack([vertex[a] for a in "xyz"], axis=1)
    if "red" not in vertex.dtype.names:
        return points, None
    return points, np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1)


@pytest.fixture(scope="module")
def ply_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("metric") / "out"
    proc = dff("run", "classic", str(synth_dir), "-o", str(out), "--ply", "-q")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def shaken_ply_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """classic --ply on a hand-held synthetic stack: warped borders are unreliable."""
    root = tmp_path_factory.mktemp("shaken")
    write_stack(render_stack("default", n_frames=8, size=(144, 192), seed=1, shake_px=2.0), root)
    proc = dff("run", "classic", str(root), "-o", str(root / "out"), "--ply", "-q")
    assert proc.returncode == 0, proc.stderr
    return root / "out"


def test_depth_pngs_state_their_scale(ply_run: Path) -> None:
    depth = np.load(ply_run / "depth.npy")
    conf = np.load(ply_run / "confidence.npy")
    data = (ply_run / "depth_metres.png").read_bytes()
    chunks = png_chunks(data)
    assert (b"tEXt", b"dffcore:scale\x001 unit = 1 mm") in chunks
    mm = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm.shape == depth.shape
    expected = np.where(conf > 0, np.rint(depth.astype(np.float64) * 1000), 0)
    assert np.array_equal(mm, expected)
    assert 800 <= mm[conf > 0].min() and mm.max() <= 1250  # the sweep: 0.8 .. 1.25 m

    record = json.loads((ply_run / "run.json").read_text())
    assert record["depth_png"] == "uint16 = round(index * 65535 / 7)"  # 8 frames
    assert record["depth_unit"] == "m"
    assert record["depth_metres_png"] == "uint16 millimetres, 0 = unknown"
    assert {"depth_metres.png", "points.ply"} <= set(record["outputs"])
    png = (ply_run / "depth.png").read_bytes()
    assert (b"tEXt", b"dffcore:scale\x00" + record["depth_png"].encode()) in png_chunks(png)
    index = np.load(ply_run / "depth_index.npy")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, np.rint(index.astype(np.float64) * 65535 / 7))


def test_point_cloud_reprojects_onto_the_depth_map(shaken_ply_run: Path) -> None:
    ply_run = shaken_ply_run
    depth = np.load(ply_run / "depth.npy")
    conf = np.load(ply_run / "confidence.npy")
    aif = read_image(ply_run / "all_in_focus.png")
    record = json.loads((ply_run / "run.json").read_text())
    assert record["crop"] is None
    # the synthetic camera: 25 mm lens, 10 um pixels; 192x144 frames, centre pixel centre
    fx = fy = 25e-3 / 10e-6
    cx, cy = (192 - 1) / 2, (144 - 1) / 2
    k = record["point_cloud"]["intrinsics"]
    assert (k["fx"], k["fy"], k["cx"], k["cy"]) == (fx, fy, cx, cy)

    data = (ply_run / "points.ply").read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    points, colours = ply_vertices(ply_run / "points.ply")
    kept = conf > 0
    assert 0 < kept.sum() < kept.size  # the run has unreliable pixels to leave out
    assert points.shape == (kept.sum(), 3) and points.dtype == np.float32
    assert len(data) == data.index(b"end_header\n") + 11 + 15 * len(points)
    x, y, z = points.T.astype(np.float64)
    u, v = fx * x / z + cx, fy * y / z + cy
    ui, vi = np.rint(u).astype(int), np.rint(v).astype(int)
    assert np.abs(u - ui).max() < 1e-3 and np.abs(v - vi).max() < 1e-3
    hit = np.zeros_like(kept)
    hit[vi, ui] = True
    assert np.array_equal(hit, kept)  # every kept pixel once, nothing else
    assert np.abs(z - depth[vi, ui]).max() < 1e-5
    assert np.array_equal(colours, aif[vi, ui])


def test_depth_rmse_in_metres_of_classic(ply_run: Path, synth: SynthStack) -> None:
    depth = np.load(ply_run / "depth.npy")
    truth = synth.depth_m  # no crop (checked above)
    rmse = evaluate_depth(depth, truth)["rmse"]
    assert rmse == pytest.approx(np.sqrt(np.mean((depth - truth.astype(np.float64)) ** 2)))
    # measured 0.069 m; a constant guess scores the depth's spread, 0.136 m, and the
    # slices are 0.064 m apart on average (0.8 .. 1.25 m in 8 frames)
    assert rmse < 0.1
    assert rmse < 0.75 * truth.std()


def test_ply_without_focus_distances_fails_before_running(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    for i in range(3):
        cv2.imwrite(str(stack / f"{i}.png"), np.full((8, 8), 50 * i, np.uint8))
    out = tmp_path / "out"
    proc = dff("run", "classic", str(stack), "-o", str(out), "--ply")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dff: error: --ply: ")
    assert "needs focus distances" in lines[0] and "focus_distances.txt" in lines[0]
    assert "--focus-distances FILE" in lines[0]
    assert not any(out.iterdir())  # nothing was run or written


# -- back-projection, intrinsics and PLY files by hand --------------------------------
def test_depth_to_points_by_hand() -> None:
    depth = np.array([[2.0, 4.0], [np.nan, 1.0]], np.float32)
    grey = np.array([[65535, 0], [257, 25700]], np.uint16)[..., None]
    points, colours = depth_to_points(depth, 2.0, 4.0, 0.5, 0.5, grey)
    assert points.dtype == np.float32 and colours.dtype == np.uint8
    # (u, v, Z) = (0, 0, 2), (1, 0, 4), (1, 1, 1): X = (u - 0.5) Z / 2, Y = (v - 0.5) Z / 4
    assert points.tolist() == [[-0.5, -0.25, 2.0], [1.0, -0.5, 4.0], [0.25, 0.125, 1.0]]
    assert colours.tolist() == [[255] * 3, [0] * 3, [100] * 3]
    mask = np.array([[True, False], [True, True]])
    points, colours = depth_to_points(depth, 2.0, 4.0, 0.5, 0.5, mask=mask)
    assert points[:, 2].tolist() == [2.0, 1.0] and colours.tolist() == [[255] * 3] * 2


def test_intrinsics_from_35mm_fov_and_stack(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    k = intrinsics_from_35mm(50.0, 3000, 2000)  # 3:2 like the 36x24 frame: 50/36 x 3000
    assert k.fx == pytest.approx(50 / 36 * 3000) and (k.cx, k.cy) == (1499.5, 999.5)
    assert intrinsics_from_fov(90.0, 200, 100).fx == pytest.approx(100.0)
    assert k.cropped((10, 20, 5, 5)).cx == 1489.5 and k.cropped((10, 20, 5, 5)).cy == 979.5

    for i in range(2):  # 16x16 JPEGs, 35 mm equivalent 43 mm: the 43.27 mm diagonal
        jpeg(tmp_path / f"{i}.jpg", exif_tiff([(0xA405, SHORT, 43)]), 100 + i)
    stack = read_stack(tmp_path)
    k = stack_intrinsics(stack)
    assert k.fx == pytest.approx(43 * math.hypot(16, 16) / math.hypot(36, 24))
    assert "35 mm" in k.source

    (tmp_path / "0.jpg").write_bytes((tmp_path / "1.jpg").read_bytes()[:2] + b"\xff\xd9")
    stack.paths[0] = tmp_path / "0.jpg"  # no EXIF left: the assumed 60 degrees
    with caplog.at_level(logging.WARNING, logger="dffcore.io.pointcloud"):
        k = stack_intrinsics(stack)
    assert k.fx == pytest.approx(8 * math.sqrt(3))  # (W / 2) / tan(30 degrees)
    assert any("approximate" in r.message for r in caplog.records)


def test_write_ply_is_read_by_plyfile(tmp_path: Path) -> None:
    plyfile = pytest.importorskip("plyfile")
    points = np.array([[1, 2, 3], [-1.5, 0.25, 4], [0, 0, 1e-3]], np.float32)
    colours = np.array([[10, 20, 30], [255, 0, 7], [0, 0, 0]], np.uint8)
    write_ply(tmp_path / "a.ply", points, colours, ["dffcore test", "two\nlines"])
    ply = plyfile.PlyData.read(str(tmp_path / "a.ply"), mmap=False)
    assert not ply.text and ply.byte_order == "<"
    assert ply.comments == ["dffcore test", "two lines"]
    assert [e.name for e in ply.elements] == ["vertex"] and ply["vertex"].count == 3
    vertex = ply["vertex"].data
    assert vertex.dtype.descr == [
        ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "|u1"), ("green", "|u1"), ("blue", "|u1")
    ]  # fmt: skip
    got_points, got_colours = ply_vertices(tmp_path / "a.ply")
    assert np.array_equal(got_points, points) and np.array_equal(got_colours, colours)

    write_ply(tmp_path / "b.ply", np.array([[1.5, -2, 3]], np.float32))  # no colours
    assert (tmp_path / "b.ply").read_bytes() == (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
        b"property float x\nproperty float y\nproperty float z\nend_header\n"
        + struct.pack("<fff", 1.5, -2, 3)
    )
    points, colours = ply_vertices(tmp_path / "b.ply")
    assert points.tolist() == [[1.5, -2, 3]] and colours is None
    write_ply(tmp_path / "c.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))  # empty cloud
    assert plyfile.PlyData.read(str(tmp_path / "c.ply"), mmap=False)["vertex"].count == 0

    for bad, colours in ((np.zeros((2, 2)), None), (np.zeros((2, 3)), np.zeros((3, 3)))):
        with pytest.raises(DffError) as err:
            write_ply(tmp_path / "d.ply", bad, colours)
        assert "\n" not in str(err.value) and "d.ply" in str(err.value)
    assert not (tmp_path / "d.ply").exists()


def test_diopter_sidecar_gives_depth_metres_png_in_millimetres(
    synth: SynthStack, tmp_path: Path
) -> None:
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    for k in range(4):
        cv2.imwrite(str(stack_dir / f"{k}.png"), synth.frames[2 * k][..., ::-1])
    (stack_dir / "focus_distances.txt").write_text("# unit: diopter\n1.25\n1.1\n0.95\n0.8\n")
    (tmp_path / "cheap.yaml").write_text("align: none\nfocus: lapm\naggregate: argmax\n")
    stack = dffcore.read_stack(stack_dir)
    run = dffcore.run_pipeline(dffcore.load_spec(tmp_path / "cheap.yaml"), stack)
    dffcore.write_outputs(run, tmp_path / "out", point_cloud=True)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["depth_unit"] == "m"  # depth.npy is in metres whatever the sidecar's unit
    diopters = 1 / np.load(tmp_path / "out" / "depth.npy").astype(np.float64)
    assert 0.8 - 1e-6 <= diopters.min() and diopters.max() <= 1.25 + 1e-6
    mm = read_image(tmp_path / "out" / "depth_metres.png")[..., 0]
    conf = np.load(tmp_path / "out" / "confidence.npy")
    assert np.array_equal(mm, np.where(conf > 0, np.rint(1000 / diopters), 0))
    points, _ = ply_vertices(tmp_path / "out" / "points.ply")
    assert np.allclose(np.sort(points[:, 2]), np.sort(1 / diopters[conf > 0]), rtol=1e-6)


# -- fractional indices in metres: interpolated in diopters ---------------------------
def test_index_to_depth_in_metres_interpolates_in_diopters() -> None:
    """Between slices focused at 1 m and 0.5 m (1 and 2 D), index 0.5 is 1.5 D = 2/3 m,
    not the 0.75 m halfway in metres."""
    metres = index_to_depth(np.array([0.0, 0.5, 1.0, 0.25]), np.array([1.0, 0.5]), "m")
    np.testing.assert_allclose(metres, [1.0, 1 / 1.5, 0.5, 1 / 1.25], rtol=1e-6)
    # 2 m, 1 m, 0.25 m are 0.5, 1, 4 D: index 1.5 is 2.5 D = 0.4 m (in metres: 0.625)
    three = index_to_depth(np.array([[1.5, 0.5]]), np.array([2.0, 1.0, 0.25]), "m")
    np.testing.assert_allclose(three, [[0.4, 1 / 0.75]], rtol=1e-6)


#: focus distances (m) of the 8 synthetic frames in the tests below, near to far
SWEEP_M = [0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.6, 2.0]


def _expected_metres(index: np.ndarray, distances: list[float]) -> np.ndarray:
    """1 / ((1 − f) / z_k + f / z_{k+1}) for index k + f: linear in diopters, by hand."""
    z = np.asarray(distances, np.float64)
    k = np.clip(np.floor(index).astype(int), 0, len(z) - 2)
    f = index.astype(np.float64) - k
    return 1.0 / ((1 - f) / z[k] + f / z[k + 1])


def test_estimate_gives_metres_interpolated_in_diopters(synth: SynthStack) -> None:
    """A full run with sub-frame depths: each pixel's metres follow its fractional index."""
    pipeline = {"align": "none", "focus": "lapm", "aggregate": "gaussian"}
    result = dffcore.estimate(synth.frames, pipeline, focus_distances=SWEEP_M, jobs=1)
    frac = result.index - np.floor(result.index)
    assert ((frac > 0.2) & (frac < 0.8)).mean() > 0.2  # many pixels between two slices
    expected = _expected_metres(result.index, SWEEP_M)
    np.testing.assert_allclose(result.depth, expected, rtol=1e-5)
    # halfway between 0.4 m and 0.5 m in metres would be 0.45 m; in diopters 0.444 m
    assert np.abs(result.depth - np.interp(result.index, np.arange(8), SWEEP_M)).max() > 0.005


def test_metres_sidecar_gives_depth_interpolated_in_diopters(
    synth: SynthStack, tmp_path: Path
) -> None:
    """focus_distances.txt in metres, read with the stack: the run's depth is in diopters
    between slices too."""
    for k, frame in enumerate(synth.frames):
        cv2.imwrite(str(tmp_path / f"{k}.png"), frame[..., ::-1])
    lines = "".join(f"{z}\n" for z in SWEEP_M)
    (tmp_path / "focus_distances.txt").write_text("# unit: m\n" + lines)
    stack = dffcore.read_stack(tmp_path)
    assert stack.focus_unit == "m" and stack.focus_distances.tolist() == SWEEP_M
    spec = dffcore.load_spec({"align": "none", "focus": "lapm", "aggregate": "parabolic"})
    run = dffcore.run_pipeline(spec, stack, jobs=1)
    np.testing.assert_allclose(
        run.result.depth, _expected_metres(run.result.index, SWEEP_M), rtol=1e-5
    )
