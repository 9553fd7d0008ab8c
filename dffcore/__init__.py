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

from dffcore.api import estimate
from dffcore.core.components import (
    Aggregator,
    Aligner,
    Component,
    Compositor,
    Context,
    FocusMeasure,
    Params,
    Regularizer,
)
from dffcore.core.data import AlignedStack, Alignment, DepthResult, FocalStack, FocusVolume
from dffcore.core.errors import DffError, SpecError
from dffcore.core.hookspec import Registrar, hookimpl
from dffcore.core.spec import PipelineSpec, find_pipeline, load_spec
from dffcore.io.outputs import write_outputs
from dffcore.io.stack import read_stack
from dffcore.run.engine import Run, run_pipeline
from dffcore.version import __version__

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
