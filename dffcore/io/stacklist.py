"""The stacks of a batch (``dff batch``): folders of frames and files that hold a whole
stack, given as paths, glob patterns and ``@list.txt`` files, and their output names.

A stack file is one a container reader takes (:func:`dffcore.io.readers.choose_reader`
with the readers of the default registry): a z-stack TIFF, a video. Its name is the file
name without the ending its reader is chosen by (``sample.ome.tif`` -> ``sample``); a
folder's name is the folder name.
"""

from __future__ import annotations

import glob as globmod
from collections.abc import Sequence
from pathlib import Path

from dffcore.core.errors import DffError
from dffcore.io.readers import (
    Readers,
    check_reader_name,
    container_endings,
    ending_length,
    installed_readers,
    is_stack_file,
)
from dffcore.io.stack import natural_key


def collect_stacks(sources: Sequence[str | Path], reader: str | None = None) -> list[Path]:
    """Stacks from folders, stack files, glob patterns and ``@list.txt`` files.

    A stack file holds a whole stack: a file a container reader takes (``reader`` names
    the reader instead of the file's ending choosing it, as ``--reader`` does). A pattern
    keeps the folders and stack files it matches. A list file holds one folder, file or
    pattern per line; blank lines and lines starting with ``#`` are ignored; relative
    entries are relative to the list file's folder. Duplicates are dropped; the order is
    kept, pattern matches in natural order. Raises :class:`DffError` naming the entry for
    a missing folder or file, a file no reader takes, a pattern that matches no stack, or
    an empty list.
    """
    readers = installed_readers()
    if reader is not None:
        check_reader_name(reader, readers, "--reader")
    found: list[Path] = []
    for source in sources:
        text = str(source)
        if text.startswith("@"):
            found.extend(_read_list(Path(text[1:]), readers, reader))
        else:
            found.extend(_expand(text, text, readers, reader))
    if not found:
        raise DffError("no stacks given: name folders, stack files, glob patterns or @list.txt")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _read_list(path: Path, readers: Readers, reader: str | None) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise DffError(f"@{path}: cannot read the stack list: {why}") from None
    out: list[Path] = []
    for lineno, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        full = entry if Path(entry).is_absolute() else str(path.parent / entry)
        out.extend(_expand(full, f"{path}:{lineno}: {entry}", readers, reader))
    if not out:
        raise DffError(
            f"@{path}: lists no stack folders or files (one folder or file per line, # comments)"
        )
    return out


def _expand(
    text: str,
    label: str,
    readers: Readers,
    reader: str | None,
) -> list[Path]:
    if any(c in text for c in "*?["):
        matches = [
            p
            for p in map(Path, globmod.glob(text))
            if p.is_dir() or (p.is_file() and is_stack_file(p, readers, reader))
        ]
        if not matches:
            raise DffError(f"{label}: the pattern matches no folders or stack files")
        return sorted(matches, key=lambda p: natural_key(str(p)))
    path = Path(text)
    if path.is_dir() or (path.is_file() and is_stack_file(path, readers, reader)):
        return [path]
    if path.exists():
        endings = ", ".join(container_endings(readers)) or "(no reader installed)"
        raise DffError(
            f"{label}: is a file that no reader takes as a whole stack; a stack is a folder "
            f"of images or one file ending in {endings}"
        )
    raise DffError(f"{label}: no such folder or file")


def stack_name(stack: str | Path) -> str:
    """A stack's name: its folder's name, or a stack file's name without the ending its
    reader is chosen by (the longest a reader has; else the last suffix); a file named
    just ``stack`` (``ds/a/stack.ome.tif``, as ``dff synth --format`` writes) takes its
    folder's name."""
    path = Path(stack).resolve()
    name = path.name or "stack"
    if not path.is_file():
        return name
    cut = ending_length(path, installed_readers()) or len(path.suffix)
    stem = name[: len(name) - cut] or name
    return path.parent.name if stem.lower() == "stack" and path.parent.name else stem


def unique_names(stacks: Sequence[str | Path]) -> list[str]:
    """Output folder names: :func:`stack_name`, ``-2``, ``-3``, ... for later namesakes."""
    bases = [stack_name(s) for s in stacks]
    taken: set[str] = set()
    names: list[str | None] = [None] * len(bases)
    for i, base in enumerate(bases):  # first occurrences keep their name
        if base not in taken:
            names[i] = base
            taken.add(base)
    reserved = set(bases)
    for i, base in enumerate(bases):
        if names[i] is None:
            k = 2
            while f"{base}-{k}" in taken or f"{base}-{k}" in reserved:
                k += 1
            names[i] = f"{base}-{k}"
            taken.add(names[i])
    return [str(n) for n in names]
