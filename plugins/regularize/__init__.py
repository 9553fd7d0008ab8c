"""Regularisers: refine a depth result (MRF, filters, variational)."""

from .graphcut import GraphCut
from .guided import Guided
from .tv import TV
from .weighted_median import WeightedMedian

COMPONENTS = (GraphCut, WeightedMedian, Guided, TV)
