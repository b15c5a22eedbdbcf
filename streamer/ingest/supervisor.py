"""The supervisor of one source, run as its own process: decode, window, reconnect.

Stalls: FFmpeg's interrupt callback (PyAV's read timeout) ends a read that got no packet for
`stall_timeout` seconds, also when the connection stays open but carries no media; the source is
then reopened with capped exponential backoff and jitter. The decoder's last log lines are kept
and logged with the error, with credentials redacted.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import signal
import time
from typing import Any

import av.logging

from streamer import urls, window_objects
from streamer.config import CameraConfig
from streamer.errors import ConfigError, HwaccelError, SourceError, redact, redact_text
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import MicReader, SourceReader
from streamer.outputs import metrics as m
from streamer.ring import RingHandle
from streamer.window import Geometry

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
MAIN_KEYFRAME_MAX = 1920  # a camera with a substream: evidence keyframes at the main stream's resolution, up to this wide


def keyframe_width(cam: CameraConfig, evidence_width: int) -> int:
    """Width of the keyframes a camera's windows carry (0: none): `evidence.jpeg_width`, or for a camera with
    a detect_url its main stream's own resolution (up to MAIN_KEYFRAME_MAX; the ring's keyframe room)."""
    return MAIN_KEYFRAME_MAX if cam.detect_url and evidence_width else evidence_width


class DecoderLog(logging.Handler):
    """Keeps FFmpeg's last warning/error lines (PyAV sends them to the `libav` logger)."""

    def __init__(self, lines: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(redact_text(f"{record.name}: {record.getMessage()}".strip()))

    def dump(self) -> str:
        if not self.lines:
            return ""
        text = "; decoder said: " + " | ".join(self.lines)
        self.lines.clear()
        return text

    @classmethod
    def install(cls) -> "DecoderLog":
        av.logging.set_level(av.logging.WARNING)
        handler = cls()
        libav = logging.getLogger("libav")
        libav.addHandler(handler)
        libav.propagate = False  # kept for the error message, not printed line by line
        return handler


def ingest_main(cam: CameraConfig, geo: Geometry, rings: RingHandle, stop: Any, keyframe_width: int = 0,
                resume: tuple[float, float] | None = None, parent_pid: int | None = None) -> None:
    """Entry point of one ingest process: decode, window, reconnect with capped exponential backoff.
    Windows go to `rings.ring()`: the camera's ring, a fresh one after an engine restart; their keyframes
    and audio to `rings.evidence`, which the main process reads for start alerts.

    `resume`: (source time, time.monotonic()) of the last window the previous ingest process of this
    camera delivered; a respawned process continues the timeline from there (plus the time since),
    so events open across the restart continue and close normally."""
    tail = _become_ingest_process(cam, parent_pid)
    for metric in (m.WINDOWS, m.RECONNECTS, *m.SOURCE_COUNTERS.values()):
        metric.labels(cam.id)  # export every series from the start, at 0
    m.WINDOWS_DROPPED.labels(cam.id, "queue_full")
    try:
        _Ingest(cam, geo, rings, stop, keyframe_width, tail).run(resume)
    finally:
        m.SOURCE_UP.labels(cam.id).set(0)
        ring = rings.ring()
        ring.put_end()
        if stop.is_set():  # stopping: windows nobody will read must not hold this process at exit
            ring.let_go()
            if rings.objects is not None:
                rings.objects.cancel_join_thread()
        else:
            ring.close()
        if rings.evidence is not None:
            rings.evidence.close()


def _become_ingest_process(cam: CameraConfig, parent_pid: int | None) -> DecoderLog:
    """Dies with the main process, named for ps, leaves SIGINT to the main process, logs redacted;
    returns the handler that keeps the decoder's last lines."""
    from streamer.errors import install_log_redaction
    from streamer.procs import die_with_parent, set_name

    die_with_parent(parent_pid)  # SIGKILL when the main process ends, however it ends
    set_name(f"ingest:{cam.id}")  # /proc/<pid>/comm, ps, top
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")
    install_log_redaction()
    return DecoderLog.install()


class _Ingest:
    """One camera's source read again and again: each connection's windows into the ring, a lost live
    source reopened after a backoff, a file read once."""

    def __init__(self, cam: CameraConfig, geo: Geometry, rings: RingHandle, stop: Any, keyframe_width: int,
                 tail: DecoderLog) -> None:
        self.cam, self.geo, self.rings, self.stop, self.tail = cam, geo, rings, stop, tail
        self.url = cam.detect_url or cam.url  # a substream is what is decoded; the main stream is then only for evidence
        self.mic_only = urls.is_mic(cam.url)
        self.stream = urls.is_live(self.url)  # live: reconnect, never wait for the engine
        self.opts = SourceOptions(cam.open_timeout, cam.stall_timeout, realtime=cam.realtime and not self.stream,
                                  loop=cam.loop and not self.stream, keyframe_width=keyframe_width,
                                  mic=cam.audio, audio_offset=cam.audio_offset_ms / 1000,
                                  hwaccel=None if cam.hwaccel == "none" else cam.hwaccel,
                                  main_url=cam.url if cam.detect_url else None)
        self.live = self.opts.realtime or self.stream  # never wait for the engine: drop the oldest
        self.backoff = 0.5
        self.frames = 0  # frames decoded by this process's earlier connections (each window says the total)
        self.pid = os.getpid()  # each window names its ingest process

    def run(self, resume: tuple[float, float] | None) -> None:
        resume_at, lost_at = resume or (0.0, 0.0)  # source time to continue from after a reconnect, and when it was lost
        while not self.stop.is_set():
            start = resume_at + (time.monotonic() - lost_at if lost_at else 0.0)
            reader = self._reader(start)
            try:
                if self._deliver_all(reader) or not self.stream:
                    return  # stopping, or a file that ended
                raise SourceError(f"source {redact(self.url)}: stream ended")
            except (HwaccelError, ConfigError) as e:  # not recoverable: a person must change the camera
                log.error("camera %s: %s", self.cam.id, e)
                return
            except SourceError as e:
                m.SOURCE_UP.labels(self.cam.id).set(0)
                self.frames += reader.stats.frames_decoded
                resume_at, lost_at = max(reader.stats.end, start), time.monotonic()
                if not self._wait_to_retry(e):
                    return

    def _reader(self, start: float) -> MicReader | SourceReader:
        cam = self.cam
        if self.mic_only:
            return MicReader(cam.url, cam.id, self.geo, cam.stall_timeout, start=start)
        return SourceReader(self.url, cam.id, self.geo, self.opts, start=start)

    def _deliver_all(self, reader: MicReader | SourceReader) -> bool:
        """The reader's windows into the ring, counted, until the source ends; True when told to stop."""
        cam_id = self.cam.id
        seen: dict[str, int] = {}  # what m.count_source exported of this reader's stats
        try:
            for w in reader.windows():
                m.SOURCE_UP.labels(cam_id).set(1)
                m.count_source(cam_id, reader.stats, seen)
                m.WINDOWS.labels(cam_id).inc()
                w.frames, w.ingest_pid = self.frames + reader.stats.frames_decoded, self.pid
                if not self._put(w):
                    return True
                self.backoff = 0.5
                if self.stop.is_set():
                    return True
            return False
        finally:  # what was counted after the last window (a source that fails before any: its decode errors)
            m.count_source(cam_id, reader.stats, seen)

    def _put(self, w: Any) -> bool:
        """One window's keyframe and audio into the evidence ring, the window into the engine's ring; False
        when told to stop while waiting for room. Its objects go first, beside it (streamer/window_objects.py)."""
        window_objects.send(self.rings.objects, w)
        if self.rings.evidence is not None:
            self.rings.evidence.put(w)
        if self.live:  # never wait, drop the oldest
            written, dropped = self.rings.ring().put(w)
            if dropped:
                m.WINDOWS_DROPPED.labels(self.cam.id, "queue_full").inc()
            if not written:
                m.WINDOWS_DROPPED.labels(self.cam.id, "no_slot").inc()
            return True
        while not self.rings.ring().put(w, block=True)[0]:  # a file read as fast as it decodes: wait, drop nothing
            if self.stop.is_set():
                return False
        return True

    def _wait_to_retry(self, e: SourceError) -> bool:
        """After a lost source: False for a file (not retried) or when told to stop during the backoff."""
        if not self.stream:
            log.error("camera %s: %s (file sources are not retried)", self.cam.id, e)
            return False
        jitter = self.backoff * 0.2 * random.random()
        log.warning("camera %s: %s; reconnecting in %.1f s%s", self.cam.id, e, self.backoff + jitter, self.tail.dump())
        if self.stop.wait(self.backoff + jitter):
            return False
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)
        m.RECONNECTS.labels(self.cam.id).inc()
        return True
