"""``dff batch``: many stacks, local or Dask executor, resumable, failures isolated."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from dffcore.batch import collect_stacks, is_complete, run_batch, run_one, unique_names
from dffcore.core.errors import DffError
from dffcore.core.spec import load_spec, spec_hash
from dffcore.eval.synth import render_stack, write_stack
from dffcore.io.images import read_image

from .conftest import dff

try:  # the test extra installs Dask; without it the Dask tests skip
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover
    WorkerPlugin = object

PIPELINE = "description: cheap\nalign: none\nfocus: lapm\naggregate: argmax\n"
# the files `dff run` writes for a stack with focus distances (write_stack writes them)
OUTPUTS = {
    "depth_index.npy",
    "confidence.npy",
    "depth.png",
    "depth_color.png",
    "confidence.png",
    "all_in_focus.png",
    "depth.npy",
    "depth_metres.png",
    "run.json",
}
NAMES = [f"s{i:02d}" for i in range(12)]
SCENES = ("default", "planes", "slant", "steps")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 tiny stacks in ``stacks/s00..s11`` and the cheap pipeline ``cheap.yaml``."""
    root = tmp_path_factory.mktemp("batch")
    for i, name in enumerate(NAMES):
        synth = render_stack(SCENES[i % 4], n_frames=4, size=(48, 64), seed=i)
        write_stack(synth, root / "stacks" / name)
    (root / "cheap.yaml").write_text(PIPELINE)
    return root


