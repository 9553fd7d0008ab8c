"""Compositors: the all-in-focus image from the final depth."""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE = {
    "Select": "select",
    "Blend": "blend",
    "Multiband": "multiband",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
