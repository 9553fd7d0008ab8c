"""Hook specifications: the whole plugin interface of dffcore.

A plugin is a module (or object) reached through the ``dffcore`` entry-point group
that implements these hooks with :data:`dffcore.hookimpl`::

    # pyproject.toml of your package
    [project.entry-points.dffcore]
    mymeasures = "my_package.dff_plugin"

    # my_package/dff_plugin.py
    from dffcore import Registrar, hookimpl

    @hookimpl
    def dffcore_register(registry: Registrar) -> None:
        registry.add(MyFocusMeasure)
"""

from __future__ import annotations

from typing import Protocol

import pluggy

from dffcore.core.components import Component

PROJECT = "dffcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Registrar(Protocol):
    """What ``dffcore_register`` receives: collects one plugin's components."""

    def add(self, cls: type[Component]) -> None:
        """Register a component class (a subclass of one of the five bases)."""


@hookspec
def dffcore_register(registry: Registrar) -> None:
    """Register components: call ``registry.add(ComponentClass)`` once per class.

    Importing the plugin module must stay cheap (no torch or other heavy imports at
    module level): the first command after an install imports every plugin to index it
    (:mod:`dffcore.core.plugin_cache`), and later commands import a component's module
    from that index. So register classes defined at module level, and let what you
    register depend only on the installed packages and files (not on environment
    variables or hardware: check those when the component runs).
    """
