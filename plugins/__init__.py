"""dffcore's built-in components, registered through the ``dffcore`` entry-point group.

Where things live: ``align/`` aligners, ``focus/`` focus measures, ``aggregate/``
aggregators, ``regularize/`` regularisers, ``composite/`` all-in-focus compositors,
``read/`` readers of stack files: one module per component, and each subpackage's
``COMPONENTS`` lists its classes. Modules are imported when a class is first asked for
(``_lazy``), so a run imports only the components it uses.
"""

from __future__ import annotations

import importlib

from dffcore import Registrar, hookimpl

_KINDS = ("align", "focus", "aggregate", "regularize", "composite", "read")


def __getattr__(name: str) -> object:
    """``COMPONENTS``: every built-in component class (imports every module)."""
    if name == "COMPONENTS":
        return tuple(
            cls
            for kind in _KINDS
            for cls in importlib.import_module(f"{__name__}.{kind}").COMPONENTS
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def dffcore_register(registry: Registrar) -> None:
    for cls in __getattr__("COMPONENTS"):  # type: ignore[attr-defined]
        registry.add(cls)
