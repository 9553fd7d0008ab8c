"""Worker threads: OpenCV and NumPy release the GIL, so threads use every core."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def ordered_map(
    fn: Callable[[Any], Any], items: Sequence[Any], jobs: int, ahead: int | None = None
) -> Iterator[Any]:
    """``map(fn, items)`` on ``jobs`` threads, results in order, at most ``ahead`` (default
    ``jobs``) of them computed before the consumer asks: memory stays bounded however
    slow the consumer is. ``jobs`` 1 runs in the calling thread."""
    if jobs <= 1:
        yield from map(fn, items)
        return
    ahead = max(1, ahead or jobs)
    with ThreadPoolExecutor(jobs) as pool:
        pending = deque(pool.submit(fn, x) for x in items[:ahead])
        for i in range(len(items)):
            result = pending.popleft().result()
            if i + ahead < len(items):
                pending.append(pool.submit(fn, items[i + ahead]))
            yield result
