"""Turns timestamped frames and audio into fixed windows (the contract in streamer/window.py).

Video: window k covers [k*hop, k*hop + seconds); its T frames are the decoded frames nearest to
T evenly spaced sample times. Only frames that some window samples are converted (and resized)
by swscale, each at most once, however many windows share it.
Audio: mono float32 at the model's rate, placed by timestamp; a gap is filled with silence and
an overlap is dropped when they exceed `resync_s`.
A modality that falls more than `max_lag_s` behind the other is treated as stalled: the window is
emitted with that modality's mask at 0 rather than held back.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any, Callable, Iterator

import numpy as np

from streamer.detect import loudness
from streamer.detect.objects import FEATURES, ObjectFinder
from streamer.window import Geometry, Window

Convert = Callable[[Any], np.ndarray]  # decoded frame -> uint8 [H, W, 3]
Keyframe = Callable[[Any, float], np.ndarray | None]  # (newest frame, the window's last sample time) -> evidence


NO_OBJECTS = np.zeros((0, 2 + len(FEATURES)))


def objects_of(keys: list[int], found: dict[int, np.ndarray]) -> np.ndarray:
    """The objects of a window's frames: rows [frame time, slot, features...] (slot: the frame's index in the window)."""
    rows = [np.insert(found[k], 1, i, axis=1) for i, k in enumerate(keys) if len(found.get(k, NO_OBJECTS[:, 1:]))]
    return np.concatenate(rows) if rows else NO_OBJECTS


def _key(t: float) -> int:
    return int(round(t * 1e6))


class Windower:
    def __init__(
        self,
        camera: str,
        geo: Geometry,
        convert: Convert,
        *,
        has_video: bool,
        has_audio: bool,
        max_lag_s: float = 2.0,
        resync_s: float = 0.05,
        keyframe: Keyframe | None = None,
        first_window: int = 0,
    ) -> None:
        if not (has_video or has_audio):
            raise ValueError(f"camera {camera!r}: a source needs video or audio")
        self.camera = camera
        self.geo = geo
        self._convert = convert
        self._keyframe = keyframe
        self.has_video = has_video
        self.has_audio = has_audio
        self.max_lag_s = max_lag_s
        self.resync_s = resync_s
        self._k = first_window  # next window to emit
        self._scheduled = first_window  # windows whose sample times are in the heap
        self._heap: list[int] = []  # pending sample-time keys
        self._picked: dict[int, np.ndarray] = {}
        self._finder = ObjectFinder() if geo.objects else None
        self._found: dict[int, np.ndarray] = {}  # sample-time key -> objects of the frame picked for it
        self._objects_s = 0.0
        self._prev_found = NO_OBJECTS[:, 1:]
        self._prev: tuple[float, Any] | None = None
        self._prev_rgb: np.ndarray | None = None
        self._video_t = -1e9  # time of the newest frame
        self.frame_dt = 0.04  # a video frame's duration, estimated from the frames seen (s)
        self._chunks: list[np.ndarray] = []  # audio, joined lazily (once per window, not per packet)
        self._alen = 0  # samples in self._chunks
        self._audio_t0: float | None = None  # source time of the first buffered sample
        self._arrival = time.monotonic()
        self._decode_s = 0.0
        self._window_s = 0.0  # conversion time since the last window
        self._blank_video = np.zeros((geo.frames, geo.height, geo.width, 3), np.uint8)
        self.frames_converted = 0

    # ---- sample times -------------------------------------------------------------------
    def _sample_times(self, k: int) -> list[float]:
        g = self.geo
        return [k * g.hop + (i + 0.5) * g.seconds / g.frames for i in range(g.frames)]

    def _schedule_until(self, t: float) -> None:
        while self._scheduled * self.geo.hop <= t:
            for s in self._sample_times(self._scheduled):
                key = _key(s)
                if key not in self._picked and key not in self._heap:
                    heapq.heappush(self._heap, key)
            self._scheduled += 1

    def wants(self, t: float, margin: float) -> bool:
        """Whether a frame at source time t could be the nearest frame to a sample time of a window
        not yet emitted (some sample time within `margin` of t). The source skips decoding frames
        nobody wants when the codec allows it (non-reference frames)."""
        g = self.geo
        first = max(self._k, math.floor((t - margin - g.seconds) / g.hop))
        return any(abs(s - t) <= margin for k in range(first, math.floor((t + margin) / g.hop) + 1)
                   for s in self._sample_times(k))

    # ---- inputs -------------------------------------------------------------------------
    def add_video(self, t: float, frame: Any, decode_s: float = 0.0) -> None:
        """A decoded frame at source time t (seconds, rebased)."""
        if self._prev is not None:
            dt = t - self._prev[0]
            if dt <= 0:  # duplicate or out-of-order timestamp: keep the first
                return
            self.frame_dt = 0.9 * self.frame_dt + 0.1 * min(dt, 1.0)
        self._schedule_until(t + self.geo.seconds)
        cur_rgb: np.ndarray | None = None
        cur_found = NO_OBJECTS[:, 1:]
        while self._heap and self._heap[0] <= _key(t):
            key = heapq.heappop(self._heap)
            s = key / 1e6
            if self._prev is not None and (s - self._prev[0]) < (t - s):
                if self._prev_rgb is None:
                    self._prev_rgb, self._prev_found = self._conv(self._prev[1], self._prev[0])
                self._picked[key], self._found[key] = self._prev_rgb, self._prev_found
            else:
                if cur_rgb is None:
                    cur_rgb, cur_found = self._conv(frame, t)
                self._picked[key], self._found[key] = cur_rgb, cur_found
        self._prev, self._prev_rgb, self._prev_found = (t, frame), cur_rgb, cur_found
        self._video_t = t
        self._arrival = time.monotonic()
        self._decode_s += decode_s

    def add_audio(self, t: float, samples: np.ndarray, decode_s: float = 0.0) -> None:
        """Mono float32 samples at the model rate whose first sample is at source time t."""
        sr = self.geo.sample_rate
        if self._audio_t0 is None:
            self._audio_t0 = t
        else:
            drift = t - (self._audio_t0 + self._alen / sr)
            if drift > self.resync_s:  # gap: silence
                self._push(np.zeros(int(round(drift * sr)), np.float32))
            elif drift < -self.resync_s:  # overlap: drop what is already placed
                samples = samples[int(round(-drift * sr)):]
        self._push(samples.astype(np.float32, copy=False))
        self._arrival = time.monotonic()
        self._decode_s += decode_s

    def _push(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._alen += samples.size

    @property
    def _audio(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)]
        return self._chunks[0]

    def _conv(self, frame: Any, t: float) -> tuple[np.ndarray, np.ndarray]:
        """A sampled frame for the model, and its objects [n, 1 + F] (found once per frame, in time order)."""
        self.frames_converted += 1
        t0 = time.perf_counter()
        out = self._convert(frame)
        self._window_s += time.perf_counter() - t0
        if self._finder is None:
            return out, NO_OBJECTS[:, 1:]
        t0 = time.thread_time()  # CPU time: the finder works in this thread only
        found = self._finder.add_frame(t, frame)
        self._objects_s += time.thread_time() - t0
        return out, np.concatenate([np.full((len(found), 1), t), found], axis=1)

    # ---- outputs ------------------------------------------------------------------------
    @property
    def _audio_end(self) -> float:
        if self._audio_t0 is None:
            return -1e9
        return self._audio_t0 + self._alen / self.geo.sample_rate

    def _video_done(self, k: int) -> bool:
        return self._video_t >= self._sample_times(k)[-1]

    def ready(self) -> Iterator[Window]:
        """Windows whose inputs have all arrived (or whose missing modality is stalled)."""
        while True:
            start = self._k * self.geo.hop
            end = start + self.geo.seconds
            v_ok = not self.has_video or self._video_done(self._k)
            a_ok = not self.has_audio or self._audio_end >= end
            if v_ok and a_ok:
                yield self._emit(self._k, video=self.has_video, audio=self.has_audio)
            elif v_ok and self._video_t - max(self._audio_end, start) > self.max_lag_s:
                yield self._emit(self._k, video=True, audio=False)
            elif a_ok and self._audio_end - max(self._video_t, start) > self.max_lag_s:
                yield self._emit(self._k, video=False, audio=True)
            else:
                return

    def flush(self) -> Iterator[Window]:
        """At end of input: the windows the content covers (at least one), padding the tail."""
        content_end = max(self._video_t + self.frame_dt, self._audio_end)
        if self._prev is not None:
            self._schedule_until(content_end)
            while self._heap:  # sample times past the last frame take the last frame
                key = heapq.heappop(self._heap)
                if self._prev_rgb is None:
                    self._prev_rgb, self._prev_found = self._conv(self._prev[1], self._prev[0])
                self._picked[key], self._found[key] = self._prev_rgb, self._prev_found
            self._video_t = 1e18
        while True:
            start = self._k * self.geo.hop
            if self._k > 0 and start + self.geo.seconds > content_end + self.geo.hop / 2 + 1e-6:
                return
            if self._k > 0 and start >= content_end:
                return
            has_audio = self.has_audio and self._audio_t0 is not None and self._audio_t0 < start + self.geo.seconds
            yield self._emit(self._k, video=self.has_video and self._prev is not None, audio=has_audio)

    def _emit(self, k: int, *, video: bool, audio: bool) -> Window:
        t0 = time.perf_counter()
        g = self.geo
        start, end = k * g.hop, k * g.hop + g.seconds
        keys = [_key(s) for s in self._sample_times(k)]
        if video and all(key in self._picked for key in keys):
            clip = np.stack([self._picked[key] for key in keys])
        else:
            video, clip = False, self._blank_video
        pcm = np.zeros(g.samples, np.float32)
        if audio and self._audio_t0 is not None:
            i0 = int(round((start - self._audio_t0) * g.sample_rate))
            lo, hi = max(i0, 0), min(i0 + g.samples, len(self._audio))
            if hi > lo:
                pcm[lo - i0 : hi - i0] = self._audio[lo:hi]
                np.clip(pcm, -1.0, 1.0, out=pcm)  # resampling rings past a full-scale step
            else:
                audio = False
        window = Window(
            camera=self.camera,
            start=start,
            end=end,
            video=clip,
            audio=pcm,
            video_mask=1.0 if video else 0.0,
            audio_mask=1.0 if audio else 0.0,
            arrival=self._arrival,
            decode_s=self._decode_s,
        )
        if audio:
            window.rms_dbfs, window.peak_dbfs = loudness.level(pcm)
        if self._finder is not None:
            window.objects = objects_of(keys, self._found) if video else NO_OBJECTS
            window.objects_s, self._objects_s = self._objects_s, 0.0
        if video and self._keyframe is not None and self._prev is not None:
            window.keyframe = self._keyframe(self._prev[1], keys[-1] / 1e6)
        window.window_s = self._window_s + time.perf_counter() - t0
        self._window_s = 0.0
        self._decode_s = 0.0
        self._k += 1
        self._forget(self._k * g.hop)
        return window

    def _forget(self, before: float) -> None:
        """Drop inputs no later window needs."""
        limit = _key(before)
        for key in [key for key in self._picked if key < limit]:
            del self._picked[key]
            self._found.pop(key, None)
        if self._audio_t0 is not None:
            cut = int((before - self._audio_t0) * self.geo.sample_rate)
            if cut > 0:
                rest = self._audio[cut:]
                self._chunks, self._alen = [rest], rest.size
                self._audio_t0 += cut / self.geo.sample_rate
