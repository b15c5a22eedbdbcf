"""Microphones through PortAudio (sounddevice): `mic:<device>` sources, alone or paired with a camera
(both read by streamer.ingest.source.SourceReader, the one path from a source to windows).

A microphone has no presentation timestamps: once the burst of audio buffered before the stream
started has passed (dropped), samples are counted from the arrival time of the first live block
(time.monotonic() at the PortAudio callback, less the block's length); per-block arrival times jitter
by tens of milliseconds, so the count is trusted until it falls REANCHOR_S behind arrival (a dropout). Paired with a camera, the
camera's timeline is anchored to wall time at its first frame and the microphone is mapped onto it,
shifted by `audio_offset_ms`.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

import numpy as np

from streamer.errors import SourceError, SourceTimeout
from streamer.ingest.opening import SourceStats

log = logging.getLogger(__name__)
BLOCK_S = 0.05
REANCHOR_S = 0.5


def parse_device(url: str) -> str | int | None:
    """`mic:` -> default device, `mic:3` -> index 3, `mic:pulse` -> by name."""
    name = url.removeprefix("mic:")
    if not name or name == "default":
        return None
    return int(name) if name.isdigit() else name


def input_devices(sd: Any) -> str:
    """The input devices PortAudio lists, for an error message (which must not fail itself)."""
    try:
        names = ", ".join(f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0)
    except Exception as e:  # e.g. the sound server is down too
        return f"not listed ({e})"
    return names or "none"


class Microphone:
    """An open input stream; `get()` gives (arrival_start_monotonic, mono float32 pcm). Lost blocks are
    counted in `stats.mic_overflows` (the reader's stats: exported as streamer_mic_overflows_total)."""

    def __init__(self, url: str, sample_rate: int, stall_timeout: float = 5.0, stats: SourceStats | None = None) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio library missing
            raise SourceError(f"microphone {url}: PortAudio is not available ({e}); install libportaudio2") from e
        self.url = url
        self.rate = sample_rate
        self.stall_timeout = stall_timeout
        self._q: queue.Queue = queue.Queue(maxsize=int(10 / BLOCK_S))  # 10 s of audio at most
        self.stats = stats if stats is not None else SourceStats()
        self._anchor: float | None = None  # monotonic time of sample 0
        self._last_arrival: float | None = None
        self._samples = 0
        device = parse_device(url)
        self._stream = None
        try:
            self._stream = sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", device=device,
                                          blocksize=int(sample_rate * BLOCK_S), callback=self._callback)
            self._stream.start()
        except (ValueError, sd.PortAudioError) as e:
            if self._stream is not None:  # made, then failed to start
                self._stream.close()
            raise SourceError(f"microphone {url}: cannot open ({e}); input devices: {input_devices(sd)}") from e

    def _callback(self, data: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.input_overflow:
            self.stats.mic_overflows += 1
        now = time.monotonic()
        if self._anchor is None:  # skip the burst of audio buffered before we started listening
            live = self._last_arrival is not None and now - self._last_arrival >= 0.5 * frames / self.rate
            self._last_arrival = now
            if not live:
                return
            self._anchor, self._samples = now - frames / self.rate, 0
        t = self._anchor + self._samples / self.rate
        if now - (t + frames / self.rate) > REANCHOR_S:  # samples were lost: back to arrival time
            self._anchor, self._samples, t = now - frames / self.rate, 0, now - frames / self.rate
        self._samples += frames
        try:
            self._q.put_nowait((t, data[:, 0].copy()))
        except queue.Full:
            self.stats.mic_overflows += 1

    def get(self, timeout: float) -> tuple[float, np.ndarray]:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise SourceTimeout(f"microphone {self.url}: no audio within {timeout:g} s (stall_timeout)") from None

    def drain(self) -> list[tuple[float, np.ndarray]]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
