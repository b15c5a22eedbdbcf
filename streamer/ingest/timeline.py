"""A source's timeline: decoded frame times -> the camera's own times, one way for every input.

Times are rebased to the source's first timestamp plus `offset` (a reconnect or a loop continues where
the last one stopped). A frame without a timestamp continues from the previous one of its kind. A jump
of more than MAX_GAP_S forward (past the newest time of either kind: audio that resumes beside video
after a long silence only had a gap) or MAX_BACKWARD_S back (behind the last of its kind) is a
discontinuity (camera clock reset, PTS wrap, spliced stream): that kind continues one step after its
last time instead, with its own correction, so one stream's jump never moves the other (the same jump
seen by the other kind takes the correction already made: one discontinuity); a shorter gap stays a gap.
A live-paced file (`realtime`) waits until each time is due on the wall clock (`stop` set: it stops waiting).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

MAX_GAP_S = 10.0  # a forward jump beyond this is a discontinuity; a shorter one is a gap (silence, stale frames)
MAX_BACKWARD_S = 1.0  # a backward jump beyond this is a discontinuity (wrap or reset)


class Timeline:
    def __init__(self, camera: str, offset: float = 0.0, wall0: float | None = None, realtime: bool = False,
                 stop: threading.Event | None = None) -> None:
        """`wall0`: monotonic time of timeline time 0 (for pacing); `offset`: timeline time of the first frame;
        `stop`: when set, pacing returns at once (a reader told to stop)."""
        self.camera, self.offset, self.realtime, self.stop = camera, offset, realtime, stop
        self.wall0 = time.monotonic() - offset if wall0 is None else wall0
        self.t0: float | None = None  # the source's first timestamp
        self.shift: dict[str, float] = {"video": 0.0, "audio": 0.0}  # each kind's accumulated correction for jumps
        self.discontinuities = 0
        self._last_t: dict[str, float | None] = {"video": None, "audio": None}  # source times
        self._last_rt: dict[str, float | None] = {"video": None, "audio": None}  # timeline times

    def peek(self, t: float, kind: str = "video") -> float | None:
        """Where source time `t` would land now (None before the first frame): for decisions taken before
        decoding, e.g. whether a packet's frame is sampled."""
        return None if self.t0 is None else t - self.t0 + self.offset + self.shift[kind]

    def place(self, kind: str, t: float | None, step: float) -> float:
        """The timeline time of a `kind` ("video" or "audio") frame at source time `t` (None: no timestamp);
        `step` is the frame's duration (where a frame without timestamp or after a jump is put)."""
        if t is None:
            prev = self._last_t[kind]
            t = (prev + (step if kind == "video" else 0.0)) if prev is not None else (self.t0 or 0.0)
        if self.t0 is None:
            self.t0 = t
        self._last_t[kind] = t
        base = t - self.t0 + self.offset
        rt = base + self.shift[kind]
        prev_rt = self._last_rt[kind]
        if prev_rt is not None and self._jumped(kind, rt):
            # the jump the other kind already corrected (one clock reset of the source): take its correction
            other = next((s for k, s in self.shift.items() if k != kind and not self._jumped(kind, base + s)), None)
            if other is not None:
                self.shift[kind] = other
                rt = base + other
            else:
                self.shift[kind] += prev_rt + step - rt
                log.warning("camera %s: %s timestamp jumped by %+.3f s; timeline continued", self.camera, kind, rt - prev_rt)
                rt = prev_rt + step
                self.discontinuities += 1
        self._last_rt[kind] = rt
        return rt

    def _jumped(self, kind: str, rt: float) -> bool:
        """Whether `rt` is a jump for `kind`: behind its last time by MAX_BACKWARD_S, or past the newest
        time of either kind by MAX_GAP_S (the common case, within its own gap, decided first)."""
        prev = self._last_rt[kind]
        assert prev is not None
        if rt < prev - MAX_BACKWARD_S:
            return True
        return rt > prev + MAX_GAP_S and rt > max(x for x in self._last_rt.values() if x is not None) + MAX_GAP_S

    def pace(self, rt: float) -> bool:
        """For a live-paced file: sleep until timeline time `rt` is due. False when `stop` was set."""
        if self.realtime:
            delay = self.wall0 + rt - time.monotonic()
            if delay > 0:
                if self.stop is not None:
                    return not self.stop.wait(delay)
                time.sleep(delay)
        return self.stop is None or not self.stop.is_set()
