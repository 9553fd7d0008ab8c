"""dffcore: depth from focus with pluggable stages.

In a notebook::

    import dffcore
    result = dffcore.estimate(frames, "best")  # a list or array of (H,W[,C]) frames
    result.index, result.confidence, result.all_in_focus

From files, with every record::

    spec = dffcore.load_spec("best")  # a built-in name, a YAML file or a dict
    stack = dffcore.read_stack("photos/")
    run = dffcore.run_pipeline(spec, stack)
    dffcore.write_outputs(run, "out/")

Plugin authors subclass the component bases exported here and register them with
:data:`hookimpl` (see :mod:`dffcore.core.hookspec`). ``docs/architecture.md`` shows
where everything lives.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dffcore.version import __version__

#: where each public name lives; imported on first use, so ``import dffcore`` (and the
#: command line, which imports only what a command needs) starts fast
_EXPORTS = {
    "estimate": "dffcore.api",
    **dict.fromkeys(
        (
            "Aggregator",
            "Aligner",
            "Component",
            "Compositor",
            "Context",
            "FocusMeasure",
            "Params",
            "ReadRequest",
            "Reader",
            "Regularizer",
        ),
        "dffcore.core.components",
    ),
    **dict.fromkeys(
        ("AlignedStack", "Alignment", "DepthResult", "FocalStack", "FocusVolume"),
        "dffcore.core.data",
    ),
    **dict.fromkeys(("DffError", "SpecError"), "dffcore.core.errors"),
    **dict.fromkeys(("Registrar", "hookimpl"), "dffcore.core.hookspec"),
    **dict.fromkeys(("PipelineSpec", "find_pipeline", "load_spec"), "dffcore.core.spec"),
    "write_outputs": "dffcore.io.outputs",
    "read_stack": "dffcore.io.stack",
    **dict.fromkeys(("Run", "run_pipeline"), "dffcore.run.engine"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dffcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from dffcore.api import estimate
    from dffcore.core.components import (
        Aggregator,
        Aligner,
        Component,
        Compositor,
        Context,
        FocusMeasure,
        Params,
        Reader,
        ReadRequest,
        Regularizer,
    )
    from dffcore.core.data import AlignedStack, Alignment, DepthResult, FocalStack, FocusVolume
    from dffcore.core.errors import DffError, SpecError
    from dffcore.core.hookspec import Registrar, hookimpl
    from dffcore.core.spec import PipelineSpec, find_pipeline, load_spec
    from dffcore.io.outputs import write_outputs
    from dffcore.io.stack import read_stack
    from dffcore.run.engine import Run, run_pipeline

__all__ = [
    "Aggregator",
    "AlignedStack",
    "Aligner",
    "Alignment",
    "Component",
    "Compositor",
    "Context",
    "DepthResult",
    "DffError",
    "FocalStack",
    "FocusMeasure",
    "FocusVolume",
    "Params",
    "PipelineSpec",
    "ReadRequest",
    "Reader",
    "Registrar",
    "Regularizer",
    "Run",
    "SpecError",
    "__version__",
    "estimate",
    "find_pipeline",
    "hookimpl",
    "load_spec",
    "read_stack",
    "run_pipeline",
    "write_outputs",
]
