"""A preallocated shared-memory ring of window slots, one per camera, between two processes.

It carries what the engine reads (video, audio, the small fields); a window's keyframe does not travel
here: the ingest process writes it, with the audio, to the camera's evidence ring
(streamer/evidence_ring.py), which the main process reads. Nor do its moving objects: they go to the main
process on their own queue (streamer/window_objects.py); the engine gets `objects` None.

The ingest process writes a window's arrays straight into a free slot; the queue between the
processes carries only the slot index and the window's small fields. When no slot is free (the
engine is behind), the producer takes back the oldest ready slot, so the oldest window is dropped
and memory never grows. The consumer copies a slot out and returns it at once.
"""

from __future__ import annotations

import logging
import pickle
import queue
from dataclasses import fields
from multiprocessing import context, resource_sharer, shared_memory
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

from streamer.evidence_ring import EvidenceRing
from streamer.window import Geometry, Window

END = "end"  # sentinel: the source is finished for good
_META = tuple(f.name for f in fields(Window) if f.name not in ("video", "audio", "keyframe", "objects"))  # what the queue carries


class WindowRing:
    def __init__(self, ctx: Any, geo: Geometry, slots: int) -> None:
        self.geo = geo
        self.slots = slots
        self.v_shape = (geo.frames, geo.height, geo.width, 3)
        self.v_bytes = int(np.prod(self.v_shape))
        self.a_bytes = geo.samples * 4
        self.slot_bytes = self.v_bytes + self.a_bytes
        self.shm = shared_memory.SharedMemory(create=True, size=max(slots * self.slot_bytes, 1))
        self.free: Any = ctx.Queue()
        self.ready: Any = ctx.Queue()
        for i in range(slots):
            self.free.put(i)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["shm"] = self.shm.name
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.shm = shared_memory.SharedMemory(name=state["shm"])

    def _views(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        base = i * self.slot_bytes
        buf = self.shm.buf
        video = np.ndarray(self.v_shape, np.uint8, buf, base)
        audio = np.ndarray((self.geo.samples,), np.float32, buf, base + self.v_bytes)
        return video, audio

    # ---- producer -----------------------------------------------------------------------------
    def put(self, w: Window, *, block: bool = False, timeout: float = 0.2) -> tuple[bool, bool]:
        """Write a window (not its keyframe, nor its objects: they go beside it, streamer/window_objects.py). Returns (written, dropped_oldest). With block=True waits up to timeout for a
        free slot instead of dropping (files read as fast as they decode)."""
        dropped = False
        try:
            i = self.free.get_nowait()
        except queue.Empty:
            if block:
                try:
                    i = self.free.get(timeout=timeout)
                except queue.Empty:
                    return False, False
            else:
                try:  # the oldest window gives up its slot (a short wait: queue items land asynchronously)
                    i, _meta = self.ready.get(timeout=timeout)
                    dropped = True
                except queue.Empty:
                    try:
                        i = self.free.get(timeout=timeout)  # the consumer is copying: it will return one
                    except queue.Empty:
                        return False, False
        video, audio = self._views(i)
        video[...] = w.video
        audio[...] = w.audio
        self.ready.put((i, {k: getattr(w, k) for k in _META}))  # not asdict: it deep-copies the arrays first
        return True, dropped

    def put_end(self) -> None:
        self.ready.put((-1, END))

    # ---- consumer -----------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Window | str:
        """The next window (copied out; its slot is free again at once), or END."""
        i, meta = self.ready.get(timeout=timeout)
        if meta == END:
            return END
        video, audio = self._views(i)
        w = Window(video=video.copy(), audio=audio.copy(), **meta)
        self.free.put(i)
        return w

    def close(self, unlink: bool = False) -> None:
        self.shm.close()
        if unlink:
            self.shm.unlink()

    def let_go(self) -> None:
        """Close this process's side of a ring nobody will read again: queued items must not hold the
        process at exit (the main process unlinks the memory)."""
        try:
            self.ready.cancel_join_thread()
            self.free.cancel_join_thread()
            self.close()
        except (OSError, BufferError, ValueError) as e:  # a view still held, or a queue already closed
            logging.getLogger(__name__).debug("ring %s: %s", self.shm.name, e)


class RingHandle:
    """The rings an ingest process writes to. After an engine restart the main process sends a fresh window
    ring (`share`d) on `updates`: the process keeps decoding and switches to it before its next window (the
    old ring's queues may have a lock the dead engine held). `evidence`: the camera's evidence ring (None:
    evidence is off); it is the main process's, not the engine's, and outlives engine restarts. `objects`: the
    queue of the windows' moving objects to the main process (streamer/window_objects.py; None: anomaly off)."""

    def __init__(self, ring: WindowRing, updates: Any, evidence: EvidenceRing | None = None, objects: Any = None) -> None:
        self._ring, self.updates, self.evidence, self.objects = ring, updates, evidence, objects

    def ring(self) -> WindowRing:
        try:
            data = self.updates.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return self._ring
        old, self._ring = self._ring, pickle.loads(data)
        old.let_go()
        return self._ring


class _FdSharer:
    """Stands in for a spawning Popen while a ring is pickled for a process that is already running:
    the pipes of its queues are sent through multiprocessing's resource sharer (a Unix socket passing
    the descriptors, SCM_RIGHTS), its semaphores go by name, its shared memory by name."""

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    @staticmethod
    def DupFd(fd: int) -> Any:  # noqa: N802 - the name multiprocessing.reduction calls
        return resource_sharer.DupFd(fd)


def share(ring: WindowRing) -> bytes:
    """A ring pickled for a running process (the engine), to `pickle.loads` there once. multiprocessing
    queues refuse to be pickled outside of spawning a process; this is the same pickling, with the
    descriptors passed the way multiprocessing passes connections between running processes."""
    context.set_spawning_popen(_FdSharer())
    try:
        return bytes(ForkingPickler.dumps(ring))
    finally:
        context.set_spawning_popen(None)
