"""What identifies a stack's input files: resolved path, size and modification time.

``run.json`` records it (``stack.files``) and ``dff batch`` resumes a stack only when the
record matches the files on disk now, so swapping two stacks' order, replacing frames or
editing the focus-distance sidecar re-runs the stack instead of reusing a stale result.
Size and ``mtime_ns`` are what ``make`` and ``rsync`` trust; hashing the frames would cost
a full read of every stack on every resume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def file_identity(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """``[{"path", "size", "mtime_ns"}, ...]`` for ``paths`` in order (absolute paths).

    A file that cannot be read gets ``size`` and ``mtime_ns`` None, so it never matches a
    record of a readable one.
    """
    out = []
    for p in paths:
        path = Path(p).resolve()
        try:
            st = path.stat()
            size, mtime = int(st.st_size), int(st.st_mtime_ns)
        except OSError:
            size = mtime = None
        out.append({"path": str(path), "size": size, "mtime_ns": mtime})
    return out
