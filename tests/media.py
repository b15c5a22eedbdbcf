"""Real media for tests, made with PyAV: deterministic, with white flashes and clicks at known times."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_RATES = {"aac": 48000, "libopus": 48000, "pcm_mulaw": 8000, "pcm_alaw": 8000, "pcm_s16le": 16000}


def make_clip(
    path: str | Path,
    seconds: float = 4.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    video_codec: str | None = "h264",
    audio_codec: str | None = "aac",
    sample_rate: int | None = None,
    channels: int = 1,
    flash_at: list[float] = (),
    click_at: list[float] = (),
    audio_offset: float = 0.0,
    seed: int = 0,
) -> Path:
    """A clip of moving noise with an all-white frame at each `flash_at` second and a loud 10 ms
    click at each `click_at` second (+ audio_offset) over quiet noise. The container follows the extension."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    out = av.open(str(path), "w")
    w, h = size
    vs = aus = None
    if video_codec:
        opts = {"g": str(fps), "bf": "0", "tune": "zerolatency"} if video_codec in ("h264", "libx264") else {"g": str(fps)}
        vs = out.add_stream(video_codec if video_codec != "h264" else "libx264", rate=fps, options=opts if video_codec != "mjpeg" else {})
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
        vs.time_base = Fraction(1, fps)
    if audio_codec:
        rate = sample_rate or AUDIO_RATES.get(audio_codec, 48000)
        aus = out.add_stream(audio_codec, rate=rate, layout="mono" if channels == 1 else "stereo")
    flashes = {round(t * fps) for t in flash_at}
    base = rng.integers(0, 200, (h // 8, w // 8, 3), dtype=np.uint8)
    if vs is not None:
        for i in range(int(round(seconds * fps))):
            img = np.full((h, w, 3), 255, np.uint8) if i in flashes else np.repeat(np.repeat(np.roll(base, i, 1), 8, 0), 8, 1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    if aus is not None:
        rate = aus.codec_context.sample_rate
        pcm = (rng.standard_normal(int(seconds * rate)) * 0.01).astype(np.float32)
        for t in click_at:
            i = int(round((t + audio_offset) * rate))
            pcm[i : i + rate // 100] = 0.9
        layout = "mono" if channels == 1 else "stereo"
        chunk = aus.codec_context.frame_size or 1024
        for start in range(0, len(pcm), chunk):
            part = pcm[start : start + chunk]
            data = np.tile(part, (channels, 1)) if channels > 1 else part[None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for pkt in aus.encode(frame):
                out.mux(pkt)
        for pkt in aus.encode(None):
            out.mux(pkt)
    out.close()
    return path
