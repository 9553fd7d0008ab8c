"""Discovery and lookup of components.

Every distribution, dffcore's own built-ins included, reaches the registry through
the ``dffcore`` entry-point group. Entry points are loaded one by one (not with
pluggy's ``load_setuptools_entrypoints``) so that a plugin that fails to import is
reported by name while the others still load, and so that two plugins sharing an
entry-point name are both seen. Set ``DFFCORE_DISABLE_PLUGIN_AUTOLOAD=1`` to load
only dffcore's own components.

:func:`default_registry` starts from the component index cache
(:mod:`dffcore.core.plugin_cache`) when it is valid: then no entry point is read and a
component's module is imported only when :meth:`Registry.get` asks for it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import metadata  # pydantic imports it too (its plugins): no extra cost
from typing import Any

import pluggy

from dffcore.core import hookspec, plugin_cache
from dffcore.core.components import BASES, COMPONENT_KINDS, KIND_TITLES, Component, Reader
from dffcore.core.errors import DffError, did_you_mean
from dffcore.core.plugin_cache import AUTOLOAD_ENV

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dffcore"
OWN_DISTRIBUTION = "dffcore"


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
    """All known components by kind and name, plus the plugins that failed.

    A registry made from the index cache (:meth:`from_index`) knows every name and
    source but imports a component's class on :meth:`get` only: use :meth:`names`,
    :meth:`get` and :meth:`describe`; ``entries`` holds the classes imported so far.
    """

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {k: {} for k in COMPONENT_KINDS}
    )
    duplicates: dict[tuple[str, str], list[Source]] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    plugins: list[Source] = field(default_factory=list)
    #: (kind, name) -> the cached index entry, while the registry is not fully loaded
    _index: dict[tuple[str, str], dict[str, Any]] | None = field(
        default=None, init=False, repr=False
    )
    _pm: pluggy.PluginManager | None = field(default=None, init=False, repr=False)
    #: the entry-point modules loaded (their files key the index cache)
    _ep_modules: list[types.ModuleType] = field(default_factory=list, init=False, repr=False)

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager (made on first use)."""
        if self._pm is None:
            self._pm = pluggy.PluginManager(hookspec.PROJECT)
            self._pm.add_hookspecs(hookspec)
        return self._pm

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
            if isinstance(module, types.ModuleType):
                self._ep_modules.append(module)
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

    # -- the index cache -----------------------------------------------------
    @classmethod
    def from_index(cls, data: dict[str, Any]) -> Registry:
        """A registry that knows the components of a valid index (:func:`plugin_cache.read`)
        and imports each one's module when it is first asked for."""
        reg = cls()
        reg.plugins = [Source(*p) for p in data["plugins"]]
        reg._index = {(c["describe"]["kind"], c["describe"]["name"]): c for c in data["components"]}
        return reg

    def load_all(self) -> None:
        """Load every plugin now (for a registry made from the index; else a no-op)."""
        if self._index is None:
            return
        logger.debug("loading every plugin (the index cache does not answer)")
        self.entries = {k: {} for k in COMPONENT_KINDS}
        self.duplicates, self.errors, self.plugins = {}, [], []
        self._index, self._pm, self._ep_modules = None, None, []
        self.load_entry_points()
        self.write_index()

    def _import_indexed(self, item: dict[str, Any]) -> Entry | None:
        """Import the class an index entry names; None if it is not that component."""
        d = item["describe"]
        kind, name = d["kind"], d["name"]
        try:
            module = importlib.import_module(d["module"])
            if getattr(module, "__file__", None) != item["file"]:
                logger.debug("index: %s is not %s", d["module"], item["file"])
                return None
            obj: Any = module
            for part in item["qualname"].split("."):
                obj = getattr(obj, part)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the full load reports a broken plugin properly
            logger.debug("index: cannot import %s.%s: %s", d["module"], item["qualname"], exc)
            return None
        if not (
            isinstance(obj, type)
            and issubclass(obj, BASES[kind])
            and getattr(obj, "kind", None) == kind
            and getattr(obj, "name", None) == name
        ):
            logger.debug("index: %s.%s is not %s '%s'", d["module"], item["qualname"], kind, name)
            return None
        entry = Entry(obj, Source(d["plugin"], d["distribution"], d["version"]))
        self.entries[kind][name] = entry
        return entry

    def index_payload(
        self, *, strict: bool = True
    ) -> tuple[list[list[str]], list[dict[str, Any]], list[str]]:
        """What :func:`plugin_cache.write` stores: plugins, components and the module
        files they depend on. A class that cannot be found again by module and
        qualified name (one defined inside a function) raises ``ValueError`` if
        ``strict``, else gets an empty ``qualname``."""
        components = []
        tops = {m.__name__.split(".")[0] for m in self._ep_modules}
        for item in self.describe():
            cls = self.entries[item["kind"]][item["name"]].cls
            module = sys.modules.get(cls.__module__)
            obj: Any = module
            for part in cls.__qualname__.split("."):
                obj = getattr(obj, part, None)
            path = getattr(module, "__file__", None)
            qualname = cls.__qualname__
            if obj is not cls or not isinstance(path, str):
                if strict:
                    raise ValueError(f"{cls.__module__}.{qualname} cannot be imported again")
                qualname, path = "", ""
            tops.add(cls.__module__.split(".")[0])
            components.append(
                {
                    "describe": plugin_cache.json_ready(item),
                    "text": plugin_cache.render_component(item),
                    "qualname": qualname,
                    "file": path,
                }
            )
        # every module of the plugins' packages (a new component can be listed in a
        # package's __init__), and the core modules that shape a description
        files = [
            m.__file__
            for name, m in list(sys.modules.items())
            if name.split(".")[0] in tops and isinstance(getattr(m, "__file__", None), str)
        ]
        core = (sys.modules[__name__], sys.modules[Component.__module__], plugin_cache)
        files += [m.__file__ for m in core if m.__file__]
        plugins = [[s.plugin, s.distribution, s.version] for s in self.plugins]
        return plugins, components, files

    def write_index(self) -> None:
        """Write the index cache after a clean full load (no plugin error or clash)."""
        if self._index is not None or self.errors or self.duplicates:
            return
        try:
            payload = self.index_payload()
        except Exception as exc:
            logger.debug("plugin cache not written: %s", exc)
            return
        plugin_cache.write(*payload)

    # -- lookup --------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        if self._index is not None:
            return sorted(n for k, n in self._index if k == kind)
        return sorted(self.entries[kind])

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; a :class:`DffError` that lists the choices otherwise."""
        if self._index is not None and name not in self.entries[kind]:
            item = self._index.get((kind, name))
            if item is not None and self._import_indexed(item) is None:
                self.load_all()
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

    def readers(self) -> list[tuple[str, tuple[str, ...], bool]]:
        """Every reader's name, file-name endings and whether one file is a whole stack,
        without importing a reader (from the index, when the registry has one)."""
        if self._index is not None:
            return [
                (n, tuple(d["suffixes"]), bool(d["container"]))
                for (k, n), item in self._index.items()
                if k == "read"
                for d in (item["describe"],)
            ]
        return [
            (n, tuple(e.cls.suffixes), bool(e.cls.container))  # type: ignore[attr-defined]
            for n, e in sorted(self.entries["read"].items())
        ]

    def describe(self, kind: str | None = None) -> list[dict[str, Any]]:
        """JSON-ready description of every component (of one kind)."""
        self.load_all()
        out = []
        for k in COMPONENT_KINDS if kind is None else (kind,):
            for name in self.names(k):
                out.append(describe_component(self.entries[k][name]))
        return out


def type_name(annotation: Any) -> str:
    """Readable type of a parameter: ``int``, ``'sift' | 'orb'``, ``'first' | int``,
    ``int | None``, ``list[tuple[int, 1 | 3]]``."""
    if annotation is type(None):
        return "None"
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if args and origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if args and origin is not None:  # list[tuple[int, int]]
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
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
        **(
            {"suffixes": list(cls.suffixes), "container": cls.container, "extra": cls.extra}
            if issubclass(cls, Reader)
            else {}
        ),
    }


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        data = plugin_cache.read()
        if data is not None:
            reg = Registry.from_index(data)
        else:
            reg = Registry()
            reg.load_entry_points()
            reg.write_index()
        if not reg.names("focus"):
            raise DffError(
                "no components found: dffcore's built-in plugins are not installed "
                "(reinstall with `pip install dffcore`)"
            )
        _default = reg
    return _default
