"""Seeded, bounded fuzzing of ``dff run``: mutated frames and mutated pipeline specs.

Whatever the input, ``dff`` must answer with exit 0 (a result) or 2 (a one-line error),
never a traceback or an internal error; the input files are never modified; the output
folder holds exactly one complete run (the files its ``run.json`` lists) or nothing, and
no temporary file is left beside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from pathlib import Path

import cv2
import pytest

from dffcore.cli import main
from dffcore.core.spec import find_pipeline
from dffcore.eval.synth import render_stack

N_FRAME_CASES = 150
N_SPEC_CASES = 150
N_FILE_CASES = 90
N_RAW_CASES = 60


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


@pytest.fixture(scope="module")
def clean_frames() -> list[tuple[str, bytes]]:
    frames = render_stack("default", n_frames=4, size=(36, 48), seed=5).frames
    out = []
    for k, f in enumerate(frames):
        ext = ".png" if k % 2 else ".jpg"
        ok, buf = cv2.imencode(ext, f)
        assert ok
        out.append((f"f{k}{ext}", buf.tobytes()))
    return out


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.choice(["flip", "zero", "truncate", "insert", "header"])
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "zero":
        i = rng.randrange(len(b))
        b[i : i + rng.randint(1, 64)] = bytes(min(64, len(b) - i))
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:  # damage the first bytes: signature and header
        for i in range(rng.randrange(1, 24)):
            if i < len(b):
                b[i] = rng.randrange(256)
    return bytes(b)


def check_run(
    tmp: Path,
    stack: Path,
    args: list[str],
    capfd: pytest.CaptureFixture,
    source: Path | None = None,
) -> int:
    """``dff run ARGS SOURCE`` (default: the folder ``stack``; else a file in it)."""
    before = digest(stack)
    out = tmp / "out"
    code = main(["run", *args, str(source or stack), "-o", str(out), "-q"])
    err = capfd.readouterr().err
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    # one-line messages of dff's own only: no decoder, OpenCV or NumPy warnings leak
    assert all(ln.startswith("dff:") for ln in lines), err
    if code == 2:
        assert [ln for ln in lines if ln.startswith("dff: error:")], err
    assert digest(stack) == before, "an input file was modified"
    stray = [p.name for p in tmp.iterdir() if p.name not in ("out", "spec.yaml", stack.name)]
    assert not stray, f"files left beside the output folder: {stray}"
    if out.is_dir() and any(out.iterdir()):
        record = json.loads((out / "run.json").read_text())
        assert sorted(p.name for p in out.iterdir()) == sorted(record["outputs"])
    return code


def test_mutated_frames(
    tmp_path: Path, clean_frames: list[tuple[str, bytes]], capfd: pytest.CaptureFixture
) -> None:
    rng = random.Random(1234)
    codes = []
    for case in range(N_FRAME_CASES):
        tmp = tmp_path / f"c{case}"
        stack = tmp / "stack"
        stack.mkdir(parents=True)
        victims = rng.sample(range(len(clean_frames)), rng.randint(1, 2))
        for k, (name, data) in enumerate(clean_frames):
            (stack / name).write_bytes(mutate_bytes(rng, data) if k in victims else data)
        codes.append(check_run(tmp, stack, ["fast"], capfd))
    assert codes.count(2) > N_FRAME_CASES // 4, "the mutations should mostly be refused"


@pytest.fixture(scope="module")
def clean_stack_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """The same small stack as one OME-TIFF, one ImageJ TIFF and one lossless MP4."""
    from dffcore.eval.synth import write_stack_tiff

    synth = render_stack("default", n_frames=4, size=(36, 48), seed=5)
    root = tmp_path_factory.mktemp("files")
    out = []
    for fmt, name in (("ome", "s.ome.tif"), ("imagej", "s.tif")):
        out.append((name, write_stack_tiff(synth, root / fmt / name, fmt).read_bytes()))
    writer = cv2.VideoWriter(str(root / "s.mp4"), cv2.VideoWriter_fourcc(*"FFV1"), 5, (48, 36))
    if writer.isOpened():
        for f in synth.frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        out.append(("s.mp4", (root / "s.mp4").read_bytes()))
    return out


def test_mutated_stack_files(
    tmp_path: Path, clean_stack_files: list[tuple[str, bytes]], capfd: pytest.CaptureFixture
) -> None:
    """Z-stack TIFFs and videos with damaged bytes: a result or one line naming the file."""
    rng = random.Random(4321)
    codes = []
    for case in range(N_FILE_CASES):
        tmp = tmp_path / f"c{case}"
        stack = tmp / "stack"
        stack.mkdir(parents=True)
        name, data = clean_stack_files[case % len(clean_stack_files)]
        (stack / name).write_bytes(mutate_bytes(rng, data))
        code = check_run(tmp, stack, ["fast"], capfd, source=stack / name)
        codes.append(code)
    assert codes.count(2) > N_FILE_CASES // 4, "the mutations should mostly be refused"


@pytest.mark.skipif(importlib.util.find_spec("rawpy") is None, reason="rawpy is not installed")
def test_mutated_raw_frames(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """DNG frames with damaged bytes: what LibRaw prints never reaches the terminal."""
    from .test_read_raw import write_dng

    frames = render_stack("default", n_frames=3, size=(36, 48), seed=5).frames
    clean = [write_dng(tmp_path / f"{k}.dng", f).read_bytes() for k, f in enumerate(frames)]
    rng = random.Random(2468)
    for case in range(N_RAW_CASES):
        tmp = tmp_path / f"c{case}"
        stack = tmp / "stack"
        stack.mkdir(parents=True)
        victim = rng.randrange(len(clean))
        for k, data in enumerate(clean):
            (stack / f"{k}.dng").write_bytes(mutate_bytes(rng, data) if k == victim else data)
        check_run(tmp, stack, ["fast", "--set", "align.name=none"], capfd)


SPEC_VALUES = [
    "-1", "0", "1e400", ".inf", "-.inf", ".nan", "nan", "1e-300", "123456789", "9" * 5000,
    "x", "''", "[]", "{}", "[1, 2]", "{a: 1}", "null", "true", "'3'", "0.5", "2", "7",
    "[" * 200 + "]" * 200, "&a [*a]", "!!python/object:os.system {}", "@", "\t", "'\\x00'",
]  # fmt: skip


def mutate_spec(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    kind = rng.choice(["value", "value", "delete", "duplicate", "chars", "name"])
    if kind == "value":
        i = rng.randrange(len(lines))
        if ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(SPEC_VALUES)}"
    elif kind == "delete":
        del lines[rng.randrange(len(lines))]
    elif kind == "duplicate":
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == "name":
        lines.append(f"focus: {{name: {rng.choice(['lapm', 'nope', '', '1', 'mslog'])}}}")
    else:
        s = list("\n".join(lines))
        for _ in range(rng.randint(1, 6)):
            s[rng.randrange(len(s))] = rng.choice(":{}[]-&*!|>'\"#\t 0x")
        return "".join(s)
    return "\n".join(lines) + "\n"


def test_mutated_specs(
    tmp_path: Path, clean_frames: list[tuple[str, bytes]], capfd: pytest.CaptureFixture
) -> None:
    rng = random.Random(99)
    stack = tmp_path / "stack"
    stack.mkdir()
    for name, data in clean_frames:
        (stack / name).write_bytes(data)
    bases = [find_pipeline(n).read_text(encoding="utf-8") for n in ("fast", "best", "classic")]
    codes = []
    for case in range(N_SPEC_CASES):
        tmp = tmp_path / f"c{case}"
        tmp.mkdir()
        spec = tmp / "spec.yaml"
        spec.write_text(mutate_spec(rng, rng.choice(bases)), encoding="utf-8")
        link = tmp / "stack"
        link.symlink_to(stack, target_is_directory=True)
        window = f"focus.params.window={rng.choice(SPEC_VALUES)}"
        extra = [] if rng.random() < 0.7 else ["--set", window]
        codes.append(check_run(tmp, link, [str(spec), *extra], capfd))
        assert spec.exists()
    assert 0 < codes.count(2) < N_SPEC_CASES
