"""dffcore's built-in components, registered through the ``dffcore`` entry-point group.

Where things live: ``align/`` aligners, ``focus/`` focus measures, ``aggregate/``
aggregators, ``regularize/`` regularisers: one module per component.
"""

from __future__ import annotations

from dffcore import hookimpl
from dffcore.registry import Registrar

from .aggregate.argmax import Argmax
from .align.homography import Homography
from .align.none import NoAlign
from .focus.log import LoG
from .regularize.graphcut import GraphCut
from .regularize.weighted_median import WeightedMedian

COMPONENTS = (NoAlign, Homography, LoG, Argmax, GraphCut, WeightedMedian)


@hookimpl
def dffcore_register(registry: Registrar) -> None:
    for cls in COMPONENTS:
        registry.add(cls)
