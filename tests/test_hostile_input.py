"""Hostile input (issue 14): decompression bombs, corrupt frames, bad focus-distance
sidecars and crafted ``.npy`` headers get one line naming the file and exit code 2,
without a traceback, without decoder chatter on stderr and without touching the files.

The bomb and ``.npy`` tests run in a subprocess under an address-space limit and a
timeout, so a regression (decoding 900 megapixels) fails quickly instead of hanging.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dffcore.core.errors import DffError
from dffcore.io import exif
from dffcore.io.stack import read_focus_distances

from .conftest import PIPELINES, dff, stderr_lines

FAST = str(PIPELINES / "fast.yaml")
MEMORY_LIMIT = 1536 * 2**20  # a 30000x30000 frame alone would need 900 MB, as RGB 2.7 GB
SIZE = (90, 160)  # frame height, width


def _frames(folder: Path, ext: str = ".png", n: int = 4) -> Path:
    """``n`` smooth 160x90 colour frames (an easy stack, so runs that pass are quick)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (9, 16, 3), np.uint8), SIZE[::-1])
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}{ext}"), cv2.GaussianBlur(base, (0, 0), 0.5 + i))
    return folder


def _png_of_zeros(path: Path, width: int, height: int) -> None:
    """A valid grey 8-bit PNG of zeros, written without ever holding its pixels: one
    deflate segment (closed by a full flush, so it is independent of what precedes it)
    repeated, then the zlib trailer with the Adler-32 of all the rows."""
    rows = 1000
    assert height % rows == 0
    block = bytes((width + 1) * rows)  # filter byte 0 + a row of zeros, 1000 times
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    idat = b"\x78\xda" + segment * (height // rows) + deflate.flush() + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _limited(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``args`` under the memory limit; a timeout fails the test instead of hanging."""
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory
    )


def _dff_limited(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("dff", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "dffcore.cli"]
    return _limited([*cmd, *args])


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dff: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- 1. decompression bombs and frame sizes, from the headers -----------------------


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "stack")
    _png_of_zeros(folder / "9.png", 30000, 30000)
    assert (folder / "9.png").stat().st_size < 2_000_000
    before = _digest(folder)
    proc = _dff_limited("run", FAST, str(folder), "-o", str(tmp_path / "out"))
    _one_line_error(proc, "9.png", "30000x30000", "megapixels", "DFF_MAX_PIXELS")
    assert _digest(folder) == before


def test_pixel_limit_comes_from_the_environment(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "stack")
    proc = dff("run", FAST, str(folder), "-o", str(tmp_path / "o"), env={"DFF_MAX_PIXELS": "1000"})
    _one_line_error(proc, "0.png", "160x90", "DFF_MAX_PIXELS")
    proc = dff("run", FAST, str(folder), "-o", str(tmp_path / "o"), env={"DFF_MAX_PIXELS": "lots"})
    _one_line_error(proc, "DFF_MAX_PIXELS=lots", "positive")


def test_tall_frame_is_refused_from_its_header_naming_both_sizes(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "stack")
    _png_of_zeros(folder / "9.png", 160, 1_000_000)  # 160 MB of pixels, under the limit
    proc = _dff_limited("run", FAST, str(folder), "-o", str(tmp_path / "out"))
    _one_line_error(proc, "9.png", "160x1000000", "0.png is 160x90", "same size")


# --- 2. corrupt and truncated frames ------------------------------------------------


