"""Shared fixtures: small synthetic stacks (rendered, never downloaded) and paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dffcore.eval.synth import SynthStack, render_stack, write_stack

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
PIPELINES = ROOT / "pipelines"


def pytest_configure(config: pytest.Config) -> None:
    """Test one consistent copy: this checkout, installed editable (``pip install -e``).

    Otherwise ``dffcore`` could come from the checkout and ``dffcore_plugins`` (or the
    ``dff`` command) from an older copy in site-packages. The plugin index cache of the
    whole session (its subprocesses too) goes to a temporary folder, never ~/.cache.
    """
    cache = tempfile.mkdtemp(prefix="dffcore-test-cache-")
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ["DFFCORE_CACHE_DIR"] = cache
    import dffcore_plugins

    import dffcore

    for module, folder in ((dffcore, ROOT / "dffcore"), (dffcore_plugins, ROOT / "plugins")):
        where = Path(module.__file__).resolve().parent
        if where != folder:
            raise pytest.UsageError(
                f"{module.__name__} is imported from {where}, not from this checkout "
                f"({folder}): install it editable with pip install -e '.[test]'"
            )


def dff(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the ``dff`` command line of this environment in a subprocess, as a user would."""
    exe = shutil.which("dff", path=str(Path(sys.executable).parent))
    cmd = [exe, *args] if exe else [sys.executable, "-m", "dffcore.cli", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def stderr_lines(stderr: str) -> list[str]:
    """The non-empty lines of ``dff``'s stderr, licence notices left out."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(LICENCE_LINE)]


#: how ``dff`` starts a licence notice on stderr
LICENCE_LINE = "dff: warning: licence: "


def data_folder(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"sample stack {name} not available: {path} is missing (../shared/data)")
    return path


@pytest.fixture(scope="session")
def synth() -> SynthStack:
    """A small synthetic stack with ground truth: 8 frames, 96x128."""
    return render_stack("default", n_frames=8, size=(96, 128), seed=1)


@pytest.fixture(scope="session")
def synth_dir(synth: SynthStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth`` written as a stack folder (frames, focus distances, ground truth)."""
    folder = tmp_path_factory.mktemp("synth") / "stack"
    write_stack(synth, folder)
    return folder