@pytest.fixture(scope="module")
def sequential(root: Path) -> Path:
    """The reference: all 12 stacks run one after the other (``--jobs 1``)."""
    out = root / "out_seq"
    proc = dff("batch", str(root / "cheap.yaml"), str(root / "stacks" / "*"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def read_summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch_summary.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def assert_same_result(a: Path, b: Path) -> None:
    for name in ("depth_index.npy", "confidence.npy"):
        assert np.array_equal(np.load(a / name), np.load(b / name)), f"{a}/{name}"
    assert np.array_equal(read_image(a / "all_in_focus.png"), read_image(b / "all_in_focus.png"))


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# -- 1. Dask on a 2-worker LocalCluster == sequential ---------------------------
def test_dask_local_cluster_matches_sequential(root: Path, sequential: Path) -> None:
    pytest.importorskip("distributed")
    rows = read_summary(sequential)
    assert sorted(rows) == NAMES
    assert {r["status"] for r in rows.values()} == {"done"}
    # the reference is a real result: argmax of lapm over 4 frames gives integer slices
    index = np.load(sequential / "s00" / "depth_index.npy")
    assert index.shape == (48, 64) and set(np.unique(index)) <= {0.0, 1.0, 2.0, 3.0}
    assert len(np.unique(index)) > 1

    out = root / "out_dask"
    proc = dff(
        "batch",
        str(root / "cheap.yaml"),
        str(root / "stacks" / "*"),
        "-o",
        str(out),
        "--executor",
        "dask",
        "--workers",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "12 stacks" in proc.stdout and "12 done, 0 skipped, 0 failed" in proc.stdout
    summary = read_summary(out)
    assert sorted(summary) == NAMES
    for name in NAMES:
        assert summary[name]["status"] == "done"
        assert summary[name]["output"] == str((out / name).resolve())
        assert files(out / name) == OUTPUTS
        assert_same_result(out / name, sequential / name)
    assert (out / "batch_summary.md").read_text().count("| done |") == 12


def test_batch_writes_what_dff_run_writes(root: Path, sequential: Path) -> None:
    out = root / "single"
    proc = dff("run", str(root / "cheap.yaml"), str(root / "stacks" / "s03"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert files(out) == files(sequential / "s03") == OUTPUTS
    assert_same_result(out, sequential / "s03")


# -- 2. a worker dies mid-batch -------------------------------------------------
class KillWhileWriting(WorkerPlugin):
    """Worker plugin (runs in each worker process): the first time any worker writes
    ``depth_color.png`` of stack ``target`` (after the .npy files), it SIGKILLs itself."""

    name = "kill-while-writing"

    def __init__(self, target: str, marker: str) -> None:
        self.target, self.marker = target, marker

    def setup(self, worker) -> None:
        import dffcore.io.outputs

        original = dffcore.io.outputs.write_image
        target, marker = self.target, self.marker

        def write_image(path, image):
            path = Path(path)
            if path.name == "depth_color.png" and path.parent.name == target:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass  # killed once already
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            original(path, image)

        dffcore.io.outputs.write_image = write_image

    def teardown(self, worker) -> None:
        pass

    def transition(self, key, start, finish, **kwargs) -> None:
        pass


def test_dask_survives_a_worker_killed_mid_write(root: Path, sequential: Path) -> None:
    distributed = pytest.importorskip("distributed")
    marker = root / "killed.marker"
    out = root / "out_killed"
    spec = load_spec(root / "cheap.yaml")
    stacks = collect_stacks([str(root / "stacks" / "*")])
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(KillWhileWriting("s05", str(marker)))
        rows = run_batch(spec, stacks, out, executor="dask", client=client)
    assert marker.is_file(), "the plugin never killed a worker"
    assert int(marker.read_text()) != os.getpid()
    assert [r["name"] for r in rows] == NAMES  # each stack once, in the order given
    assert [r["status"] for r in rows] == ["done"] * 12, [r["error"] for r in rows]
    summary = read_summary(out)
    assert [summary[n]["status"] for n in NAMES] == ["done"] * 12
    for name in NAMES:
        assert files(out / name) == OUTPUTS  # complete, no temp files left
        assert is_complete(out / name, spec)
        assert_same_result(out / name, sequential / name)


# -- 3. resumable ----------------------------------------------------------------
def stat_all(out: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    return {
        f"{n}/{p.name}": (p.stat().st_mtime_ns, p.stat().st_ino)
        for n in names
        for p in (out / n).iterdir()
    }


def test_rerun_skips_finished_stacks_and_force_recomputes(root: Path) -> None:
    names = ["s00", "s01", "s02"]
    out = root / "out_resume"
    args = ["batch", str(root / "cheap.yaml"), *(str(root / "stacks" / n) for n in names)]
    assert dff(*args, "-o", str(out)).returncode == 0
    before = stat_all(out, names)

    proc = dff(*args, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "0 done, 3 skipped, 0 failed" in proc.stdout
    assert {r["status"] for r in read_summary(out).values()} == {"skipped"}
    assert stat_all(out, names) == before  # not rewritten: same mtime, same inode

    (out / "s01" / "run.json").unlink()  # an interrupted stack: no run.json
    proc = dff(*args, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    status = {n: r["status"] for n, r in read_summary(out).items()}
    assert status == {"s00": "skipped", "s01": "done", "s02": "skipped"}
    assert files(out / "s01") == OUTPUTS

    proc = dff(*args, "-o", str(out), "--set", "focus.params.window=5")  # another spec
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_summary(out).values()} == {"done"}

    proc = dff(*args, "-o", str(out), "--set", "focus.params.window=5")
    assert {r["status"] for r in read_summary(out).values()} == {"skipped"}
    before = stat_all(out, names)
    proc = dff(*args, "-o", str(out), "--set", "focus.params.window=5", "--force")
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_summary(out).values()} == {"done"}
    after = stat_all(out, names)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in after)  # every file rewritten


# -- 4. one bad stack --------------------------------------------------------------
def test_bad_stack_fails_alone(root: Path) -> None:
    stacks = root / "with_bad"
    for n in ("s00", "s01", "s02"):
        shutil.copytree(root / "stacks" / n, stacks / n)
    shutil.copytree(root / "stacks" / "s03", stacks / "bad")
    (stacks / "bad" / "frame_001.png").write_bytes(b"this is not a PNG file")
    out = root / "out_bad"
    proc = dff("batch", str(root / "cheap.yaml"), str(stacks / "*"), "-o", str(out), "--jobs", "2")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    bad_frame = (stacks / "bad" / "frame_001.png").resolve()
    expected = f"{bad_frame}: not a readable image (supported: "
    summary = read_summary(out)
    assert summary["bad"]["status"] == "failed"
    assert summary["bad"]["error"].startswith(expected)
    assert "\n" not in summary["bad"]["error"]
    assert f"failed: bad: {expected}" in proc.stdout
    assert "3 done, 0 skipped, 1 failed" in proc.stdout
    assert [summary[n]["status"] for n in ("s00", "s01", "s02")] == ["done"] * 3
    assert not (out / "bad" / "run.json").exists()


# -- 5. dask missing ---------------------------------------------------------------
def test_dask_missing_is_one_line(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from dffcore import cli

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    spec = load_spec(root / "cheap.yaml")
    with pytest.raises(DffError, match=r"pip install 'dffcore\[dask\]'") as info:
        run_batch(spec, [root / "stacks" / "s00"], tmp_path / "out", executor="dask")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # refused before any work

    stack, out = str(root / "stacks" / "s00"), str(tmp_path / "out")
    code = cli.main(["batch", str(root / "cheap.yaml"), stack, "-o", out, "--executor", "dask"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "pip install 'dffcore[dask]'" in err


# -- naming, stack lists, up-front errors ----------------------------------------------
def test_unique_names_by_hand() -> None:
    stacks = ["a/scene", "b/scene", "c/scene-2", "d/other", "e/scene"]
    # scene-2 is another stack's own name, so the second 'scene' becomes scene-3
    assert unique_names(stacks) == ["scene", "scene-3", "scene-2", "other", "scene-4"]


def test_collect_stacks_from_list_file(tmp_path: Path) -> None:
    for name in ("x1", "x2", "x10", "y"):
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "data" / "x3.txt").write_text("a file, not a stack")
    listing = tmp_path / "list.txt"
    listing.write_text("# my stacks\n\ndata/y\n  # indented comment\ndata/x*\ndata/y\n")
    got = collect_stacks([f"@{listing}"])
    assert [p.name for p in got] == ["y", "x1", "x2", "x10"]  # natural order, no duplicate

    with pytest.raises(DffError, match=r"list.txt:2: data/nothing\*: the pattern matches no"):
        listing.write_text("data/y\ndata/nothing*\n")
        collect_stacks([f"@{listing}"])
    with pytest.raises(DffError, match="no such folder"):
        collect_stacks([str(tmp_path / "missing")])
    with pytest.raises(DffError, match="is a file"):
        collect_stacks([str(tmp_path / "data" / "x3.txt")])
    listing.write_text("# nothing here\n")
    with pytest.raises(DffError, match="lists no stack folders"):
        collect_stacks([f"@{listing}"])


def test_cli_errors_before_any_work(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = dff("batch", str(root / "cheap.yaml"), str(tmp_path / "none*"), "-o", str(out))
    assert proc.returncode == 2
    pattern = tmp_path / "none*"
    assert proc.stderr.strip() == (
        f"dff: error: {pattern}: the pattern matches no folders or stack files"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("focus: lapm\naggregate: argmaks\n")
    proc = dff("batch", str(bad), str(root / "stacks" / "s00"), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"dff: error: {bad}: aggregate.name:")
    assert "Traceback" not in proc.stderr
    stack = str(root / "stacks" / "s00")
    proc = dff("batch", str(root / "cheap.yaml"), stack, "-o", str(out), "--workers", "2")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "dff: error: --workers needs --executor dask (the local executor uses --jobs)"
    )
    assert not out.exists()


def test_output_folder_inside_stacks_is_refused(root: Path, tmp_path: Path) -> None:
    stack = tmp_path / "data" / "s00"
    shutil.copytree(root / "stacks" / "s00", stack)
    spec = load_spec(root / "cheap.yaml")
    with pytest.raises(DffError, match="into the stack folder itself"):
        run_batch(spec, [stack], tmp_path / "data")
    assert files(stack) == files(root / "stacks" / "s00")


# -- a retried task overwrites a half-written folder cleanly ---------------------------
def test_run_one_replaces_a_half_written_folder(root: Path, tmp_path: Path) -> None:
    spec = load_spec(root / "cheap.yaml")
    out = tmp_path / "s02"
    out.mkdir()
    stale = {"spec": {"focus": "other"}, "outputs": ["old_extra.npy", "run.json"]}
    (out / "run.json").write_text(json.dumps(stale))  # an older result of another spec
    (out / "old_extra.npy").write_bytes(b"old")
    (out / ".depth_index.npy.k1ll3d.tmp").write_bytes(b"half")  # a killed atomic write
    (out / "notes.txt").write_text("the user's")
    assert not is_complete(out, spec)

    row = run_one(spec, root / "stacks" / "s02", out)
    assert row["status"] == "done" and row["error"] == "" and row["name"] == "s02"
    assert files(out) == OUTPUTS | {"notes.txt"}
    assert is_complete(out, spec)
    record = json.loads((out / "run.json").read_text())
    assert spec_hash(record["spec"]) == spec.spec_hash()
    assert sorted(record["outputs"]) == sorted(OUTPUTS)

    (out / "confidence.png").unlink()  # a listed output missing: not complete
    assert not is_complete(out, spec)


# -- resume keys on the stack's files, not on its name ---------------------------------------
def test_resume_checks_the_stacks_files_not_their_names(root: Path, tmp_path: Path) -> None:
    spec_file = str(root / "cheap.yaml")
    x, y = tmp_path / "x" / "s", tmp_path / "y" / "s"  # two stacks with the same name
    shutil.copytree(root / "stacks" / "s00", x)
    shutil.copytree(root / "stacks" / "s01", y)
    out = tmp_path / "bt"
    assert dff("batch", spec_file, str(x), str(y), "-o", str(out)).returncode == 0
    first = {r["name"]: r["stack"] for r in read_summary(out).values()}
    assert first == {"s": str(x), "s-2": str(y)}

    # the same stacks in the other order: "s" is now y, whose result is not in out/s
    proc = dff("batch", spec_file, str(y), str(x), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {n: r["status"] for n, r in read_summary(out).items()} == {"s": "done", "s-2": "done"}
    record = json.loads((out / "s" / "run.json").read_text())
    assert Path(record["stack"]["frames"][0]).parent == y

    proc = dff("batch", spec_file, str(y), str(x), "-o", str(out))  # nothing changed: skip
    assert {r["status"] for r in read_summary(out).values()} == {"skipped"}

    frame = sorted(y.glob("*.png"))[1]  # replace one frame of y: same name, new content
    shutil.copy(sorted(x.glob("*.png"))[1], frame)
    proc = dff("batch", spec_file, str(y), str(x), "-o", str(out))
    assert {n: r["status"] for n, r in read_summary(out).items()} == {
        "s": "done",
        "s-2": "skipped",
    }
    sidecar = x / "focus_distances.txt"  # the sidecar is part of the stack too
    sidecar.write_text(sidecar.read_text() + "\n")
    proc = dff("batch", spec_file, str(y), str(x), "-o", str(out))
    assert {n: r["status"] for n, r in read_summary(out).items()} == {
        "s": "skipped",
        "s-2": "done",
    }
