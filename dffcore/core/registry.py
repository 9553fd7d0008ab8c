"""Discovery and lookup of components.

Every distribution, dffcore's own built-ins included, reaches the registry through
the ``dffcore`` entry-point group. Entry points are loaded one by one (not with
pluggy's ``load_setuptools_entrypoints``) so that a plugin that fails to import is
reported by name while the others still load, and so that two plugins sharing an
entry-point name are both seen. Set ``DFFCORE_DISABLE_PLUGIN_AUTOLOAD=1`` to load
only dffcore's own components.
"""

from __future__ import annotations

import logging
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from dffcore.core import hookspec
from dffcore.core.components import BASES, KIND_TITLES, KINDS, Component
from dffcore.core.errors import DffError, did_you_mean

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dffcore"
OWN_DISTRIBUTION = "dffcore"
AUTOLOAD_ENV = "DFFCORE_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class Source:
    """Where a component came from: plugin (entry point) name, distribution, version."""

    plugin: str
    distribution: str = ""
    version: str = ""

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}".strip()
        return f"{self.plugin} ({dist})" if dist else self.plugin


@dataclass
class Entry:
    cls: type[Component]
    source: Source

    @property
    def kind(self) -> str:
        return self.cls.kind

    @property
    def name(self) -> str:
        return self.cls.name


@dataclass
class PluginError:
    """A plugin that could not be loaded or registered, with the reason."""

    plugin: str
    message: str


class PluginRegistrar:
    """The :class:`~dffcore.core.hookspec.Registrar` handed to one plugin's
    ``dffcore_register``: what it adds is recorded with the plugin's source."""

    def __init__(self, registry: Registry, source: Source) -> None:
        self._registry = registry
        self._source = source

    def add(self, cls: type[Component]) -> None:
        """Register a component class (a subclass of one of the four bases)."""
        self._registry._add(cls, self._source)


@dataclass
class Registry:
    """All known components by kind and name, plus the plugins that failed."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    duplicates: dict[tuple[str, str], list[Source]] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    plugins: list[Source] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, *, third_party: bool | None = None) -> None:
        """Load every plugin of the entry-point group (third-party ones unless disabled)."""
        if third_party is None:
            third_party = not os.environ.get(AUTOLOAD_ENV)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else ""
            version = dist.version if dist is not None else ""
            if not third_party and dist_name != OWN_DISTRIBUTION:
                continue
            source = Source(ep.name, dist_name, version)
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a broken plugin (sys.exit too) must not stop others
                self._error(source, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            self.register(module, source)

    def register(self, plugin: Any, source: Source | str) -> None:
        """Register a plugin object (usually a module with hookimpls) and its components."""
        if isinstance(source, str):
            source = Source(source)
        name = f"{source.distribution}:{source.plugin}"
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._error(source, f"not a valid dffcore plugin: {exc}")
            return
        self.plugins.append(source)
        # The hook is called through the plugin manager, for this plugin alone, so that
        # what it registers is attributed to its source and its failure stops no other.
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        call = self.pm.subset_hook_caller("dffcore_register", remove_plugins=others)
        try:
            call(registry=PluginRegistrar(self, source))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # sys.exit() in a plugin's hook is its failure too
            self._error(source, f"dffcore_register failed: {type(exc).__name__}: {exc}")

    def _error(self, source: Source, message: str) -> None:
        logger.warning("plugin %s: %s", source, message)
        self.errors.append(PluginError(str(source), message))

    def _add(self, cls: type[Component], source: Source) -> None:
        kind = getattr(cls, "kind", None)
        name = getattr(cls, "name", None)
        if kind not in BASES or not isinstance(cls, type) or not issubclass(cls, BASES[kind]):
            raise TypeError(
                f"{cls!r} is not a component: subclass one of "
                + ", ".join(b.__name__ for b in BASES.values())
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} has no `name`")
        known = self.entries[kind].get(name)
        if known is not None:
            self.duplicates.setdefault((kind, name), [known.source]).append(source)
            # blame the newcomer: a third-party plugin, whichever entry point loaded first
            first, newcomer = known.source, source
            if first.distribution != OWN_DISTRIBUTION == newcomer.distribution:
                first, newcomer = newcomer, first
            self._error(
                newcomer,
                f"{KIND_TITLES[kind]} '{name}' is defined twice: by {newcomer}, clashing with "
                f"{first}; rename it in {newcomer.distribution or newcomer.plugin}",
            )
            return
        self.entries[kind][name] = Entry(cls, source)

    # -- lookup --------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; a :class:`DffError` that lists the choices otherwise."""
        title = KIND_TITLES[kind]
        dup = self.duplicates.get((kind, name))
        if dup:
            raise DffError(
                f"{title} '{name}' is defined by several plugins: "
                + " and ".join(str(s) for s in dup)
                + "; uninstall one of them"
            )
        entry = self.entries[kind].get(name)
        if entry is None:
            choices = self.names(kind)
            raise DffError(
                f"unknown {title} '{name}'.{did_you_mean(name, choices)} "
                f"Available: {', '.join(choices) or '(none)'}"
            )
        return entry

    def describe(self, kind: str | None = None) -> list[dict[str, Any]]:
        """JSON-ready description of every component (of one kind)."""
        out = []
        for k in KINDS if kind is None else (kind,):
            for name in self.names(k):
                out.append(describe_component(self.entries[k][name]))
        return out


def type_name(annotation: Any) -> str:
    """Readable type of a parameter: ``int``, ``'sift' | 'orb'``, ``'first' | int``."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if args and origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def describe_component(entry: Entry) -> dict[str, Any]:
    cls = entry.cls
    params = []
    for pname, f in cls.Params.model_fields.items():
        params.append(
            {
                "name": pname,
                "type": type_name(f.annotation),
                "default": None if f.is_required() else f.get_default(call_default_factory=True),
                "required": f.is_required(),
                "doc": f.description or "",
            }
        )
    return {
        "kind": cls.kind,
        "name": cls.name,
        "summary": cls.summary(),
        "module": cls.__module__,
        "plugin": entry.source.plugin,
        "distribution": entry.source.distribution,
        "version": entry.source.version,
        "citation": cls.citation,
        "licence": cls.licence,
        "params": params,
    }


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        reg = Registry()
        reg.load_entry_points()
        if not reg.entries["focus"]:
            raise DffError(
                "no components found: dffcore's built-in plugins are not installed "
                "(reinstall with `pip install dffcore`)"
            )
        _default = reg
    return _default
