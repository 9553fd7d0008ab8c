"""Regularisers: refine a depth result (MRF, filters)."""

from .graphcut import GraphCut
from .weighted_median import WeightedMedian

COMPONENTS = (GraphCut, WeightedMedian)
