"""dffcore's built-in components, registered through the ``dffcore`` entry-point group.

Where things live: ``align/`` aligners, ``focus/`` focus measures, ``aggregate/``
aggregators, ``regularize/`` regularisers, ``composite/`` all-in-focus compositors: one
module per component, and each subpackage's ``COMPONENTS`` lists its classes.
"""

from __future__ import annotations

from dffcore import Registrar, hookimpl

from . import aggregate, align, composite, focus, regularize

COMPONENTS = (
    *align.COMPONENTS,
    *focus.COMPONENTS,
    *aggregate.COMPONENTS,
    *regularize.COMPONENTS,
    *composite.COMPONENTS,
)


@hookimpl
def dffcore_register(registry: Registrar) -> None:
    for cls in COMPONENTS:
        registry.add(cls)
