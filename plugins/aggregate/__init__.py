"""Aggregators: focus volume -> fractional depth index, confidence (and all-in-focus).

``argmax`` streams over the slices and composites its own all-in-focus image; the
sub-frame aggregators (``gaussian``, ``parabolic``, ``softargmax``) share their options
(smoothing, guided filter, confidence) through ``_common.CurveParams`` and leave the
all-in-focus image to the runner.
"""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE = {
    "Argmax": "argmax",
    "Gaussian": "peak",
    "Parabolic": "peak",
    "SoftArgmax": "peak",
    "SGM": "sgm",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
