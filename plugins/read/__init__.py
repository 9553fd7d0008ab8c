"""Readers: focal stacks held in one file (z-stack TIFFs, videos) or in frames the image
reader does not decode (RAW photos); chosen by the file names (``Reader.suffixes``)."""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE: dict[str, str] = {
    "Tiff": "tiff",
    "Video": "video",
    "Raw": "raw",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
