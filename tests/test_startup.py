"""Start-up: the component index cache (``dffcore.core.plugin_cache``).

``dff plugins`` prints from the cache without importing NumPy, OpenCV or pydantic, and
``dff run`` imports only the plugins a spec names; any change to the installed plugins
rebuilds it, and a broken cache file never breaks a command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dffcore.core import plugin_cache
from dffcore.core.registry import Registry

from .conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "dff-example-measure" / "dff_example_measure"
HEAVY = ("numpy", "cv2", "pydantic", "pluggy", "importlib.metadata", "dffcore_plugins")

#: runs the command line in-process, then prints which of HEAVY it imported (stderr)
PROBE = (
    "import sys\n"
    "from dffcore.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print('IMPORTED', sorted(m for m in {HEAVY!r} + ('dff_example_measure',)"
    " if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


class Env:
    """A cache folder and a folder on PYTHONPATH for a fake plugin distribution."""

    def __init__(self, root: Path) -> None:
        self.cache = root / "cache"
        self.site = root / "site"
        self.cwd = root / "cwd"
        self.site.mkdir()
        self.cwd.mkdir()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DFFCORE_CACHE_DIR": str(self.cache),
            "PYTHONPATH": str(self.site),
            **extra,
        }

    def dff(self, *args: str, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        """Run ``dff ARGS`` in a fresh interpreter; the result and the HEAVY it imported."""
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            capture_output=True,
            text=True,
            env=self.env(**extra),
            cwd=self.cwd,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("IMPORTED")][-1]
        return proc, json.loads(line[len("IMPORTED ") :].replace("'", '"'))

    def cache_files(self) -> list[Path]:
        return sorted(self.cache.glob("plugins-*.json")) if self.cache.is_dir() else []

    def install_plugin(self, version: str = "0.3.1") -> Path:
        """The fixture plugin as an installed distribution (dist-info + entry point)."""
        pkg = self.site / "dff_example_measure"
        shutil.copytree(FIXTURE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
        info = self.site / f"dff_example_measure-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: dff-example-measure\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text("[dffcore]\nexample = dff_example_measure\n")
        return pkg / "__init__.py"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_plugins_from_the_cache_import_nothing_heavy(env: Env) -> None:
    cold, imported = env.dff("plugins")
    assert {"numpy", "pydantic", "dffcore_plugins"} <= set(imported)  # a full load
    assert len(env.cache_files()) == 1
    warm, imported = env.dff("plugins")
    assert imported == []
    assert warm.stdout == cold.stdout and "focus      log" in warm.stdout


@pytest.mark.parametrize(
    "args", [(), ("--json",), ("--kind", "focus"), ("--json", "--kind", "align")]
)
def test_output_is_the_same_with_and_without_the_cache(env: Env, args: tuple[str, ...]) -> None:
    env.install_plugin()
    uncached, _ = env.dff("plugins", *args, DFFCORE_NO_CACHE="1")
    assert not env.cache_files()  # disabled: nothing written
    cold, _ = env.dff("plugins", *args)
    warm, imported = env.dff("plugins", *args)
    assert imported == []
    assert uncached.stdout == cold.stdout == warm.stdout
    assert uncached.stderr.split("IMPORTED")[0] == warm.stderr.split("IMPORTED")[0]
    if "--json" in args:
        assert json.loads(warm.stdout)["errors"] == []
    if args in ((), ("--kind", "focus")):
        assert "example-gradient" in warm.stdout and "dff-example-measure 0.3.1" in warm.stdout


def test_an_edited_plugin_module_rebuilds_the_cache(env: Env) -> None:
    module = env.install_plugin()
    env.dff("plugins", "--kind", "focus")
    text = module.read_text()
    module.write_text(text.replace("Box-summed squared Sobel", "Edited squared Sobel"))
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    proc, imported = env.dff("plugins", "--kind", "focus")
    assert "Edited squared Sobel" in proc.stdout and "dff_example_measure" in imported
    proc, imported = env.dff("plugins", "--kind", "focus")
    assert "Edited squared Sobel" in proc.stdout and imported == []


def test_a_new_or_removed_distribution_rebuilds_the_cache(env: Env) -> None:
    proc, _ = env.dff("plugins", "--kind", "focus")
    assert "example-gradient" not in proc.stdout
    env.install_plugin()
    proc, imported = env.dff("plugins", "--kind", "focus")
    assert "example-gradient" in proc.stdout and "dff_example_measure" in imported
    shutil.rmtree(next(env.site.glob("*.dist-info")))
    proc, _ = env.dff("plugins", "--kind", "focus")
    assert "example-gradient" not in proc.stdout
    # turning third-party plugins off is a different listing too
    shutil.rmtree(env.site / "dff_example_measure")
    env.install_plugin("0.4.0")
    proc, _ = env.dff("plugins", "--kind", "focus")
    assert "dff-example-measure 0.4.0" in proc.stdout
    proc, _ = env.dff("plugins", "--kind", "focus", DFFCORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "example-gradient" not in proc.stdout


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage",
        b'{"format": 1, "fingerprint": ',  # truncated
        b"[1, 2, 3]",
        b'{"format": 999}',
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than json's recursion limit
    ],
)
def test_a_broken_cache_file_is_ignored_and_replaced(env: Env, content: bytes) -> None:
    good, _ = env.dff("plugins", "--json")
    (path,) = env.cache_files()
    path.write_bytes(content)
    proc, imported = env.dff("plugins", "--json")
    assert proc.stdout == good.stdout and "pydantic" in imported
    assert json.loads(path.read_text())["format"] == plugin_cache.FORMAT


def test_a_cache_file_with_wrong_fields_is_ignored(env: Env) -> None:
    good, _ = env.dff("plugins")
    (path,) = env.cache_files()
    data = json.loads(path.read_text())
    data["components"][0]["describe"]["kind"] = "nonsense"
    path.write_text(json.dumps(data))
    proc, imported = env.dff("plugins")
    assert proc.stdout == good.stdout and "pydantic" in imported


def test_an_unwritable_cache_folder_is_ignored(env: Env, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc, _ = env.dff("plugins", "--kind", "align", DFFCORE_CACHE_DIR=str(blocker / "cache"))
    assert "align      homography" in proc.stdout
    assert not proc.stderr.split("IMPORTED")[0].strip()


def test_run_with_the_cache_imports_only_the_named_plugins(env: Env, synth_dir: Path) -> None:
    env.install_plugin()
    spec = env.cwd / "spec.yaml"
    spec.write_text("focus: example-gradient\naggregate: argmax\n")
    _, imported = env.dff("validate", str(spec))  # cold: every plugin imported
    assert "dff_example_measure" in imported
    proc, imported = env.dff("validate", "classic")  # warm, no third-party component named
    assert "OK" in proc.stdout and "dff_example_measure" not in imported
    _, imported = env.dff("validate", str(spec))
    assert "dff_example_measure" in imported
    outs = {}
    for label, extra in (("cached", {}), ("uncached", {"DFFCORE_NO_CACHE": "1"})):
        out = env.cwd / label
        proc, _ = env.dff("run", str(spec), str(synth_dir), "-o", str(out), "-q", **extra)
        outs[label] = out
    for name in ("depth_index.npy", "confidence.npy"):
        np.testing.assert_array_equal(
            np.load(outs["cached"] / name), np.load(outs["uncached"] / name)
        )
    run = json.loads((outs["cached"] / "run.json").read_text())
    assert "dff-example-measure" in json.dumps(run)  # the plugin that ran is recorded


def _index_of(reg: Registry) -> dict:
    plugins, components, files = reg.index_payload()
    return {"plugins": plugins, "components": components, "files": files}


def test_a_stale_index_entry_falls_back_to_the_full_load() -> None:
    full = Registry()
    full.load_entry_points(third_party=False)
    expected = full.get("focus", "log").cls
    for field, value in (("qualname", "NoSuchClass"), ("qualname", "LoG.Params")):
        data = _index_of(full)
        item = next(c for c in data["components"] if c["describe"]["name"] == "log")
        item[field] = value
        reg = Registry.from_index(data)
        assert reg.names("focus") == full.names("focus")
        assert reg.get("focus", "log").cls is expected
        assert reg._index is None  # it loaded everything
    data = _index_of(full)  # a class of the wrong kind or name under the right one
    items = {c["describe"]["name"]: c for c in data["components"]}
    items["log"]["qualname"] = items["lapm"]["qualname"]
    items["log"]["describe"]["module"] = items["lapm"]["describe"]["module"]
    items["log"]["file"] = items["lapm"]["file"]
    assert Registry.from_index(data).get("focus", "log").cls is expected


def test_an_indexed_registry_imports_on_demand_and_suggests_names() -> None:
    full = Registry()
    full.load_entry_points(third_party=False)
    reg = Registry.from_index(_index_of(full))
    assert not any(reg.entries.values())  # nothing imported yet
    assert reg.get("aggregate", "argmax").cls is full.get("aggregate", "argmax").cls
    assert list(reg.entries["aggregate"]) == ["argmax"] and reg._index is not None
    with pytest.raises(Exception, match=r"unknown focus measure 'lgo'. Did you mean 'log'\?"):
        reg.get("focus", "lgo")
    assert reg.describe("focus") == full.describe("focus")


def test_the_fingerprint_sees_installed_distributions(env: Env, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", [str(env.site), str(env.cwd)])
    before = plugin_cache.fingerprint()
    assert before["path"] == []  # folders without distributions do not count
    env.install_plugin()
    after = plugin_cache.fingerprint()
    assert [p[0] for p in after["path"]] == [str(env.site)]
    monkeypatch.setenv("DFFCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert plugin_cache.fingerprint() != after


def test_a_warm_run_imports_only_the_modules_of_its_components(env: Env, synth_dir: Path) -> None:
    """The built-in package imports a component's module when the class is asked for."""
    probe = (
        "import sys\n"
        "from dffcore.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "mods = sorted(m for m in sys.modules if m.startswith('dffcore_plugins.'))\n"
        "print('MODULES', ' '.join(mods), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    spec = env.cwd / "spec.yaml"
    spec.write_text("focus: lapm\naggregate: argmax\n")

    def modules() -> set[str]:
        out = env.cwd / f"out{len(list(env.cwd.iterdir()))}"
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", str(spec), str(synth_dir), "-q", "-o", str(out)],
            capture_output=True,
            text=True,
            env=env.env(),
            cwd=env.cwd,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES")][-1]
        return set(line.split()[1:])

    cold = modules()  # the full load that writes the index imports every module
    assert "dffcore_plugins.regularize.graphcut" in cold
    warm = modules()
    assert {"dffcore_plugins.focus.laplacian", "dffcore_plugins.aggregate.argmax"} <= warm
    unused = ("graphcut", "multiband", "sgm", "rdf", "raft", "homography")
    assert not [m for m in warm if m.rsplit(".", 1)[-1] in unused], sorted(warm)
