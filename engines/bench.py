"""Throughput of a runtime on random windows (windows per second at a given batch size)."""

from __future__ import annotations

import time

from engines.export import random_feed
from engines.runtime.base import Runtime


def measure_throughput(runtime: Runtime, batch: int, seconds: float = 3.0, warmup: int = 3) -> float:
    """Windows/s of `runtime.infer` at `batch`, over about `seconds` of wall time (after warm-up)."""
    feeds = [random_feed(runtime.spec, batch, seed=i) for i in range(4)]
    for i in range(warmup):
        runtime.infer(feeds[i % 4])
    n, i = 0, 0
    t0 = time.perf_counter()
    while True:
        runtime.infer(feeds[i % 4])
        n += batch
        i += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt
