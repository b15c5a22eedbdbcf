"""Batches items from many producer threads (one per camera) for one batch function.

Producers call `submit(item)` and get a Future. The owning thread (the one that holds the runtime and
its CUDA context) calls `run_once()` in a loop: it waits for a first item, then for more until
`max_batch` are waiting or `max_wait_ms` has passed since the first of them was submitted, calls the
batch function once, checks that it returned exactly one result per item, and resolves the futures in
submission order. When the function raises, or returns the wrong number of results, every item of that
batch gets the error; `close()` hands an error to every item still waiting. `submit` blocks while
`capacity` items wait (back-pressure: a camera's ring then drops its oldest window).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from streamer.errors import StreamerError

T = TypeVar("T")
R = TypeVar("R")


class BatchError(StreamerError, RuntimeError):
    """The batch function broke its contract (not one result per input). Not recoverable for the items
    of that batch; later batches are unaffected."""


class BatcherClosed(StreamerError, RuntimeError):
    """The batcher was closed before this item ran. Not recoverable: the engine is stopping."""


class Batcher(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int, max_wait_ms: float,
                 capacity: int = 0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.capacity = capacity if capacity > 0 else 0
        self._items: deque[tuple[T, Future[R], float]] = deque()
        self._cond = threading.Condition()
        self._closed: BaseException | None = None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def submit(self, item: T, timeout: float | None = None) -> Future[R]:
        """Queue one item; its future resolves with its own result (or the batch's error). Blocks while
        `capacity` items wait; TimeoutError after `timeout` s of that, BatcherClosed once closed."""
        fut: Future[R] = Future()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.capacity and len(self._items) >= self.capacity and self._closed is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"the batcher stayed full ({self.capacity} waiting) for {timeout:g} s")
                self._cond.wait(left)
            if self._closed is not None:
                raise BatcherClosed("the batcher is closed") from self._closed
            self._items.append((item, fut, time.monotonic()))
            self._cond.notify_all()
        return fut

    def _take(self, timeout: float) -> list[tuple[T, Future[R], float]]:
        """Up to max_batch items: waits up to `timeout` for the first, then until the batch is full or
        max_wait has passed since the first was submitted."""
        end = time.monotonic() + timeout
        with self._cond:
            while not self._items and self._closed is None:
                left = end - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            if not self._items:
                return []
            deadline = self._items[0][2] + self.max_wait
            while len(self._items) < self.max_batch and self._closed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._cond.notify_all()  # room for blocked producers
        return batch

    def run_once(self, timeout: float) -> int:
        """Form one batch (waiting up to `timeout` for its first item), run it, resolve its futures.
        Returns the number of items run (0 when none came)."""
        batch = self._take(timeout)
        if not batch:
            return 0
        items = [b[0] for b in batch]
        futures = [b[1] for b in batch]
        try:
            results = self.fn(items)
            if len(results) != len(items):
                raise BatchError(f"the batch function returned {len(results)} results for {len(items)} inputs")
        except BaseException as e:  # every caller of this batch gets the failure, then the owner decides
            for f in futures:
                f.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return len(items)
        for f, r in zip(futures, results):
            f.set_result(r)
        return len(items)

    def close(self, error: BaseException | None = None) -> None:
        """Refuse new items and fail every waiting one (with `error`, or BatcherClosed)."""
        with self._cond:
            self._closed = error or BatcherClosed("the batcher is closed")
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        for _item, f, _t in left:
            f.set_exception(self._closed)
