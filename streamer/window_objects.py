"""A window's moving objects travel beside it, not through the engine.

The ingest process puts `(start, objects, objects_s)` on its camera's objects queue before the window enters
the engine's ring (streamer/ring.py strips them from what the engine gets), so they practically always
arrive first. The main process makes a fresh queue for each ingest process it spawns (a killed process
cannot leave a lock held on the next one's queue, nor block another camera), and, when a camera's result
arrives, drains that camera's queue into a small store keyed by window start (`take`). Entries older than
the window being scored go; a capped deque covers the windows in flight across an engine restart.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KEEP = 64  # per camera: windows whose objects wait for their result (ring slots in flight, an engine restart)
Entry = tuple[float, np.ndarray, float]  # (window start, objects, objects_s)


class WindowObjects:
    """Each camera's objects queue (written by its ingest process) and what has been drained from it."""

    def __init__(self, ctx: Any, keep: int = KEEP) -> None:
        self.ctx, self.keep = ctx, keep
        self.queues: dict[str, Any] = {}
        self.kept: dict[str, deque[Entry]] = {}

    def fresh(self, cid: str) -> Any:
        """A new queue for a camera's new ingest process; what the old one delivered in time is kept."""
        old = self.queues.get(cid)
        if old is not None:
            self.drain(cid)
            old.cancel_join_thread()
        q = self.queues[cid] = self.ctx.Queue()
        self.kept.setdefault(cid, deque(maxlen=self.keep))
        return q

    def drop(self, cid: str) -> None:
        q = self.queues.pop(cid, None)
        if q is not None:
            q.cancel_join_thread()
        self.kept.pop(cid, None)

    def drain(self, cid: str) -> None:
        """What the camera's ingest process has queued so far, into the store (never waits)."""
        q, kept = self.queues.get(cid), self.kept.get(cid)
        if q is None or kept is None:
            return
        for _ in range(4 * self.keep):  # bounded: a busy producer cannot hold the detection thread
            try:
                kept.append(q.get_nowait())
            except queue.Empty:
                return
            except (EOFError, OSError, ValueError) as e:  # a queue whose writer died mid-message
                log.debug("camera %s: objects queue: %s", cid, e)
                return

    def take(self, cid: str, start: float) -> tuple[np.ndarray | None, float] | None:
        """The objects of the camera's window starting at `start` (None: they have not arrived; objects None:
        the window has none, e.g. a microphone's). Entries before it go: their results will not come."""
        self.drain(cid)
        kept = self.kept.get(cid)
        if not kept:
            return None
        found = next((i for i, e in enumerate(kept) if e[0] == start), None)
        if found is None:
            while kept and kept[0][0] < start:
                kept.popleft()
            return None
        for _ in range(found):
            kept.popleft()
        _s, objects, objects_s = kept.popleft()
        return objects, objects_s


def send(q: Any, w: Any) -> None:
    """Ingest side: a window's objects onto its camera's queue (None: anomaly scoring is off)."""
    if q is not None:
        q.put((w.start, w.objects, w.objects_s))
