"""Batches windows across cameras: returns when `max_batch` are waiting or `max_wait_ms` has passed."""

from __future__ import annotations

import queue
import time
from typing import Any


class Batcher:
    def __init__(self, max_batch: int, max_wait_ms: float, capacity: int = 0) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._q: queue.Queue = queue.Queue(maxsize=capacity)

    def put(self, item: Any) -> None:
        """Blocks when full: back-pressure goes to the camera's ring, which drops its oldest window."""
        self._q.put(item)

    def next_batch(self, timeout: float) -> list[Any]:
        """Up to max_batch items: waits up to `timeout` for the first, then at most max_wait for the rest."""
        try:
            batch = [self._q.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._q.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                break
        return batch
