"""Lazy component lists: a kind's package imports a component's module only when asked.

``dff run`` needs three to five components; importing every module of every kind (and
what they import) would cost more than some whole runs. Each kind's ``__init__`` names
its classes and their modules, and :func:`lazy_exports` gives it a module
``__getattr__`` (PEP 562) that imports a class's module on first access; ``COMPONENTS``
imports them all, in the listed order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that serves ``where`` (class name ->
    module name inside the package) and ``COMPONENTS`` (every class, in order)."""

    def load(name: str) -> Any:
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __getattr__(name: str) -> Any:
        if name == "COMPONENTS":
            return tuple(load(n) for n in where)
        if name in where:
            return load(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
