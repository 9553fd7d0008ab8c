"""Hostile faults (issue 14): bad plugin answers, plugins that exit, non-finite numbers,
stale or mixed output folders, unwritable or full disks, temp files of killed runs.

Each fault must give one ``dff: error:`` line naming the plugin, file or folder, exit 2,
and leave the output folder holding one consistent run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from dffcore import hookimpl
from dffcore.cli import main
from dffcore.core import registry as registry_module
from dffcore.core.components import Compositor, FocusMeasure, Regularizer
from dffcore.core.registry import Registry, Source
from dffcore.run import frames as frames_module
from dffcore.run.scratch import process_tag

#: built-in components without alignment (the test frames are noise)
PLAIN_SPEC = "align: none\nfocus: log\naggregate: argmax\nregularize: [weighted-median]\n"
WHO = "(bad, from baddist 1.0)"


# -- helpers ------------------------------------------------------------------------------
def _frames(folder: Path, n: int = 4, size: tuple[int, int] = (40, 50)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (*size, 3), np.uint8))
    return folder


def _dff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """``dff ARGS`` in this process: exit code, its ``dff: error`` lines, all of stderr."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.startswith("dff: error")], err


def _error(capsys: pytest.CaptureFixture[str], *args: str, code: int = 2) -> str:
    got, errors, err = _dff(capsys, *args)
    assert got == code, err
    assert len(errors) == 1, err
    assert "please report it" not in err
    return errors[0]


