"""Bad input gets one line naming the culprit and a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import PIPELINES, dff, stderr_lines

CLASSIC = str(PIPELINES / "classic.yaml")


def _frames(folder: Path, n: int = 3, size: tuple[int, int] = (40, 50)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (*size, 3), np.uint8))
    return folder


def _one_line_error(proc, *needles: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = dff("run", CLASSIC, str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "empty", "no images found")


def test_single_image(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "one", n=1)
    proc = dff("run", CLASSIC, str(folder), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "one", "at least 2 images, found 1")


def test_single_image_file_instead_of_folder(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "one", n=1)
    proc = dff("run", CLASSIC, str(folder / "0.png"), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "0.png", "single file")


def test_frames_of_different_sizes(tmp_path: Path) -> None:
    folder = _frames(tmp_path / "mixed", n=3)
    cv2.imwrite(str(folder / "3.png"), np.zeros((30, 50, 3), np.uint8))
    proc = dff("run", CLASSIC, str(folder), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "3.png", "50x30", "same size")


@pytest.mark.parametrize("content", [b"", b"this is not a JPEG", b"\xff\xd8\xff\xe0broken"])
def test_corrupt_or_non_image_file_among_frames(tmp_path: Path, content: bytes) -> None:
    folder = _frames(tmp_path / "bad", n=3)
    (folder / "1.jpg").write_bytes(content)
    proc = dff("run", CLASSIC, str(folder), "-o", str(tmp_path / "o"))
    _one_line_error(proc, "1.jpg", "not a readable image")


def test_unknown_plugin_name(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "focus: {name: lgo}\n")
    proc = dff("validate", spec)
    _one_line_error(proc, "pipeline.yaml: focus.name", "'lgo'", "Did you mean 'log'?", "Available:")


def test_unknown_parameter(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "focus: {name: log, params: {laplacian_size: 5}}\n")
    proc = dff("validate", spec)
    _one_line_error(
        proc, "focus.params.laplacian_size", "unknown parameter", "Did you mean 'laplacian_ksize'?"
    )


def test_mistyped_parameter(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "aggregate: {name: argmax, params: {sigma: big}}\n")
    proc = dff("validate", spec)
    _one_line_error(proc, "aggregate.params.sigma", "'big'")


def test_out_of_range_parameter_in_a_list_stage(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "regularize:\n  - {name: graphcut, params: {unary_scale: -1}}\n")
    proc = dff("validate", spec)
    _one_line_error(proc, "regularize[0].params.unary_scale", "greater than 0", "-1")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "focuss: {name: log}\n")
    _one_line_error(dff("validate", spec), "focuss", "Did you mean 'focus'?", "Valid keys")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "focus: {name: log\naggregate: [\n")
    _one_line_error(dff("validate", spec), "pipeline.yaml", "YAML syntax error", "line")


def test_missing_pipeline_file(tmp_path: Path) -> None:
    _one_line_error(dff("validate", str(tmp_path / "nope.yaml")), "nope.yaml", "no such")


def test_output_folder_is_a_file(tmp_path: Path, synth_dir: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    proc = dff("run", CLASSIC, str(synth_dir), "-o", str(out))
    _one_line_error(proc, "out.txt", "is an existing file")
    assert out.read_text() == "keep me"


def test_bad_override(tmp_path: Path, synth_dir: Path) -> None:
    proc = dff(
        "run",
        CLASSIC,
        str(synth_dir),
        "-o",
        str(tmp_path / "o"),
        "--set",
        "aggregate.params.sigma=-3",
    )
    _one_line_error(proc, "aggregate.params.sigma", "-3")


def test_energy_that_would_abort_gco_is_an_error(tmp_path: Path, synth_dir: Path) -> None:
    proc = dff(
        "run",
        CLASSIC,
        str(synth_dir),
        "-o",
        str(tmp_path / "o"),
        "--set",
        "regularize[0].params.unary_scale=1e9",
    )
    line = _one_line_error(proc, "regularize[0] (graphcut)", "gco's limit", "unary_scale")
    assert proc.returncode == 2, line


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "focus: {name: lgo}\naggregate: {name: argmax, params: {sgima: 1}}\n")
    proc = dff("validate", spec)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "focus.name" in lines[0] and "aggregate.params.sgima" in lines[1]


def test_inputs_are_never_modified(tmp_path: Path, synth_dir: Path) -> None:
    copy = tmp_path / "stack"
    shutil.copytree(synth_dir, copy)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in copy.iterdir() if p.is_file()}
    proc = dff("run", CLASSIC, str(copy), "-o", str(tmp_path / "o"), "-q")
    assert proc.returncode == 0, proc.stderr
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in copy.iterdir() if p.is_file()}
    assert before == after
