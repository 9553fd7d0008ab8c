"""Hostile or absurd pipeline input (issue 14): one line, exit 2, bounded time and memory.

Alias bombs, deep nesting, duplicate keys, non-finite and huge numbers, absurd memory
budgets, ``--set`` mistakes blamed on the file, plugin name clashes blamed on the
built-in: each must give ``dff: error:`` naming the culprit, never a traceback.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dffcore.core.components import FocusMeasure
from dffcore.core.errors import DffError
from dffcore.core.hookspec import hookimpl
from dffcore.core.registry import Registry, Source
from dffcore.core.spec import MIN_MEMORY, load_spec, parse_memory
from dffcore.run.plan import band_rows_for

from .conftest import stderr_lines

#: address-space cap of a hostile run: an alias bomb expanded would take gigabytes
LIMIT_BYTES = 1536 * 2**20


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def _dff(*args: str) -> subprocess.CompletedProcess[str]:
    """``dff`` in a subprocess with a memory cap and a timeout: a regression fails fast."""
    cmd = [sys.executable, "-m", "dffcore.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, preexec_fn=_limit, check=False
    )


def _error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-2000:]
    assert len(lines[0]) < 400, lines[0][:400]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _bomb(levels: int = 10) -> str:
    """The issue's alias bomb: 9**levels values in a few hundred bytes."""
    s = "focus:\n  name: lapm\n  params:\n    window:\n      - &a0 [x,x,x,x,x,x,x,x,x]\n"
    for i in range(1, levels):
        s += f"      - &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    return s


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path)


def test_alias_bomb_file_is_refused_at_once(tmp_path: Path) -> None:
    proc = _dff("validate", _write(tmp_path, _bomb()))
    _error(proc, "pipeline.yaml: line ", "10000 values")


def test_alias_bomb_in_a_set_value_is_refused_at_once() -> None:
    big = "[" + ",".join(["&a [" + ",".join(["1"] * 200) + "]"] + ["*a"] * 60) + "]"
    proc = _dff("validate", "classic", "--set", f"focus.params.gaussian_ksize={big}")
    _error(proc, "--set focus.params.gaussian_ksize=", "10000 values")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    proc = _dff("validate", _write(tmp_path, "focus:\n  name: lapm\n  params: &a {w: *a}\n"))
    _error(proc, "pipeline.yaml: line 3", "cycle")


@pytest.mark.parametrize("where", ["file", "set"])
def test_deep_nesting_is_refused_naming_the_key(tmp_path: Path, where: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    if where == "file":
        proc = _dff(
            "validate", _write(tmp_path, f"focus:\n  name: lapm\n  params:\n    window: {deep}\n")
        )
        _error(proc, "pipeline.yaml: line 4", "50 levels")
    else:
        proc = _dff("validate", "classic", "--set", f"focus.params.gaussian_ksize={deep}")
        _error(proc, "--set focus.params.gaussian_ksize=", "50 levels")


def test_deep_set_key_is_refused() -> None:
    proc = _dff("validate", "classic", "--set", "focus.params." + ".".join(["a"] * 5000) + "=1")
    _error(proc, "--set focus.params.a.a", "50 levels")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400"])
def test_non_finite_floats_are_refused(value: str) -> None:
    proc = _dff("validate", "classic", "--set", f"aggregate.params.sigma={value}")
    line = _error(proc, f"--set aggregate.params.sigma={value}: aggregate.params.sigma", "finite")
    assert "classic.yaml" not in line


def test_huge_window_is_refused_before_opencv(tmp_path: Path) -> None:
    spec = _write(tmp_path, "focus: lapm\n")
    proc = _dff("validate", spec, "--set", "focus.params.window=123456789")
    _error(proc, "--set focus.params.window=123456789", "less than or equal to 999")


def test_integer_too_long_for_python_names_the_key(tmp_path: Path) -> None:
    digits = "9" * 5000
    proc = _dff("validate", "classic", "--set", f"focus.params.gaussian_ksize={digits}")
    _error(proc, "--set focus.params.gaussian_ksize=999", "5000 digits")
    proc = _dff("validate", _write(tmp_path, f"focus:\n  name: log\n  params: {{x: {digits}}}\n"))
    _error(proc, "pipeline.yaml: line 3", "5000 digits")


def test_every_size_like_integer_parameter_has_an_upper_bound() -> None:
    reg = Registry()
    reg.load_entry_points(third_party=False)
    words = ("window", "radius", "size", "ksize", "iterations", "side", "tile", "step", "overlap")
    unbounded = []
    for entry in (e for kind in reg.entries.values() for e in kind.values()):
        for name, f in entry.cls.Params.model_fields.items():
            if f.annotation is int and any(w in name for w in words):
                if not any(hasattr(m, "le") or hasattr(m, "lt") for m in f.metadata):
                    unbounded.append(f"{entry.cls.name}.{name}")
                elif "at most" not in (f.description or ""):
                    unbounded.append(f"{entry.cls.name}.{name} (undocumented)")
    assert not unbounded


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1e400GB", "memory size"),
        (float("inf"), "memory size"),
        (float("nan"), "memory size"),
        (True, "memory size"),
        (10**400, "too large"),
        ("2PB", "too large"),
        ("100MB", "give at least 400MB"),
    ],
)
def test_absurd_memory_budgets_are_one_line_errors(value: object, needle: str) -> None:
    with pytest.raises(DffError) as err:
        parse_memory(value)
    assert needle in str(err.value) and len(str(err.value)) < 200


