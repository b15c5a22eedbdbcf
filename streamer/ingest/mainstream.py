"""A camera's main stream read beside its detect stream (substreams, `cameras[].detect_url`).

The detect stream (low resolution) is what the ingest process decodes for the model; the main stream
(`url`, full resolution) is opened only for evidence. It is read on a thread of the same ingest
process and only its keyframes are decoded (FFmpeg's `skip_frame` NONKEY: every other packet is
demuxed and dropped undecoded), each converted once to RGB at the stream's own resolution (at most
`max_width` wide) and kept with its time; a window's keyframe is the newest main keyframe at or before
the detect stream's newest frame. When the detect stream carries no audio, the main stream's audio is
decoded here (mono at the model's rate) and handed to the windower.

Timelines: each stream is placed on its own `Timeline` (rebased to its own first timestamp, jumps and
resets corrected as on the detect stream), the two being opened together (a camera's streams start
together; a file pair starts at 0 on both). Every video packet is placed, decoded or not, so a long
keyframe interval is not taken for a jump. A file played in real time paces
the main stream on the same clock as the detect stream; a file read as fast as it decodes keeps the
main stream within `AHEAD_S` of the detect stream, and the detect stream waits for it (so evidence
and audio are the same whatever the machine's speed).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import replace
from typing import Any

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer import urls
from streamer.errors import SourceError, redact
from streamer.ingest.opening import MonoResampler, keyframe_size
from streamer.ingest.timeline import Timeline

log = logging.getLogger(__name__)

AHEAD_S = 1.0  # unpaced files: the main stream reads at most this far ahead of the detect stream
KEEP = 6  # keyframes kept: the newest at or before the detect stream, and those read ahead of it (unpaced files: up to AHEAD_S)
MIN_KEY_INTERVAL_S = 0.5  # at most one keyframe decoded per this (an intra-only main stream, e.g. MJPEG, is all keyframes)


class MainStream:
    def __init__(self, url: str, opts: Any, sample_rate: int, *, want_audio: bool, offset: float, wall0: float,
                 max_width: int, paced: bool, camera: str = "main") -> None:
        """Opens the stream (on the caller's thread: a stream that cannot be opened fails here) and starts
        reading it. `opts`: the source's SourceOptions; `paced`: a file played in real time; `wall0`:
        time.monotonic() of source time 0 (the detect stream's)."""
        from streamer.ingest.opening import open_container

        self.url = url
        self.paced = paced
        self.live = urls.is_live(url)
        self.max_width = max_width
        self.sample_rate = sample_rate
        self.container = open_container(url, replace(opts, hwaccel=None, mic=None))  # keyframes: the CPU will do
        self.vs = self.container.streams.video[0] if self.container.streams.video else None
        aus = self.container.streams.audio[0] if self.container.streams.audio else None
        self.aus = aus if want_audio else None
        self.has_audio = self.aus is not None
        self.keyframes: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=KEEP)
        self.audio: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self.error: Exception | None = None
        self.ended = False
        self.progress = -1e18  # newest main-stream time read (rebased)
        self.detect_t = -1e18  # newest detect-stream time (unpaced files: the main stream waits for it)
        self.keyframes_decoded = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.timeline = Timeline(f"{camera} (main stream)", offset, wall0, realtime=paced, stop=self._stop)
        self._frame_s = 1 / float(self.vs.average_rate or 25) if self.vs is not None else 0.0  # a video frame's duration
        self._sws = VideoReformatter()
        self._resampler: MonoResampler | None = None  # audio: made on the thread
        self._last_key = -1e18  # timeline time of the newest keyframe decoded
        self._held: collections.deque[tuple[float, float]] = collections.deque()  # keyframes sent the decoder has not
        # given back, (stream time, timeline time): progress stops at the oldest
        self._thread = threading.Thread(target=self._run, name="streamer:ingest:main", daemon=True)
        self._thread.start()

    # ---- the detect side --------------------------------------------------------------------------
    def keyframe(self, t: float) -> np.ndarray | None:
        """The newest main keyframe at or before source time t (None: none yet)."""
        best = None
        for kt, rgb in list(self.keyframes):
            if kt <= t + 1e-6:
                best = rgb
        return best

    def drain_audio(self) -> list[tuple[float, np.ndarray]]:
        out = []
        while self.audio:
            out.append(self.audio.popleft())
        return out

    def wait_for(self, t: float) -> None:
        """The detect stream is at source time t: an unpaced file waits until the main stream has read up to
        it (or ended, or failed); paced files and live streams never wait."""
        with self._cond:
            self.detect_t = t
            self._cond.notify_all()
            if self.paced or self.live:
                return
            while self.progress < t and not self.ended and self.error is None and not self._stop.is_set():
                self._cond.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    # ---- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            streams = [st for st in (self.vs, self.aus) if st is not None]
            if self.vs is not None:
                self.vs.codec_context.skip_frame = "NONKEY"
            if self.aus is not None:
                self._resampler = MonoResampler(self.sample_rate)
            if streams:
                self._read(streams)
        except av.error.EOFError:
            pass
        except Exception as e:  # told to the detect side, which decides (see SourceReader)
            self.error = SourceError(f"main stream {redact(self.url)}: read failed: {e.__class__.__name__}: {e}")
        finally:
            if self.error is None and self.live and not self._stop.is_set():  # a live stream's session closed
                self.error = SourceError(f"main stream {redact(self.url)}: the stream ended")
            with self._cond:
                self.ended = True
                self._cond.notify_all()
            self.container.close()

    def _read(self, streams: list) -> None:
        """Demuxes until the end (or a stop): keyframes decoded and kept, audio resampled and kept."""
        for packet in self.container.demux(streams):
            if self._stop.is_set():
                return
            video = packet.stream.type == "video"
            if video and not self._to_decode(packet):
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            if video:  # a threaded decoder may hold a keyframe back
                self._given_back(frames)
            for frame in frames:
                if not self._keep(frame, video):
                    return

    def _to_decode(self, packet: Any) -> bool:
        """True for a keyframe at least MIN_KEY_INTERVAL_S after the last one decoded; a packet not decoded
        still moves progress on, but never past a keyframe the decoder holds."""
        if not packet.size:  # the demuxer's end-of-stream packet
            return False
        pt = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base is not None else None
        rt = self.timeline.place("video", pt, self._frame_s)  # every packet: a long keyframe interval is no jump
        if not packet.is_keyframe or (pt is not None and rt - self._last_key < MIN_KEY_INTERVAL_S):
            if pt is not None:
                self._advance(min(rt, self._held[0][1]) if self._held else rt)
            return False
        if pt is not None:
            self._last_key = rt
            self._held.append((pt, rt))
        return True

    def _given_back(self, frames: list) -> None:
        """The decoder gave these frames back: the keyframes sent up to them are no longer held."""
        held = self._held
        for frame in frames:
            while held and frame.time is not None and held[0][0] <= frame.time + 1e-6:
                held.popleft()

    def _keep(self, frame: Any, video: bool) -> bool:
        """One decoded frame rebased (and paced, for a file played in real time), kept, progress moved on;
        False when told to stop while pacing."""
        if video:  # placed when its packet was read
            rt = self.timeline.peek(frame.time) if frame.time is not None else None
            if rt is None:
                return True
        else:  # as the detect stream's audio: a frame without a timestamp continues, a jump is corrected
            rt = self.timeline.place("audio", frame.time, frame.samples / frame.sample_rate)
        if not self.timeline.pace(rt):
            return False
        if video:
            w, h = keyframe_size(frame.width, frame.height, self.max_width or max(frame.width, frame.height), grow=False)
            rgb = self._sws.reformat(frame, width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
            self.keyframes.append((rt, rgb))
            self.keyframes_decoded += 1
        else:
            for pcm in self._resampler(frame):
                self.audio.append((rt, pcm))
                rt += len(pcm) / self.sample_rate
        self._advance(rt)
        return True

    def _advance(self, rt: float) -> None:
        with self._cond:
            self.progress = max(self.progress, rt)
            self._cond.notify_all()
            if self.paced or self.live:
                return
            while self.progress > self.detect_t + AHEAD_S and not self._stop.is_set():
                self._cond.wait(0.5)
