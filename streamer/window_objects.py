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
import threading
from collections import deque
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KEEP = 64  # per camera: windows whose objects wait for their result (ring slots in flight, an engine restart)
Entry = tuple[float, np.ndarray, float]  # (window start, objects, objects_s)


class WindowObjects:
    """Each camera's objects queue (written by its ingest process), read by a thread of its own into a
    small store: the detection thread never reads a pipe, so a writer killed mid-message can block only
    that reader thread, never detection."""

    def __init__(self, ctx: Any, keep: int = KEEP) -> None:
        self.ctx, self.keep = ctx, keep
        self.queues: dict[str, Any] = {}
        self.kept: dict[str, deque[Entry]] = {}
        self.lock = threading.Lock()

    def fresh(self, cid: str) -> Any:
        """A new queue (and reader) for a camera's new ingest process; what the old one delivered is kept."""
        self._end(self.queues.get(cid))
        q = self.queues[cid] = self.ctx.Queue()
        with self.lock:
            kept = self.kept.setdefault(cid, deque(maxlen=self.keep))
        threading.Thread(target=self._read, args=(cid, q, kept), name=f"streamer:objects:{cid}", daemon=True).start()
        return q

    def drop(self, cid: str) -> None:
        self._end(self.queues.pop(cid, None))
        with self.lock:
            self.kept.pop(cid, None)

    @staticmethod
    def _end(q: Any) -> None:
        if q is not None:
            q.put(None)  # ends its reader; one stuck in a message cut short by a killed writer stays blocked, abandoned (a daemon thread)
            q.cancel_join_thread()

    def _read(self, cid: str, q: Any, kept: deque[Entry]) -> None:
        while True:
            try:
                entry = q.get()
            except Exception as e:  # a message cut short by a writer killed mid-write: this queue is done
                log.debug("camera %s: objects queue: %s", cid, e)
                return
            if entry is None:
                return
            with self.lock:
                kept.append(entry)

    def take(self, cid: str, start: float) -> tuple[np.ndarray | None, float] | None:
        """The objects of the camera's window starting at `start` (None: they have not arrived; objects None:
        the window has none, e.g. a microphone's). Entries before it go: their results will not come."""
        with self.lock:
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
