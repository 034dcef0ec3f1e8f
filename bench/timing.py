"""Time two ways of doing the same work, alternating, so that drift in the machine hits both alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(ours: Callable[[int], object], bare: Callable[[], object], repeats: int, label: str = "") -> tuple:
    """(median seconds of `ours(round)`, median of `bare()`) over `repeats` rounds after one warm-up round."""
    ours_t, bare_t = [], []
    for rep in range(repeats + 1):
        t0 = time.perf_counter()
        ours(rep)
        t1 = time.perf_counter()
        bare()
        t2 = time.perf_counter()
        if rep:
            ours_t.append(t1 - t0)
            bare_t.append(t2 - t1)
        if label:
            print(f"{label}: round {rep}: ours {t1 - t0:.2f} s, bare {t2 - t1:.2f} s", flush=True)
    return statistics.median(ours_t), statistics.median(bare_t)