def _corrupt_jpeg_stack(tmp_path: Path) -> Path:
    folder = _frames(tmp_path / "jpg", ".jpg")
    noise = np.random.default_rng(1).integers(0, 255, (*SIZE, 3), np.uint8)
    cv2.imwrite(str(folder / "1.jpg"), noise)  # dense entropy-coded data: zeros break it
    data = bytearray((folder / "1.jpg").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    (folder / "1.jpg").write_bytes(bytes(data))
    return folder


def test_corrupt_jpeg_frame_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _corrupt_jpeg_stack(tmp_path)
    before = _digest(folder)
    proc = dff("run", FAST, str(folder), "-o", str(tmp_path / "o"), "--set", "align=none")
    line = _one_line_error(proc, "1.jpg", "corrupt", "--allow-corrupt")
    assert "Corrupt JPEG data" in line  # the decoder's reason, inside the one line
    assert _digest(folder) == before


def test_allow_corrupt_warns_naming_the_frame_and_runs(tmp_path: Path) -> None:
    folder = _corrupt_jpeg_stack(tmp_path)
    out = tmp_path / "o"
    args = ("run", FAST, str(folder), "-o", str(out), "--set", "align=none", "-q")
    proc = dff(*args, "--allow-corrupt")
    assert proc.returncode == 0, proc.stderr
    lines = stderr_lines(proc.stderr)
    # nothing from the decoder leaks; besides the corrupt frame's warning, only the run's
    # own (this tiny stack holds little focus information: a warning says so)
    assert all(line.startswith("dff: warning: ") for line in lines), proc.stderr
    assert len([line for line in lines if "1.jpg" in line and "corrupt" in line]) == 1
    assert len(lines) <= 2, lines
    assert all("1.jpg" in ln or "focus information" in ln for ln in lines), lines
    assert (out / "run.json").is_file()
    proc = dff(*args, env={"DFF_ALLOW_CORRUPT": "1"})  # what batch and compare workers see
    assert proc.returncode == 0 and "1.jpg" in proc.stderr, proc.stderr


def test_truncated_jpeg_frame_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "jpg", ".jpg")
    data = (folder / "2.jpg").read_bytes()
    (folder / "2.jpg").write_bytes(data[: len(data) * 2 // 3])
    proc = dff("run", FAST, str(folder), "-o", str(tmp_path / "o"), "--set", "align=none")
    _one_line_error(proc, "2.jpg")


def test_truncated_png_frame_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "png")
    data = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(data[: len(data) // 2])
    proc = dff("run", FAST, str(folder), "-o", str(tmp_path / "o"), "--set", "align=none")
    _one_line_error(proc, "2.png")


# --- 3. focus-distance sidecars and EXIF --------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0.1\n-0.2\n0.3\n0.4\n", ":2: focus distance -0.2"),
        ("0\n0.1\n0.2\n0.3\n", ":1: focus distance 0.0"),
        ("0.1\nnan\n0.3\n0.4\n", ":2: focus distance nan"),
        ("0.1\n0.2\ninf\n0.4\n", ":3: focus distance inf"),
        ("# unit: diopter\n3\n2\n-1\n-2\n", ":4: focus distance -1.0"),
        ("0.1\n0.1\n0.3\n0.4\n", ":2: focus distance 0.1 after 0.1"),
        ("0.1\n0.3\n# comment\n0.2\n0.4\n", ":4: focus distance 0.2 after 0.3"),
        ("0.1\n0.2\n0.3\n", "has 3 focus distances for 4 frames"),
    ],
)
def test_bad_sidecar_values_name_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "focus_distances.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DffError, match=r"focus_distances\.txt") as err:
        read_focus_distances(path, 4)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_good_sidecars_bom_decreasing_and_zero_diopters(tmp_path: Path) -> None:
    path = tmp_path / "focus_distances.txt"
    path.write_text("\ufeff0.4\n0.3\n0.2\n0.1\n", encoding="utf-8")
    values, unit = read_focus_distances(path, 4)
    assert unit == "m" and values.tolist() == [0.4, 0.3, 0.2, 0.1]
    path.write_text("# unit: diopter\n0\n0.5\n1\n2\n", encoding="utf-8")
    values, unit = read_focus_distances(path, 4)
    assert unit == "diopter" and values.tolist() == [0, 0.5, 1, 2]


def test_sidecar_problems_through_the_cli(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "stack")
    sidecar = folder / "focus_distances.txt"
    args = ("run", FAST, str(folder), "-o", str(tmp_path / "o"), "--set", "align=none", "-q")
    sidecar.write_text("-1\n-2\n-3\n-4\n")
    _one_line_error(dff(*args), "focus_distances.txt:1", "> 0 m")
    sidecar.write_bytes(b"\xff\xfe\x00\x81\x00binary")
    _one_line_error(dff(*args), "focus_distances.txt", "not a text file")
    sidecar.write_bytes("\ufeff0.1\n0.2\n0.3\n0.4\n".encode())  # a BOM is fine
    proc = dff(*args)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value", [-2.0, float("inf")])
def test_unusable_exif_distance_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: float
) -> None:
    monkeypatch.setattr(exif, "read_exif_numbers", lambda path: {"SubjectDistance": value})
    with caplog.at_level(logging.WARNING, logger="dffcore.io.exif"):
        assert exif.exif_focus_distance("frame.jpg") is None
    assert any("frame.jpg" in r.getMessage() for r in caplog.records)


# --- 4. crafted .npy headers --------------------------------------------------------


def _npy_bomb(path: Path) -> None:
    """A .npy file whose header declares 100000x100000 float32 (40 GB), with 16 bytes."""
    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(16))


def test_huge_npy_header_is_refused_unread(tmp_path: Path) -> None:
    from dffcore.io.images import load_npy_checked

    path = tmp_path / "gt.npy"
    _npy_bomb(path)
    with pytest.raises(DffError, match=r"gt\.npy: declares shape \(100000, 100000\)"):
        load_npy_checked(path)
    np.save(path, np.zeros((3, 4), np.float32))
    with pytest.raises(DffError, match=r"gt\.npy: has shape \(3, 4\); expected \(4, 3\)"):
        load_npy_checked(path, expected_shape=(4, 3))
    assert load_npy_checked(path, expected_shape=(3, 4)).shape == (3, 4)


@pytest.mark.parametrize(
    "code",
    [  # ground truth of a `dff compare --data` sample; a precomputed flow field
        "from dffcore.eval.datasets import open_dataset; open_dataset(sys.argv[1]).load('s')",
        "from dffcore_plugins.align.external_flow import read_field; "
        "read_field(Path(sys.argv[1]) / 's/ground_truth/depth.npy', (90, 160))",
    ],
)
def test_huge_npy_file_is_a_one_line_error_under_a_memory_limit(tmp_path: Path, code: str) -> None:
    sample = _frames(tmp_path / "data" / "s")
    (sample / "ground_truth").mkdir()
    _npy_bomb(sample / "ground_truth" / "depth.npy")
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from dffcore.core.errors import DffError
        try:
            {code}
        except DffError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)
        """
    )
    proc = _limited([sys.executable, "-c", script, str(tmp_path / "data")])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "depth.npy" in proc.stderr and "100000" in proc.stderr
    assert len(stderr_lines(proc.stderr)) == 1, proc.stderr
