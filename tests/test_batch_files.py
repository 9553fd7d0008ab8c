"""`dff batch` and `dff compare` over files that hold a whole stack (a reader's files),
next to folders of frames; in this process, with the test reader of test_outputs_z."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dffcore.batch import collect_stacks, plan, unique_names
from dffcore.cli import main
from dffcore.core.errors import DffError
from dffcore.eval.compare import compare
from dffcore.eval.datasets import detect_kind
from dffcore.eval.sources import dataset_stacks
from dffcore.eval.synth import render_stack, write_stack
from dffcore.eval.variants import pipeline_variants

from .test_outputs_z import PIPELINE, install_z_reader, write_zstack


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``data/`` with two stack files, a file no reader takes and a folder of frames."""
    install_z_reader(monkeypatch)
    root = tmp_path / "data"
    write_zstack(root / "sample.ome.zst", seed=1)
    write_zstack(root / "b.v2.zst", "slant", seed=2)
    (root / "notes.txt").write_text("not a stack")
    write_stack(render_stack("steps", n_frames=4, size=(24, 32)), root / "frames")
    (tmp_path / "cheap.yaml").write_text(PIPELINE)
    return root


def summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch_summary.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_stack_files_are_collected_and_named_without_their_ending(data: Path) -> None:
    got = collect_stacks([str(data / "*.zst"), str(data / "frames")])
    assert [p.name for p in got] == ["b.v2.zst", "sample.ome.zst", "frames"]
    assert unique_names(got) == ["b.v2", "sample", "frames"]  # the longest reader ending
    generic = [write_zstack(data.parent / f / "stack.zst") for f in ("x1", "x2")]
    assert unique_names(generic) == ["x1", "x2"]  # a file named "stack": its folder's name
    assert collect_stacks([str(data / "*")]) == collect_stacks([str(data / "[bfs]*")])
    listing = data.parent / "list.txt"
    listing.write_text("data/sample.ome.zst\ndata/notes.txt\n")
    with pytest.raises(DffError, match=r"list\.txt:2: data/notes\.txt: is a file that no reader"):
        collect_stacks([f"@{listing}"])
    with pytest.raises(DffError, match=r"no\*\.zst: the pattern matches no folders or stack"):
        collect_stacks([str(data / "no*.zst")])
    with pytest.raises(DffError, match=r"--reader zs: unknown reader\. Did you mean 'zst'"):
        collect_stacks([str(data / "frames")], reader="zs")
    inner = write_zstack(data / "inner" / "inner.zst")  # out/inner would be its folder
    with pytest.raises(DffError, match="into the stack folder itself"):
        plan([inner], data)
    # a forced reader takes a file whatever its ending
    (data / "other.bin").write_bytes((data / "b.v2.zst").read_bytes())
    assert collect_stacks([str(data / "other.bin")], reader="zst") == [data / "other.bin"]


def test_batch_over_a_glob_of_stack_files_and_a_folder(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cheap, out = str(data.parent / "cheap.yaml"), data.parent / "out"
    args = ["batch", cheap, str(data / "*.zst"), str(data / "frames"), "-o", str(out), "-q"]
    assert main([*args, "--read", "pixel_x_um=0.4"]) == 0, capsys.readouterr().err
    rows = summary(out)
    assert {n: r["status"] for n, r in rows.items()} == {
        "b.v2": "done",
        "sample": "done",
        "frames": "done",
    }
    record = json.loads((out / "sample" / "run.json").read_text())
    assert record["stack"]["frames"] == [str(data / "sample.ome.zst")]
    assert record["stack"]["count"] == 5 and record["stack"]["focus_unit"] == "z"
    assert record["stack"]["pixel_size_m"] == pytest.approx([0.4e-6, 0.25e-6])  # --read
    assert record["stack"]["read"]["read_params"] == {"pixel_x_um": 0.4}
    assert (out / "sample" / "height.tif").is_file()
    assert (out / "frames" / "depth_metres.png").is_file()  # metres: not a z-stack
    # done stacks are skipped; other reader options are another result
    assert main([*args, "--read", "pixel_x_um=0.4"]) == 0
    assert {r["status"] for r in summary(out).values()} == {"skipped"}
    files = ["batch", cheap, str(data / "*.zst"), "-o", str(out), "-q"]
    assert main([*files, "--read", "pixel_x_um=0.4", "--frames", "1:"]) == 0
    rows = summary(out)
    assert rows["sample"]["status"] == rows["b.v2"]["status"] == "done"
    assert json.loads((out / "sample" / "run.json").read_text())["stack"]["count"] == 4
    assert np.load(out / "frames" / "depth_index.npy").shape == (24, 32)


def test_batch_reader_options_are_checked_before_any_work(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cheap, out = str(data.parent / "cheap.yaml"), data.parent / "out"
    stack = str(data / "sample.ome.zst")
    for extra, message in (
        (["--frames", "5"], "dff: error: --frames '5': expected START:STOP:STEP"),
        (["--reader", "zst", "--read", "pixel_x_um=-1"], "dff: error: --read pixel_x_um: "),
        (["--read", "x"], "dff: error: --read 'x': expected KEY=VALUE"),
    ):
        assert main(["batch", cheap, stack, "-o", str(out), *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not out.exists()


def test_compare_reads_a_dataset_whose_stack_is_one_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_z_reader(monkeypatch)
    (tmp_path / "cheap.yaml").write_text(PIPELINE)
    synth = render_stack("planes", n_frames=5, size=(24, 32), seed=3)
    sample = tmp_path / "ds" / "s1"
    write_stack(synth, sample)  # frames + ground_truth/ ...
    for frame in sample.glob("frame_*.png"):  # ... then the frames become one stack file
        frame.unlink()
    (sample / "focus_distances.txt").unlink()
    with open(sample / "stack.zst", "wb") as fh:
        np.save(fh, synth.frames.mean(axis=3).astype(np.uint8))
    assert detect_kind(tmp_path / "ds") == detect_kind(sample) == "dffcore"
    stacks = dataset_stacks(tmp_path / "ds")
    assert [s.name for s in stacks] == ["s1"]
    keyed = [f[:2] for f in stacks[0].identity["files"]]  # the cache key knows the file
    assert ["s1/stack.zst", (sample / "stack.zst").stat().st_size] in keyed
    loaded = stacks[0].load()
    assert loaded.stack.focus_unit == "z" and loaded.stack.n == 5
    assert loaded.stack.frames.shape == (5, 24, 32, 3)
    rows = compare(
        pipeline_variants([str(tmp_path / "cheap.yaml")], [], []), stacks, tmp_path / "r"
    )
    assert [r["status"] for r in rows] == ["done"], rows
    assert np.isfinite(rows[0]["metrics"]["slice.mae"])
    assert (tmp_path / "r" / "report.md").is_file()
