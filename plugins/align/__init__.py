"""Aligners: bring every frame into the reference frame's pixel grid."""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE = {
    "NoAlign": "none",
    "Auto": "auto",
    "Homography": "homography",
    "ECC": "ecc",
    "Flow": "flow",
    "RAFT": "raft",
    "ExternalFlow": "external_flow",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
