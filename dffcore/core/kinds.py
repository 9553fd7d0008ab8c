"""The kinds of component and their titles: the one list, importable without NumPy or
pydantic (the command line builds its parser from it before it knows the command).

:data:`KINDS` are the pipeline's stages (the YAML keys of a spec); a ``read`` component
(:class:`dffcore.core.components.Reader`) is no stage: it reads a stack from a file
format, chosen by the file's name. The registry holds every kind of
:data:`COMPONENT_KINDS`.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = ("align", "focus", "aggregate", "regularize", "composite")
#: the kind of the readers of stack files
READ = "read"
COMPONENT_KINDS: tuple[str, ...] = (*KINDS, READ)
KIND_TITLES = {
    "align": "aligner",
    "focus": "focus measure",
    "aggregate": "aggregator",
    "regularize": "regularizer",
    "composite": "compositor",
    READ: "reader",
}
