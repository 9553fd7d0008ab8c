"""Plugin discovery: third-party packages, broken plugins, duplicates, listing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
import venv
from pathlib import Path

import numpy as np
import pytest
import yaml

from dffcore import hookimpl, load_spec, read_stack, run_pipeline
from dffcore.core.components import FocusMeasure
from dffcore.core.errors import DffError
from dffcore.core.registry import Registry, Source

from .conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "dff-example-measure"


def _plugin_module(*classes: type) -> types.ModuleType:
    mod = types.ModuleType("fake_plugin")

    @hookimpl
    def dffcore_register(registry) -> None:
        for cls in classes:
            registry.add(cls)

    mod.dffcore_register = dffcore_register
    return mod


class Flat(FocusMeasure):
    """Returns zeros."""

    name = "log"  # clashes with the built-in

    def measure(self, frame: np.ndarray) -> np.ndarray:
        return np.zeros(frame.shape[:2], np.float32)


def test_builtins_come_through_the_entry_point_group() -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    entry = reg.get("focus", "log")
    assert entry.source.distribution == "dffcore"
    assert {"homography", "none"} <= set(reg.names("align"))
    assert {"graphcut", "weighted-median"} <= set(reg.names("regularize"))


def test_duplicate_names_are_an_error_naming_both_sources() -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    reg.register(_plugin_module(Flat), Source("clash", "clashing-dist", "9.9"))
    with pytest.raises(DffError) as err:
        reg.get("focus", "log")
    msg = str(err.value)
    assert "dffcore" in msg and "clashing-dist" in msg
    assert any("defined twice" in e.message for e in reg.errors)
    assert reg.get("align", "homography")  # the others still work


def test_broken_plugin_is_reported_and_the_rest_still_load() -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)

    bad = types.ModuleType("bad_plugin")

    @hookimpl
    def dffcore_register(registry) -> None:
        raise RuntimeError("boom")

    bad.dffcore_register = dffcore_register
    reg.register(bad, Source("bad", "bad-dist", "1"))
    assert [e.plugin for e in reg.errors] == ["bad (bad-dist 1)"]
    assert "boom" in reg.errors[0].message
    assert "log" in reg.names("focus")


def test_unknown_name_suggests_the_closest() -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    with pytest.raises(DffError, match=r"unknown focus measure 'lgo'. Did you mean 'log'\?"):
        reg.get("focus", "lgo")


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh virtual environment with the fixture package really built and installed.

    The venv sees this environment's packages (dffcore and its dependencies) through a
    ``.pth`` file, and pip installs the plugin into it from source, offline, the way a
    user installs a plugin package. Returns the environment for running ``dff`` in it.
    """
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False)
    py = root / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = [p for p in sys.path if p.endswith("site-packages")]
    # an `import` line in a .pth file runs: addsitedir also processes the outer .pth files
    lines = [f"import site; site.addsitedir({p!r})" for p in outer]
    Path(site, "_outer.pth").write_text("\n".join(lines) + "\n")
    build = tmp_path_factory.mktemp("src") / "pkg"
    shutil.copytree(FIXTURE, build)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(Path(site).glob("dff_example_measure-0.3.1.dist-info"))
    return {"PATH": f"{root / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(root)}


def _dff_in(env: dict[str, str], *args: str, cwd: Path | None = None):
    py = Path(env["VIRTUAL_ENV"]) / "bin" / "python"
    return subprocess.run(
        [str(py), "-m", "dffcore.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=300,
    )


def test_third_party_measure_is_listed_with_its_distribution(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _dff_in(plugin_env, "plugins", "--kind", "focus", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    assert items["example-gradient"]["distribution"] == "dff-example-measure"
    assert items["example-gradient"]["version"] == "0.3.1"
    assert items["example-gradient"]["params"][0]["name"] == "window"
    text = _dff_in(plugin_env, "plugins", "--kind", "focus", cwd=tmp_path).stdout
    assert "example-gradient" in text and "dff-example-measure 0.3.1" in text


def test_third_party_reader_is_listed_and_reads_its_files(
    plugin_env: dict[str, str], synth, tmp_path: Path
) -> None:
    proc = _dff_in(plugin_env, "plugins", "--kind", "read", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = {c["name"]: c for c in json.loads(proc.stdout)["components"]}
    assert items["example-npy"]["distribution"] == "dff-example-measure"
    text = _dff_in(plugin_env, "plugins", "--kind", "read", cwd=tmp_path).stdout
    assert "example-npy" in text and ".npystack" in text
    grey = synth.frames.mean(axis=3).round().astype(np.uint8)  # (N,H,W)
    path = tmp_path / "sweep.npystack"
    with open(path, "wb") as fh:
        np.save(fh, grey)
    out = tmp_path / "out"
    proc = _dff_in(plugin_env, "run", "fast", str(path), "-o", str(out), "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    index = np.load(out / "depth_index.npy")
    assert np.median(np.abs(index - synth.index)) < 1.0  # the reader's frames drove it
    code = "import sys; from dffcore import read_stack; print(read_stack(sys.argv[1]).metadata)"
    py = Path(plugin_env["VIRTUAL_ENV"]) / "bin" / "python"
    meta = subprocess.run(
        [str(py), "-c", code, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    assert "'reader': 'example-npy'" in meta.stdout


def test_pipeline_uses_third_party_measure_by_name(
    plugin_env: dict[str, str], synth_dir: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(
        yaml.safe_dump({"focus": {"name": "example-gradient", "params": {"window": 7}}})
    )
    out = tmp_path / "out"
    proc = _dff_in(plugin_env, "run", str(spec), str(synth_dir), "-o", str(out), "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "run.json").read_text())
    focus = next(c for c in record["versions"]["components"] if c["stage"] == "focus")
    assert focus["distribution"] == "dff-example-measure"
    assert record["spec"]["focus"] == {"name": "example-gradient", "params": {"window": 7}}
    truth = np.load(synth_dir / "ground_truth" / "index.npy")
    index = np.load(out / "depth_index.npy")
    assert np.median(np.abs(index - truth)) < 1.0  # the measure really drove the result


def test_plugin_autoload_can_be_disabled(plugin_env: dict[str, str], tmp_path: Path) -> None:
    env = {**plugin_env, "DFFCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = _dff_in(env, "plugins", "--kind", "focus", "--json", cwd=tmp_path)
    names = {c["name"] for c in json.loads(proc.stdout)["components"]}
    assert "example-gradient" not in names and "log" in names


def test_listing_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, dffcore.core.registry as r; r.default_registry();"
        "print(sorted(m for m in ('torch','gco','maxflow','torchvision') if m in sys.modules))"
    )
    env = {**os.environ, "DFFCORE_NO_CACHE": "1"}  # a full load: every plugin imported
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_api_runs_with_an_explicit_registry(synth_dir: Path) -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)

    class Lap(FocusMeasure):
        """Squared Laplacian."""

        name = "lap2"

        def measure(self, frame: np.ndarray) -> np.ndarray:
            import cv2

            g = frame[..., 1].astype(np.float32)
            return cv2.Laplacian(g, cv2.CV_32F) ** 2

    reg.register(_plugin_module(Lap), "test")
    spec = load_spec({"focus": "lap2"}, registry=reg)
    run = run_pipeline(spec, read_stack(synth_dir))
    assert run.result.index.shape == (96, 128)


def test_parameter_types_read_as_python_writes_them() -> None:
    from typing import Literal

    from dffcore.core.registry import type_name

    assert type_name(int | None) == "int | None"
    assert type_name(Literal["sift", "orb"]) == "'sift' | 'orb'"
    assert type_name(list[int]) == "list[int]"
