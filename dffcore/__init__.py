"""dffcore: depth from focus with pluggable stages.

Python API::

    import dffcore
    spec = dffcore.load_spec("pipelines/classic.yaml")
    stack = dffcore.read_stack("photos/")
    run = dffcore.run_pipeline(spec, stack)
    run.result.index, run.result.confidence, run.result.all_in_focus
    dffcore.write_outputs(run, "out/")
"""

from __future__ import annotations

from .data import AlignedStack, DepthResult, FocalStack, FocusVolume
from .errors import DffError, SpecError
from .hookspec import hookimpl
from .io import read_stack
from .outputs import write_outputs
from .runner import Run, run_pipeline
from .spec import PipelineSpec, find_pipeline, load_spec

__version__ = "0.1.0"

__all__ = [
    "AlignedStack",
    "DepthResult",
    "DffError",
    "FocalStack",
    "FocusVolume",
    "PipelineSpec",
    "Run",
    "SpecError",
    "find_pipeline",
    "hookimpl",
    "load_spec",
    "read_stack",
    "run_pipeline",
    "write_outputs",
]
