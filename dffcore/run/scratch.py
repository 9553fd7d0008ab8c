"""Temporary folders that name the process that made them, so later runs can clean up.

A run's temporary folders (streamed frames, an output folder being written) carry the
process id and the process start time in their names (:func:`process_tag`). A process
killed with SIGKILL cannot remove them; the next run does: :func:`sweep` removes every
folder whose tag names a process that is gone (no such pid, or a pid reused by a process
started at another time). Folders of live runs are left alone.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def _start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``); 0 where
    the OS does not tell; None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _alive_or_none(pid)
    except OSError:
        return _alive_or_none(pid)
    try:  # the command name (field 2) may hold spaces and parentheses: split after it
        fields = text.rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])  # a zombie is dead
    except (IndexError, ValueError):
        return 0


def _alive_or_none(pid: int) -> int | None:
    """0 when process ``pid`` exists (start time unknown), None when it does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # exists, owned by someone else
        return 0
    return 0


@functools.cache
def _own_start() -> int:
    return _start_time(os.getpid()) or 0


def process_tag() -> str:
    """``"<pid>-<start time>"`` of this process, for temporary folder names."""
    return f"{os.getpid()}-{_own_start()}"


def is_dead(pid: int, start: int) -> bool:
    """True when no process ``pid`` started at ``start`` is running.

    Parameters
    ----------
    pid : int
        Process id from a tag.
    start : int
        Start time from the same tag (0: unknown, only the pid is checked).

    Returns
    -------
    bool
        True for a pid that does not exist, or that a process started at another time
        now uses.
    """
    now = _start_time(pid)
    if now is None:
        return True
    return bool(start and now and now != start)


def sweep(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``folder`` matching ``pattern`` whose process is dead.

    Parameters
    ----------
    folder : Path
        Where to look (a missing or unreadable folder is skipped).
    pattern : str
        Regular expression with groups ``pid`` and ``start`` matched against the full name.

    Returns
    -------
    list of Path
        The entries that were removed.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    rx = re.compile(pattern)
    for name in names:
        m = rx.fullmatch(name)
        if m is None or not is_dead(int(m["pid"]), int(m["start"])):
            continue
        path = folder / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            logger.warning("cannot remove %s, left by a dead run: %s", path, exc.strerror or exc)
            continue
        logger.info("removed %s, left by a dead run", path)
        removed.append(path)
    return removed
