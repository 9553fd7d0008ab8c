"""The component index cache: what ``dff plugins`` prints, without importing anything.

Loading the registry imports every plugin (and so NumPy, OpenCV and pydantic) and reads
every installed distribution's metadata. After a full load with no plugin error and no
name clash, the registry writes an index here: every component's description (as
``dff plugins`` prints it, text and JSON), where its class lives (module and qualified
name) and the plugin that registered it. The next process reads the index instead:

- ``dff plugins`` prints from it, importing none of NumPy, OpenCV, pydantic, pluggy or
  :mod:`importlib.metadata`;
- ``dff run`` and spec validation import only the modules of the components a spec names
  (:meth:`dffcore.core.registry.Registry.get`).

The index is keyed by a fingerprint that is cheap to compute: dffcore's version, the
Python executable and version, the ``*.dist-info`` / ``*.egg-info`` entries (name and
modification time) of every folder on ``sys.path`` (installing, upgrading or removing a
distribution changes them), the :data:`AUTOLOAD_ENV` switch, and the size and
modification time of every module file of the plugins' packages (recorded when the index
is written). Anything else (a missing, truncated, corrupt or foreign file, an unwritable
folder) only means a full load: the cache never makes a command fail.

Where: ``$DFFCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/dffcore``, else ``~/.cache/dffcore``;
one file per Python environment (:func:`cache_path`). ``DFFCORE_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zlib
from pathlib import Path
from typing import Any

from dffcore.core.kinds import COMPONENT_KINDS, READ
from dffcore.version import __version__

logger = logging.getLogger(__name__)

#: set to a non-empty value to load only dffcore's own components
AUTOLOAD_ENV = "DFFCORE_DISABLE_PLUGIN_AUTOLOAD"
#: set to a non-empty value to neither read nor write the index
DISABLE_ENV = "DFFCORE_NO_CACHE"
#: the layout of the file; another value is a foreign file
FORMAT = 2
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def cache_dir() -> Path:
    """The folder of the index: ``$DFFCORE_CACHE_DIR``, ``$XDG_CACHE_HOME/dffcore`` or
    ``~/.cache/dffcore``."""
    explicit = os.environ.get("DFFCORE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dffcore"


def cache_path(fp: dict[str, Any] | None = None) -> Path:
    """The index file of this Python environment: named by a hash of ``sys.prefix`` and
    of the ``sys.path`` folders that hold distributions (``python -m dffcore.cli`` in a
    source checkout also sees the checkout's ``*.egg-info``; ``dff`` does not: two files)."""
    fp = fingerprint() if fp is None else fp
    key = "\0".join([sys.prefix, *(str(p[0]) for p in fp["path"])])
    digest = zlib.crc32(key.encode("utf-8", "surrogateescape"))
    return cache_dir() / f"plugins-{digest:08x}.json"


def enabled() -> bool:
    return not os.environ.get(DISABLE_ENV)


def _path_entry(entry: str) -> list[Any] | None:
    """``[entry, [[name, mtime_ns], ...]]`` of the distributions' metadata in a folder of
    ``sys.path``, ``[entry, mtime_ns]`` for a file (a zip); None for a folder without
    any or a missing entry, so that the script's folder or the current one (``dff`` and
    ``python -m`` differ there) does not change the fingerprint."""
    try:
        with os.scandir(entry or ".") as it:
            found = []
            for item in it:
                if item.name.lower().endswith(_METADATA_SUFFIXES):
                    try:
                        found.append([item.name, item.stat().st_mtime_ns])
                    except OSError:
                        found.append([item.name, None])
        return [entry, sorted(found)] if found else None
    except NotADirectoryError:
        pass
    except OSError:
        return None
    try:
        return [entry, os.stat(entry).st_mtime_ns]
    except OSError:
        return None


def fingerprint() -> dict[str, Any]:
    """What the installed plugins depend on, as JSON-ready lists (no imports needed)."""
    entries = (_path_entry(p) for p in sys.path)
    return {
        "dffcore": __version__,
        "python": [sys.executable, sys.version],
        "autoload": not os.environ.get(AUTOLOAD_ENV),
        "path": [e for e in entries if e is not None],
    }


def file_stamp(path: str) -> list[Any]:
    """``[path, mtime_ns, size]`` of a module file."""
    st = os.stat(path)
    return [path, st.st_mtime_ns, st.st_size]


def render_component(item: dict[str, Any]) -> str:
    """One component's block of the ``dff plugins`` listing (``item``: what
    :meth:`~dffcore.core.registry.Registry.describe` returns for it)."""
    dist = f"{item['distribution']} {item['version']}".strip() or item["plugin"]
    lines = [f"\n{item['kind']:<10} {item['name']:<18} [{dist}]  {item['summary']}"]
    for prm in item["params"]:
        default = "required" if prm["required"] else f"= {prm['default']!r}"
        lines.append(f"    {prm['name']}: {prm['type']} {default}  {prm['doc']}")
    if item["kind"] == READ:
        what = "one file per stack" if item["container"] else "one file per frame"
        extra = f"; needs pip install 'dffcore[{item['extra']}]'" if item["extra"] else ""
        lines.append(f"    reads: {' '.join(item['suffixes'])} ({what}{extra})")
    lines.append(f"    module: {item['module']}")
    if item["citation"]:
        lines.append(f"    cites: {item['citation']}")
    if item["licence"]:
        lines.append(f"    licence: {item['licence']}")
    return "\n".join(lines)


def plugins_line(plugins: list[list[str]]) -> str:
    """``plugins: builtin-0.1.0, example-0.3.1`` from ``[plugin, distribution, version]``."""
    return "plugins: " + ", ".join(f"{p}-{v}" if v else p for p, _, v in plugins)


def _valid(data: Any) -> bool:
    """Whether ``data`` has the layout :func:`write` gives (a truncated or edited file
    that still parses must not break a command)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return False
    plugins, files, comps = data.get("plugins"), data.get("files"), data.get("components")
    if not (isinstance(plugins, list) and isinstance(files, list) and isinstance(comps, list)):
        return False
    if not all(isinstance(p, list) and len(p) == 3 and all(isinstance(s, str) for s in p)
               for p in plugins):  # fmt: skip
        return False
    if not all(isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) for f in files):
        return False
    for c in comps:
        if not isinstance(c, dict) or not isinstance(c.get("describe"), dict):
            return False
        if not all(isinstance(c.get(k), str) for k in ("qualname", "text", "file")):
            return False
        d = c["describe"]
        keys = ("kind", "name", "module", "plugin", "distribution", "version")
        if d.get("kind") not in COMPONENT_KINDS or not all(isinstance(d.get(k), str) for k in keys):
            return False
        if d["kind"] == READ and not (
            isinstance(d.get("suffixes"), list) and all(isinstance(x, str) for x in d["suffixes"])
        ):
            return False
    return True


def read() -> dict[str, Any] | None:
    """The index, if there is one and it matches this environment; None otherwise."""
    if not enabled():
        return None
    fp = fingerprint()
    path = cache_path(fp)
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        logger.debug("plugin cache %s unreadable: %s", path, exc)
        return None
    try:
        if not _valid(data):
            logger.debug("plugin cache %s: not an index of this version", path)
            return None
        if data.get("fingerprint") != fp:
            logger.debug("plugin cache %s: the installed packages changed", path)
            return None
        for stamp in data["files"]:
            try:
                now = file_stamp(stamp[0])
            except OSError:
                now = None
            if now != stamp:
                logger.debug("plugin cache %s: %s changed", path, stamp[0])
                return None
    except Exception as exc:  # never let the cache break a command
        logger.debug("plugin cache %s: %s", path, exc)
        return None
    return data


def write(
    plugins: list[list[str]], components: list[dict[str, Any]], files: list[str]
) -> Path | None:
    """Write the index atomically (a temporary file renamed over the old one).

    Parameters
    ----------
    plugins : list
        ``[plugin, distribution, version]`` of every loaded plugin, in load order.
    components : list of dict
        Per component: ``describe`` (JSON-ready), ``text`` (its listing block),
        ``qualname`` and ``file`` (of its class's module).
    files : list of str
        Module files the listing depends on; a change to any invalidates the index.

    Returns
    -------
    Path or None
        The file written, or None (disabled, or it could not be written: logged at
        debug level only).
    """
    if not enabled():
        return None
    import tempfile  # only when writing: it imports random and hashlib

    fp = fingerprint()
    path = cache_path(fp)
    tmp = None
    try:
        data = {
            "format": FORMAT,
            "fingerprint": fp,
            "files": [file_stamp(f) for f in sorted(set(files))],
            "plugins": plugins,
            "components": components,
        }
        text = json.dumps(data, separators=(",", ":"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".plugins-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:  # an unwritable folder, a full disk, an odd value: no cache
        logger.debug("plugin cache %s not written: %s", path, exc)
        return None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def json_ready(value: Any) -> Any:
    """``value`` as ``json.dumps(value, default=str)`` then ``json.loads`` gives it back."""
    return json.loads(json.dumps(value, default=str))
