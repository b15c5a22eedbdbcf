"""The window: the contract between ingest and engines (see DESIGN.md), and its geometry (what every
window of a run holds), shared by the ingest, the rings and the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    frames: int
    height: int
    width: int
    seconds: float
    hop: float
    sample_rate: int
    objects: bool = False  # windows carry the moving objects of their frames (streamer.detect.objects)

    @property
    def samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))


@dataclass
class Window:
    camera: str
    start: float  # seconds on the source clock (rebased to 0 at the first timestamp)
    end: float
    video: np.ndarray  # uint8 [T, H, W, 3] RGB
    audio: np.ndarray  # float32 [S] mono 16 kHz in [-1, 1]
    video_mask: float  # 0.0 when video is absent or stalled
    audio_mask: float  # 0.0 when audio is absent or stalled
    arrival: float  # time.monotonic() when the last input of the window arrived
    decode_s: float = 0.0  # decode time spent on this window's inputs
    window_s: float = 0.0  # time spent assembling the window (frame conversion, stacking)
    keyframe: np.ndarray | None = None  # uint8 [h, w, 3] RGB evidence frame (the newest), when asked for
    objects: np.ndarray | None = None  # float64 [n, 2 + F]: moving objects of the sampled frames, when asked for
    objects_s: float = 0.0  # CPU time spent finding them
    rms_dbfs: float | None = None  # the audio's level (streamer.detect.loudness); None when the window has no audio
    peak_dbfs: float | None = None
    frames: int = 0  # video frames its ingest process had decoded when it was made (every connection's; the fps)
    ingest_pid: int = 0  # that process
