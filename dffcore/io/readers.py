"""Choosing the reader of a stack source: image files, or a reader component.

A focal stack is a folder, glob or list of image files (read by :mod:`dffcore.io.images`),
or what a ``read`` component (:class:`dffcore.core.components.Reader`) reads: one file
holding the whole stack (a z-stack TIFF, a video), or a folder of frames in a format the
image reader does not decode (RAW photos). Readers are chosen by the endings of file
names (:attr:`Reader.suffixes`, the longest match wins) or by name (``--reader``), and
come from plugins like every other component (``dff plugins --kind read``).
"""

from __future__ import annotations

import glob as globmod
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dffcore.core.errors import DffError, did_you_mean
from dffcore.io.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

_FRAMES = re.compile(r"^\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*(?::\s*(\d+)?\s*)?)?$")


def parse_frames(text: str | slice | None) -> slice:
    """``--frames START:STOP:STEP`` as a slice: 0-based like a Python slice, each part
    optional (``10:200:2``, ``::3``, ``:-1``); a slice passes through, None is every
    frame."""
    if text is None:
        return slice(None)
    if isinstance(text, slice):
        return text
    m = _FRAMES.match(text)
    if not m or ":" not in text:
        raise DffError(
            f"--frames {text!r}: expected START:STOP:STEP (each optional, e.g. 10:200:2 "
            "or ::3), 0-based like a Python slice"
        )
    start, stop, step = (int(g) if g else None for g in m.groups())
    if step == 0:
        raise DffError(f"--frames {text!r}: the step must be at least 1")
    return slice(start, stop, step)


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_read_params(items: Sequence[str]) -> dict[str, Any]:
    """``--read KEY=VALUE`` options as a mapping; a value reads as a YAML scalar
    (``1`` is a number, ``true`` a boolean, anything else text)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise DffError(f"--read {item!r}: expected KEY=VALUE, e.g. --read series=1")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)) or value is None:
            value = text  # scalars only: a bracket or a '~' is text here
        out[key] = value
    return out


def read_record(read: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The reader options as ``run.json``'s ``stack.read`` records them (None: none)."""
    if not read:
        return None
    record = {k: read.get(k) for k in ("frames", "reader", "read_params")}
    record["read_params"] = dict(record["read_params"] or {})
    return None if record == {"frames": None, "reader": None, "read_params": {}} else record


@dataclass(frozen=True)
class ReaderChoice:
    """The reader of a source: its name (None: image files) and the files it reads."""

    name: str | None
    paths: list[Path]


#: (name, file-name endings, container) of each reader, as
#: :meth:`dffcore.core.registry.Registry.readers` gives them
Readers = list[tuple[str, tuple[str, ...], bool]]


def installed_readers() -> Readers:
    """The readers of the default registry (from the plugin index: nothing imported)."""
    from dffcore.core.registry import default_registry

    return default_registry().readers()


def check_reader_name(name: str, readers: Readers, option: str = "") -> None:
    """A :class:`DffError` unless ``name`` is one of ``readers`` (``option``: how the
    user gave it, e.g. ``--reader``, to name it in the error)."""
    names = sorted(r[0] for r in readers)
    if name not in names:
        where = f"{option} {name}: unknown reader" if option else f"unknown reader '{name}'"
        raise DffError(
            f"{where}.{did_you_mean(name, names)} Available: {', '.join(names) or '(none)'}"
        )


def container_endings(readers: Readers) -> list[str]:
    """The file-name endings of the readers that take one file as a whole stack."""
    return sorted({s for _, suffixes, container in readers if container for s in suffixes})


def ending_length(path: Path, readers: Readers) -> int:
    """Length of the longest reader ending that ``path``'s name ends with (0: none)."""
    return max((_matches(path, suffixes) for _, suffixes, _ in readers), default=0)


def is_stack_file(path: Path, readers: Readers | None = None, forced: str | None = None) -> bool:
    """Whether ``path`` is a file that a container reader takes as a whole stack."""
    try:
        choose_reader(path, readers, forced)
    except DffError:
        return False
    return True