def test_memory_floor_and_message_agree(tmp_path: Path) -> None:
    assert parse_memory("400MB") == MIN_MEMORY  # the parser's floor is the run's base
    with pytest.raises(DffError) as err:
        band_rows_for(3, 40, 50, 3, 1, MIN_MEMORY, 0)
    message = str(err.value)
    assert message.startswith("--memory 400MB is too small for 3 frames of 50x40")
    assert message.endswith("give at least 401MB")  # rounded up, same units
    with pytest.raises(DffError) as err:
        band_rows_for(3, 40, 50, 3, 1, MIN_MEMORY + 1, 0)
    need = str(err.value).rsplit(" ", 1)[1]
    assert band_rows_for(3, 40, 50, 3, 1, parse_memory(need), 0) >= 8  # enough, as it says


def test_duplicate_keys_name_the_key_and_line(tmp_path: Path) -> None:
    text = "focus:\n  name: lapm\naggregate: argmax\nfocus:\n  name: log\n"
    proc = _dff("validate", _write(tmp_path, text))
    _error(proc, "pipeline.yaml: line 4", "'focus'", "first at line 1")
    text = "focus:\n  name: lapm\n  params: {window: 5, window: 7}\n"
    _error(_dff("validate", _write(tmp_path, text)), "line 3", "'window'")


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = "focus:\n  <<: &f {name: log}\n  name: lapm\n"
    assert load_spec(_write(tmp_path, text)).focus.name == "lapm"


def test_set_problems_blame_the_set_not_the_file() -> None:
    proc = _dff("validate", "classic", "--set", "aggregate.params.sigma=-1")
    line = _error(proc, "--set aggregate.params.sigma=-1: aggregate.params.sigma")
    assert "classic.yaml" not in line
    proc = _dff("validate", "classic", "--set", "composite.name=multibnd")
    _error(proc, "--set composite.name=multibnd: composite.name", "Did you mean 'multiband'?")


class _Clash(FocusMeasure):
    """Returns zeros."""

    name = "log"  # clashes with the built-in

    def measure(self, frame: np.ndarray) -> np.ndarray:
        return np.zeros(frame.shape[:2], np.float32)


def test_name_clash_warning_names_the_newcomer_whichever_loads_first() -> None:
    module = types.ModuleType("clash_plugin")

    @hookimpl
    def dffcore_register(registry) -> None:
        registry.add(_Clash)

    module.dffcore_register = dffcore_register
    reg = Registry()
    reg.register(module, Source("clash", "clashing-dist", "9.9"))  # the third party first
    reg.load_entry_points(third_party=False)
    clash = [e for e in reg.errors if "defined twice" in e.message]
    assert len(clash) == 1
    assert clash[0].plugin.startswith("clash (clashing-dist")
    assert "rename it in clashing-dist" in clash[0].message
