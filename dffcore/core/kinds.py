"""The five stage kinds and their titles: the one list, importable without NumPy or
pydantic (the command line builds its parser from it before it knows the command)."""

from __future__ import annotations

KINDS: tuple[str, ...] = ("align", "focus", "aggregate", "regularize", "composite")
KIND_TITLES = {
    "align": "aligner",
    "focus": "focus measure",
    "aggregate": "aggregator",
    "regularize": "regularizer",
    "composite": "compositor",
}