def _matches(path: Path, suffixes: Sequence[str]) -> int:
    """Length of the longest of ``suffixes`` that ``path``'s name ends with (0: none)."""
    name = path.name.lower()
    return max((len(s) for s in suffixes if name.endswith(s)), default=0)


def _best(path: Path, readers: Readers) -> str | None:
    scored = [(_matches(path, suffixes), name) for name, suffixes, _ in readers]
    length, name = max(scored, default=(0, ""))
    return name if length else None


def _listed(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], str] | None:
    """The files of a folder, glob or list (unsorted) and how to name the source in an
    error; None for a single file."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        for p in paths:
            if not p.is_file():
                raise DffError(f"{p}: no such file")
        return paths, "the files given"
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()], str(path)
    if path.is_file():
        return None
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in globmod.glob(text) if Path(p).is_file()]
        if not paths:
            raise DffError(f"{text}: the pattern matches no files")
        return paths, text
    raise DffError(f"{path}: no such file or folder")


def choose_reader(
    source: str | Path | Sequence[str | Path],
    readers: Readers | None = None,
    forced: str | None = None,
) -> ReaderChoice:
    """Which reader reads ``source`` (``readers``: default :func:`installed_readers`;
    ``forced``: a reader's name). Image files come first in a folder that also holds
    frames a reader reads (RAW next to JPEG): those are logged, a glob picks them."""
    readers = installed_readers() if readers is None else readers
    by_name = {name: (suffixes, container) for name, suffixes, container in readers}
    if forced is not None:
        check_reader_name(forced, readers)
    listed = _listed(source)
    containers = [r for r in readers if r[2]]
    per_frame = [r for r in readers if not r[2]]
    if listed is None:  # a single file: a whole stack in one file
        path = Path(str(source))
        name = forced or _best(path, containers)
        if name is not None and by_name[name][1]:
            return ReaderChoice(name, [path])
        raise DffError(
            f"{path}: is a single file that no reader takes as a whole stack; a focal stack "
            f"is a folder of 2 or more images, or one file ending in "
            f"{', '.join(container_endings(readers))}"
        )
    files, where = listed
    if forced is not None:
        if by_name[forced][1]:
            raise DffError(
                f"reader '{forced}' reads one file that holds a whole stack; give that "
                f"file, not {where}"
            )
        return ReaderChoice(forced, files)
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others: dict[str, list[Path]] = {}
    for p in files:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            name = _best(p, per_frame)
            if name is not None:
                others.setdefault(name, []).append(p)
    if images:
        for name, paths in others.items():
            logger.info(
                "%s: also holds %d frames the '%s' reader reads (a glob such as *%s picks them)",
                where,
                len(paths),
                name,
                paths[0].suffix.lower(),
            )
        return ReaderChoice(None, images)
    if len(others) == 1:
        ((name, paths),) = others.items()
        return ReaderChoice(name, paths)
    if len(others) > 1:
        kinds = ", ".join(f"{len(v)} for '{k}'" for k, v in sorted(others.items()))
        raise DffError(f"{where}: holds frames of several formats ({kinds}); give a glob")
    endings = [*IMAGE_EXTENSIONS, *sorted({s for _, sfx, _ in per_frame for s in sfx})]
    raise DffError(f"{where}: no images found (looked for {', '.join(endings)} files)")


def make_reader(name: str, params: dict[str, Any] | None = None) -> Any:
    """An instance of the reader ``name`` with ``params`` (a clear error for a bad one)."""
    from pydantic import ValidationError

    from dffcore.core.registry import default_registry

    entry = default_registry().get("read", name)
    try:
        return entry.cls(params or {})
    except ValidationError as exc:
        fields = list(entry.cls.Params.model_fields)
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            hint = did_you_mean(key, fields)
            raise DffError(
                f"--read {key}: unknown parameter of reader '{name}'.{hint} "
                f"Valid: {', '.join(fields) or '(none)'}"
            ) from None
        msg = err.get("msg", "invalid value")
        raise DffError(f"--read {key}: {msg} (reader '{name}')") from None
