"""Regularisers: refine a depth result (MRF, filters, variational)."""

from dffcore_plugins._lazy import lazy_exports

#: each component class and its module, in the order of COMPONENTS
_WHERE = {
    "GraphCut": "graphcut",
    "WeightedMedian": "weighted_median",
    "Guided": "guided",
    "TV": "tv",
}

__all__ = ["COMPONENTS", *_WHERE]
__getattr__ = lazy_exports(__name__, _WHERE)