def _dead_pid() -> int:
    """The id of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def plain(tmp_path: Path) -> str:
    """A pipeline file of :data:`PLAIN_SPEC`."""
    path = tmp_path / "plain.yaml"
    path.write_text(PLAIN_SPEC)
    return str(path)


@pytest.fixture
def plug(monkeypatch: pytest.MonkeyPatch):
    """Register component classes as the third-party distribution ``baddist 1.0`` in the
    registry the command line uses."""

    def install(*classes: type) -> Registry:
        reg = Registry()
        reg.load_entry_points(third_party=False)
        mod = types.ModuleType("bad_plugin")

        @hookimpl
        def dffcore_register(registry) -> None:
            for cls in classes:
                registry.add(cls)

        mod.dffcore_register = dffcore_register
        reg.register(mod, Source("badplugin", "baddist", "1.0"))
        assert not reg.errors, reg.errors
        monkeypatch.setattr(registry_module, "_default", reg)
        return reg

    return install


def _measure(answer) -> type:
    return type("Bad", (FocusMeasure,), {"__doc__": "Test.", "name": "bad", "measure": answer})


def _regulariser(change) -> type:
    def call(self, result, volume, aligned, ctx):
        return change(result)

    return type("Bad", (Regularizer,), {"__doc__": "Test.", "name": "bad", "__call__": call})


def _sharp(frame: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_32F) ** 2


def _sparse_nan(self, frame: np.ndarray) -> np.ndarray:
    out = _sharp(frame)
    out[::7, ::7] = np.nan  # 1 pixel in 49
    return out


# -- 1. plugin results are checked --------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda self, f: _sharp(f)[:1], "shape (1, 50)"),
        (lambda self, f: 1.0, "float"),
        (lambda self, f: _sharp(f).astype(object), "object"),
        (lambda self, f: _sharp(f).astype(np.complex64), "complex64"),
        (_sparse_nan, "NaN"),
    ],
    ids=["one-row", "scalar", "object", "complex", "sparse-nan"],
)
def test_focus_measure_answers_are_checked(
    plug, capsys, tmp_path: Path, answer, words: str
) -> None:
    plug(_measure(answer))
    stack = _frames(tmp_path / "stack")
    line = _error(
        capsys, "run", _spec(tmp_path, "focus: bad\n"), str(stack), "-o", str(tmp_path / "o")
    )
    assert f"focus {WHO}" in line and words in line, line
    assert not any((tmp_path / "o").iterdir())  # nothing written


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r.replace(index=r.index[:1]), "the depth index of shape (1, 50)"),
        (lambda r: r.replace(confidence=np.float32(0.5)), "the confidence as float32"),
        (lambda r: r.replace(index=r.index.astype(np.complex64)), "complex64"),
        (lambda r: r.replace(index=r.index.astype(object)), "object"),
        (lambda r: r.replace(confidence=np.full_like(r.confidence, np.nan)), "NaN"),
        (lambda r: {"index": r.index}, "expected a DepthResult"),
    ],
    ids=["one-row", "scalar", "complex", "object", "nan", "dict"],
)
def test_regulariser_answers_are_checked(plug, capsys, tmp_path: Path, change, words: str) -> None:
    plug(_regulariser(change))
    stack = _frames(tmp_path / "stack")
    spec = _spec(tmp_path, "regularize: [bad]\n")
    line = _error(capsys, "run", spec, str(stack), "-o", str(tmp_path / "o"))
    assert f"regularize[0] {WHO}" in line and words in line, line


def test_compositor_of_the_wrong_shape_is_refused(plug, capsys, tmp_path: Path) -> None:
    def call(self, result, volume, aligned, ctx):
        return aligned.frames[0, :, :, 0]  # grey, (H,W): no channel axis

    plug(type("Bad", (Compositor,), {"__doc__": "Test.", "name": "bad", "__call__": call}))
    stack = _frames(tmp_path / "stack")
    spec = _spec(tmp_path, "composite: bad\n")
    line = _error(capsys, "run", spec, str(stack), "-o", str(tmp_path / "o"))
    assert f"composite {WHO}" in line and "(40, 50, 3)" in line, line


# -- 2. exceptions and sys.exit() at the plugin boundary ----------------------------------
def test_sys_exit_in_measure_is_an_error_naming_the_plugin(plug, capsys, tmp_path: Path) -> None:
    def leave(self, frame):
        sys.exit(0)

    plug(_measure(leave))
    stack = _frames(tmp_path / "stack")
    line = _error(
        capsys, "run", _spec(tmp_path, "focus: bad\n"), str(stack), "-o", str(tmp_path / "o")
    )
    assert line.startswith(f"dff: error: focus {WHO}: plugin raised SystemExit(0)"), line
    assert not any((tmp_path / "o").iterdir())  # nothing written


def test_plugin_exception_names_plugin_distribution_and_stage(plug, capsys, tmp_path: Path) -> None:
    def boom(self, frame):
        raise ValueError("boom")

    plug(_measure(boom))
    stack = _frames(tmp_path / "stack")
    line = _error(
        capsys, "run", _spec(tmp_path, "focus: bad\n"), str(stack), "-o", str(tmp_path / "o")
    )
    assert line == f"dff: error: focus {WHO}: plugin raised ValueError: boom"


def test_builtin_component_bug_stays_an_internal_error(
    plain: str, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dffcore_plugins.aggregate.argmax import Argmax

    def broken(self, volume, aligned, ctx):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(Argmax, "__call__", broken)
    stack = _frames(tmp_path / "stack")
    code, _, err = _dff(capsys, "run", plain, str(stack), "-o", str(tmp_path / "o"))
    assert (
        code == 1 and "internal error: ZeroDivisionError: bug" in err and "please report it" in err
    )


def test_sys_exit_while_importing_a_plugin_is_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = metadata.EntryPoint("exiting", "exiting_plugin", registry_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda group: [ep])
    reg = Registry()
    reg.load_entry_points(third_party=True)  # must not exit
    assert [e.plugin for e in reg.errors] == ["exiting"]
    assert "SystemExit" in reg.errors[0].message


# -- 3. run.json is strict JSON -----------------------------------------------------------
def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"run.json holds {token}")

    return json.loads(text, parse_constant=refuse)


def test_run_json_never_holds_nan_or_infinity(
    plain: str, capsys, monkeypatch, tmp_path: Path
) -> None:
    from dffcore.run import engine

    real = engine.process

    def poisoned(*args, **kwargs):
        result, volume = real(*args, **kwargs)
        result.diagnostics.update(
            inf=float("inf"), nan=np.float32("nan"), arr=np.array([1.0, -np.inf])
        )
        return result, volume

    monkeypatch.setattr(engine, "process", poisoned)
    stack = _frames(tmp_path / "stack")
    code, _, err = _dff(capsys, "run", plain, str(stack), "-o", str(tmp_path / "o"))
    assert code == 0, err
    record = _strict((tmp_path / "o" / "run.json").read_text())
    assert record["diagnostics"]["inf"] is None and record["diagnostics"]["nan"] is None
    assert record["diagnostics"]["arr"] == [1.0, None]
    from dffcore.io.outputs import finite_json

    assert finite_json({"a": (np.float64("nan"), 2)}) == {"a": [None, 2]}


@pytest.mark.parametrize("size", [1e30, 2.0**62, np.inf], ids=["1e30", "2^62", "inf"])
def test_absurd_external_flows_are_refused_naming_the_file(
    capsys, tmp_path: Path, size: float
) -> None:
    stack = _frames(tmp_path / "stack")
    flows = tmp_path / "flows"
    flows.mkdir()
    for i in range(4):
        field = np.zeros((40, 50, 2), np.float64)
        if i == 2:
            field[5, 5] = size
        np.save(
            flows / f"flow_{i:03d}.npy", field.astype(np.int64 if size == 2.0**62 else np.float64)
        )
    spec = _spec(
        tmp_path,
        f"align:\n  name: external-flow\n  params: {{folder: {flows}, mode: to-reference}}\n",
    )
    line = _error(capsys, "run", spec, str(stack), "-o", str(tmp_path / "o"))
    assert str(flows / "flow_002.npy") in line, line
    assert "infinite" in line if size == np.inf else "diagonal" in line, line
    assert not any((tmp_path / "o").iterdir())  # nothing written


# -- 4. an output folder holds one consistent run -----------------------------------------
def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_rerun_drops_files_of_the_earlier_run(
    plain: str, capsys, synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    code, _, err = _dff(capsys, "run", plain, str(synth_dir), "-o", str(out), "--ply")
    assert code == 0, err
    assert {"depth.npy", "depth_metres.png", "points.ply"} <= _listing(out)
    nodist = tmp_path / "nodist"
    shutil.copytree(synth_dir, nodist)
    (nodist / "focus_distances.txt").unlink()
    code, _, err = _dff(capsys, "run", plain, str(nodist), "-o", str(out))
    assert code == 0, err
    record = _strict((out / "run.json").read_text())
    assert _listing(out) == set(record["outputs"])
    assert not {"depth.npy", "depth_metres.png", "points.ply"} & _listing(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_rerun_leaves_the_earlier_run_untouched(
    plain: str, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dffcore.io import outputs

    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def dies(path, array):  # the second .npy file: a writer killed half-way
        calls.append(path)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        outputs.atomic_write_bytes(path, b"new")

    monkeypatch.setattr(outputs, "write_npy", dies)
    line = _error(capsys, "run", plain, str(stack), "-o", str(out))
    assert str(out) in line and "Input/output error" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_leftovers_of_dead_runs_are_removed(plain: str, capsys, tmp_path: Path) -> None:
    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    dead = f"{_dead_pid()}-12345"
    for name in (f".o.dff-tmp-{dead}", f".o.dff-old-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "depth_index.npy").write_bytes(b"half")
    live = tmp_path / f".o.dff-tmp-{process_tag()}x"  # not a name dffcore makes: kept
    live.mkdir()
    (out / ".depth.npy.k2j4h1ab.tmp").write_bytes(b"killed writer")
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == [live.name]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_folder_set_aside_by_a_run_killed_mid_swap_is_put_back(
    plain: str, capsys, tmp_path: Path
) -> None:
    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    aside = tmp_path / f".o.dff-old-{_dead_pid()}-7"
    out.rename(aside)  # killed between setting the old folder aside and the swap
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    assert (out / "notes.txt").read_text() == "mine" and not aside.exists()


def test_user_files_of_a_run_killed_after_the_swap_are_moved_back(
    plain: str, capsys, tmp_path: Path
) -> None:
    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    aside = tmp_path / f".o.dff-old-{_dead_pid()}-7"
    shutil.copytree(out, aside)  # the earlier run, set aside, with the user's file
    (aside / "notes.txt").write_text("mine")
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    assert (out / "notes.txt").read_text() == "mine" and not aside.exists()


def test_user_files_survive_a_rerun_and_stale_outputs_do_not(
    plain: str, capsys, tmp_path: Path
) -> None:
    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "extra").mkdir()
    (out / "extra" / "a.txt").write_text("also mine")
    (out / "depth.npy").write_bytes(b"stale output of another run")
    (out / ".confidence.npy.x1y2z3ab.tmp").write_bytes(b"killed writer")
    assert _dff(capsys, "run", plain, str(stack), "-o", str(out))[0] == 0
    record = _strict((out / "run.json").read_text())
    assert _listing(out) == set(record["outputs"]) | {"notes.txt", "extra"}
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "extra" / "a.txt").read_text() == "also mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- 5. unwritable or full output folders -------------------------------------------------
def test_unwritable_parent_is_refused_before_the_work(plain: str, capsys, tmp_path: Path) -> None:
    target = Path("/sys/kernel")
    try:
        (Path("/sys") / f"dff-probe-{os.getpid()}").mkdir()
    except OSError:
        pass
    else:  # pragma: no cover - a writable /sys: nothing read-only to test with
        (Path("/sys") / f"dff-probe-{os.getpid()}").rmdir()
        pytest.skip("/sys is writable here")
    if not target.is_dir():
        pytest.skip("no /sys/kernel")
    stack = _frames(tmp_path / "stack")
    line = _error(capsys, "run", plain, str(stack), "-o", str(target))
    assert "dff: error: /sys: cannot write the output folder kernel here" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_refused(
    plain: str, capsys, tmp_path: Path
) -> None:  # pragma: no cover
    stack = _frames(tmp_path / "stack")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        line = _error(capsys, "run", plain, str(stack), "-o", str(parent / "o"))
    finally:
        parent.chmod(0o755)
    assert str(parent) in line and "cannot write" in line


def _full_disk(path, array) -> None:
    with open("/dev/full", "wb") as f:
        f.write(np.asarray(array).tobytes())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_while_writing_outputs(plain: str, capsys, monkeypatch, tmp_path: Path) -> None:
    from dffcore.io import outputs

    monkeypatch.setattr(outputs, "write_npy", _full_disk)
    stack = _frames(tmp_path / "stack")
    out = tmp_path / "o"
    line = _error(capsys, "run", plain, str(stack), "-o", str(out))
    assert f"dff: error: {out}: no space left" in line and "MB needed" in line
    assert not any(out.iterdir()) and not list(tmp_path.glob(".o.*"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_while_writing_temp_frames(
    plain: str, capsys, monkeypatch, tmp_path: Path
) -> None:
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and Path(path).name == "aligned.raw":
            return open("/dev/full", mode, *args, **kwargs)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(frames_module, "open", full_open, raising=False)
    stack = _frames(tmp_path / "stack")
    line = _error(capsys, "run", plain, str(stack), "-o", str(tmp_path / "o"), "--memory", "1GB")
    assert f"dff: error: {temp}" in line and "no space left" in line and "MB needed" in line
    assert list(temp.iterdir()) == []


# -- 6. temp folders of killed --memory runs ----------------------------------------------
def test_temp_frames_of_dead_runs_are_removed(
    plain: str, capsys, monkeypatch, tmp_path: Path
) -> None:
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = temp / f"dffcore-{_dead_pid()}-4242-abc123"
    reused = temp / f"dffcore-{os.getpid()}-1-def456"  # this pid, another start time
    live = temp / f"dffcore-{process_tag()}-ghi789"  # this very process: kept
    other = temp / "dffcore-notours"  # no pid in the name: not ours to judge
    for folder in (dead, reused, live, other):
        folder.mkdir()
        (folder / "aligned.raw").write_bytes(b"x" * 100)
    stack = _frames(tmp_path / "stack")
    code, _, err = _dff(
        capsys, "run", plain, str(stack), "-o", str(tmp_path / "o"), "--memory", "1GB"
    )
    assert code == 0, err
    assert sorted(p.name for p in temp.iterdir()) == sorted([live.name, other.name])


@pytest.mark.parametrize("context", [lambda self: 1 / 0, lambda self: -1, lambda self: "x"])
def test_a_plugins_context_is_asked_at_the_plugin_boundary(
    plug, capsys, tmp_path: Path, context
) -> None:
    cls = _regulariser(lambda result: result)
    cls.context = context
    plug(cls)
    stack = _frames(tmp_path / "stack")
    spec = _spec(tmp_path, "align: none\nfocus: log\naggregate: argmax\nregularize: [bad]\n")
    line = _error(capsys, "run", spec, str(stack), "-o", str(tmp_path / "o"), "--memory", "1GB")
    assert line.startswith(f"dff: error: regularize[0] {WHO}: ")
