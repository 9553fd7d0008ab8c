"""The layout stays readable: no import cycles, small modules, imports run downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

#: package name -> folder
PACKAGES = {"dffcore": ROOT / "dffcore", "dffcore_plugins": ROOT / "plugins"}
MAX_LINES = 600
#: the layers of dffcore, lowest first: a module may import from its own layer and below
LAYERS = ("core", "ops", "align", "run", "io", "report", "eval", "front")
FRONT = {"dffcore", "dffcore.api", "dffcore.batch", "dffcore.cli"}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of dffcore and the built-in plugins."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``name`` imports anywhere (in functions too)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from a import b`: the module a.b, else a
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycles(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 60  # dffcore and its plugins were found
    assert cycles(graph) == []


def layer(module: str) -> int:
    if module == "dffcore.version":  # a constant, imports nothing
        return 0
    if module in FRONT or module.startswith("dffcore_plugins"):
        return len(LAYERS) - 1
    return LAYERS.index(module.split(".")[1])


def test_dffcore_imports_run_downwards(graph: dict[str, set[str]]) -> None:
    """core ← ops ← align ← run ← io ← report ← eval ← the front ends (api, batch, cli)."""
    upward = [
        f"{m} ({LAYERS[layer(m)]}) imports {d} ({LAYERS[layer(d)]})"
        for m, deps in graph.items()
        if m.startswith("dffcore.")
        for d in deps
        if d.startswith("dffcore") and layer(d) > layer(m)
    ]
    assert upward == []


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if node.module.split(".")[0] in PACKAGES:
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    bad += [f"{name}: {a}" for a in private if not a.endswith("__")]
    assert bad == []


def test_no_module_is_longer_than_600_lines() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
