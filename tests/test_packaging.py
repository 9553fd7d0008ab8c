"""The wheel installs plugins/ as dffcore_plugins (never a top-level `plugins`).

The wheel is built from a copy of the sources in a temporary folder, so the build leaves
no ``build/`` or ``*.egg-info`` in the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT

#: what the build needs from the checkout
SOURCES = ("dffcore", "plugins", "pipelines", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    before = sorted(p.name for p in ROOT.iterdir())
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before  # no build/ or *.egg-info here
    (wheel,) = out.glob("dffcore-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        names.add("ENTRY_POINTS:" + zf.read(entry).decode())
        return names


def test_every_dffcore_module_is_in_the_wheel(wheel_names: set[str]) -> None:
    for module in (ROOT / "dffcore").rglob("*.py"):
        rel = module.relative_to(ROOT).as_posix()
        assert rel in wheel_names, rel


def test_every_plugin_subpackage_is_in_the_wheel(wheel_names: set[str]) -> None:
    for init in (ROOT / "plugins").rglob("__init__.py"):
        rel = init.relative_to(ROOT / "plugins").as_posix()
        assert f"dffcore_plugins/{rel}" in wheel_names, rel
    for module in (ROOT / "plugins").rglob("*.py"):
        rel = module.relative_to(ROOT / "plugins").as_posix()
        assert f"dffcore_plugins/{rel}" in wheel_names, rel


def test_no_top_level_plugins_or_pipelines_package(wheel_names: set[str]) -> None:
    tops = {name.split("/")[0] for name in wheel_names}
    assert "plugins" not in tops and "pipelines" not in tops
    assert {"dffcore", "dffcore_plugins"} <= tops


def test_pipelines_and_entry_point_ship(wheel_names: set[str]) -> None:
    for spec in (ROOT / "pipelines").glob("*.yaml"):
        assert f"dffcore/pipelines/{spec.name}" in wheel_names
    entry = next(n for n in wheel_names if n.startswith("ENTRY_POINTS:"))
    assert "[dffcore]\nbuiltin = dffcore_plugins" in entry
    assert "dff = dffcore.cli:main" in entry
    assert "dffcore/py.typed" in wheel_names


def test_no_source_file_is_ignored_by_git() -> None:
    """A module that .gitignore hides would be missing from every clone."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *SOURCES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    hidden = [p for p in proc.stdout.splitlines() if "__pycache__" not in p]
    assert hidden == []
