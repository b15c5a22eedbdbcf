"""Each camera's recent evidence (keyframe and audio) in shared memory, written by its ingest process and
read by the main process for a start alert, without asking the engine.

The ingest process writes every window's keyframe and audio into the next slot before the window goes
to the engine's ring (streamer/ring.py); the main process reads a window's by its start time once the
engine has scored it. The ring keeps the last `slots` windows written (every window, dropped ones too):
the window ring's `window.queue` plus EVIDENCE_KEEP, 10 s at the default queue and 0.5 s hop. A start
alert whose window is older than that by the time it is judged (detection that far behind) gets no
evidence: its alert goes without, counted in streamer_evidence_missed_total.

One writer (a respawned ingest process continues at the cursor kept in the shared header), readers
that never hold it back: a slot's sequence number is odd while it is written, and a reader that sees
it change while copying reports the window as not kept.
"""

from __future__ import annotations

import logging
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from streamer.window import Window

log = logging.getLogger(__name__)

EVIDENCE_KEEP = 16  # windows kept beyond what the window ring holds (8 s at the 0.5 s hop)
_SEQ, _START, _HEIGHT, _WIDTH, _AUDIO = range(5)  # a slot's fields in the header
_FIELDS = 5
_NOWHERE = -1e18  # the start of a slot never written


class EvidenceRing:
    """`slots` windows' keyframes (RGB, within `keyframe_width` square: ingest fits the longer side, see
    streamer/ingest/opening.keyframe_size) and audio (`samples` float32). Shared memory pages are used only
    once written, so a landscape camera leaves the square's lower part unused at no cost."""

    def __init__(self, samples: int, keyframe_width: int, slots: int) -> None:
        self.samples, self.slots = samples, slots
        self.k_bytes = keyframe_width * keyframe_width * 3
        self.slot_bytes = self.k_bytes + samples * 4
        self.h_bytes = 8 + slots * _FIELDS * 8  # the cursor, then each slot's fields
        self.shm = shared_memory.SharedMemory(create=True, size=self.h_bytes + slots * self.slot_bytes)
        _cursor, fields = self._header()
        fields[:, _START] = _NOWHERE

    def __getstate__(self) -> dict:
        return {**self.__dict__, "shm": self.shm.name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.shm = shared_memory.SharedMemory(name=state["shm"])

    def _header(self) -> tuple[np.ndarray, np.ndarray]:
        buf = self.shm.buf
        return np.ndarray((1,), np.int64, buf, 0), np.ndarray((self.slots, _FIELDS), np.float64, buf, 8)

    def _views(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        base = self.h_bytes + i * self.slot_bytes
        buf = self.shm.buf
        return np.ndarray((self.k_bytes,), np.uint8, buf, base), np.ndarray((self.samples,), np.float32, buf, base + self.k_bytes)

    # ---- the writer (the camera's ingest process) -----------------------------------------------------
    def put(self, w: Window) -> None:
        """A window's keyframe and audio into the next slot."""
        key = w.keyframe if w.video_mask else None
        if key is not None and key.size > self.k_bytes:
            key = None
        cursor, fields = self._header()
        i = int(cursor[0]) % self.slots
        fields[i, _SEQ] += 1  # odd: being written
        room, audio = self._views(i)
        if key is not None:
            room[: key.size] = key.reshape(-1)
        if w.audio_mask:
            audio[...] = w.audio
        fields[i, _START] = w.start
        fields[i, _HEIGHT], fields[i, _WIDTH] = key.shape[:2] if key is not None else (0, 0)
        fields[i, _AUDIO] = 1.0 if w.audio_mask else 0.0
        fields[i, _SEQ] += 1
        cursor[0] += 1

    # ---- the reader (the main process) -----------------------------------------------------------------
    def get(self, start: float) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """The (keyframe, audio) of the window that starts at `start`, copied (None for what it did not
        have); None when that window is no longer kept."""
        _cursor, fields = self._header()
        for i in range(self.slots):
            seq = fields[i, _SEQ]
            if seq % 2 or not abs(fields[i, _START] - start) < 1e-6:
                continue
            h, w = int(fields[i, _HEIGHT]), int(fields[i, _WIDTH])
            room, audio = self._views(i)
            key = room[: h * w * 3].reshape(h, w, 3).copy() if h else None
            pcm = audio.copy() if fields[i, _AUDIO] else None
            return (key, pcm) if fields[i, _SEQ] == seq else None  # else written over while copying
        return None

    def close(self, unlink: bool = False) -> None:
        try:
            self.shm.close()
            if unlink:
                self.shm.unlink()
        except (OSError, BufferError) as e:  # already gone, or a view still held
            log.debug("evidence ring %s: %s", self.shm.name, e)


class Evidence:
    """The main process's evidence rings, one per camera: made when a camera starts, read for its start
    alerts, unlinked when it goes."""

    def __init__(self, samples: int, window_queue: int) -> None:
        self.samples, self.slots = samples, window_queue + EVIDENCE_KEEP
        self.rings: dict[str, EvidenceRing] = {}

    def add(self, camera: str, keyframe_width: int) -> EvidenceRing:
        self.drop(camera)
        ring = self.rings[camera] = EvidenceRing(self.samples, keyframe_width, self.slots)
        return ring

    def drop(self, camera: str) -> None:
        ring = self.rings.pop(camera, None)
        if ring is not None:
            ring.close(unlink=True)  # its ingest process may still map it: the memory goes when it lets go

    def read(self, camera: str, start: float) -> tuple[Any, Any]:
        """A window's (keyframe, audio); (None, None) when it is no longer kept (counted)."""
        from streamer.outputs import metrics as m

        ring = self.rings.get(camera)
        found = ring.get(start) if ring is not None else None
        if found is None:
            m.EVIDENCE_MISSED.labels(camera).inc()
            log.warning("camera %s: the window at %.2f s is no longer kept; its alert goes without evidence", camera, start)
            return None, None
        return found

    def close(self) -> None:
        for camera in list(self.rings):
            self.drop(camera)
