"""Hostile command lines (issue 14): empty output names, bad thread counts, absurd synthetic
stacks, and a stage that runs out of memory — each one ``dff: error:`` line, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dffcore.cli import main
from dffcore.core.components import FocusMeasure
from dffcore.eval.synth import render_stack, write_stack

from .test_hostile_faults import plug  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile_cli") / "stack"
    write_stack(render_stack("default", n_frames=4, size=(40, 48), seed=1), folder)
    return folder


def one_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dff: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def test_empty_output_folder_name_is_refused(
    stack: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["run", "fast", str(stack)], ["batch", "fast", str(stack)]):
        line = one_error(capsys, *args, "-o", "")
        assert "-o/--out" in line and "empty" in line
    assert os.listdir(tmp_path) == []  # nothing written into the current folder


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_run_refuses_thread_counts_below_one(
    stack: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, jobs: str
) -> None:
    line = one_error(capsys, "run", "fast", str(stack), "-o", str(tmp_path / "o"), "--jobs", jobs)
    assert f"--jobs {jobs}" in line and "1 or more" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--size", "100000x100000"], "size = 100000x100000"),
        (["--size", "0x10"], "size = 0x10"),
        (["--noise", "nan"], "noise_sigma = nan"),
        (["--noise", "1e400"], "noise_sigma = inf"),
        (["--frames", "1"], "n_frames = 1"),
        (["--frames", "100000"], "n_frames = 100000"),
    ],
)
def test_synth_refuses_absurd_stacks_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: list[str], words: str
) -> None:
    line = one_error(capsys, "synth", str(tmp_path / "s"), *option)
    assert words in line
    assert not (tmp_path / "s").exists()


def test_a_stage_out_of_memory_names_what_it_allocated(
    plug,  # noqa: F811
    stack: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    def greedy(self, frame: np.ndarray) -> np.ndarray:
        return np.empty((2**20, 2**20), np.float64)  # 8 TiB: the allocation fails at once

    plug(type("Greedy", (FocusMeasure,), {"__doc__": "Test.", "name": "bad", "measure": greedy}))
    spec = tmp_path / "p.yaml"
    spec.write_text("align: none\nfocus: bad\naggregate: argmax\n")
    line = one_error(capsys, "run", str(spec), str(stack), "-o", str(tmp_path / "o"))
    assert line.startswith("dff: error: focus (bad, from baddist 1.0): out of memory: Unable to")
    assert "(1048576, 1048576)" in line and "--memory" in line
