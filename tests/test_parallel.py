"""The bounded, ordered thread map behind parallel decoding and slice smoothing."""

from __future__ import annotations

import threading

from dffcore.ops.parallel import ordered_map


def test_results_in_order_and_never_far_ahead_of_the_consumer() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            started.append(x)
        return x * x

    items = list(range(20))
    out = []
    for i, r in enumerate(ordered_map(work, items, jobs=2, ahead=3)):
        out.append(r)
        with lock:
            assert max(started) <= i + 3  # at most 3 items beyond the one consumed
    assert out == [x * x for x in items]
    assert list(ordered_map(work, items, jobs=1)) == out  # one job: a plain map
