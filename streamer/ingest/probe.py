"""`streamer probe URL`: what a source carries, and how fast this machine decodes it."""

from __future__ import annotations

import time
from typing import Any

from streamer.errors import redact
from streamer.ingest.opening import SourceOptions, open_container


def probe(url: str, seconds: float = 5.0, opts: SourceOptions | None = None) -> dict[str, Any]:
    opts = opts or SourceOptions()
    container = open_container(url, opts)
    try:
        info: dict[str, Any] = {"url": redact(url), "format": container.format.name, "streams": []}
        if container.duration:
            info["duration_s"] = round(container.duration / 1e6, 3)
        for s in container.streams:
            cc = s.codec_context
            row: dict[str, Any] = {"index": s.index, "type": s.type, "codec": cc.name}
            if s.type == "video":
                row |= {"width": cc.width, "height": cc.height, "pix_fmt": cc.pix_fmt,
                        "fps": round(float(s.average_rate), 3) if s.average_rate else None}
            elif s.type == "audio":
                row |= {"sample_rate": cc.sample_rate, "channels": cc.channels, "layout": cc.layout.name}
            info["streams"].append(row)
        vs = container.streams.video[0] if container.streams.video else None
        aus = container.streams.audio[0] if container.streams.audio else None
        if vs is not None:
            vs.thread_type = "AUTO"
        frames = samples = 0
        t0 = time.perf_counter()
        for packet in container.demux([s for s in (vs, aus) if s is not None]):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    frames += 1
                else:
                    samples += frame.samples
            if time.perf_counter() - t0 >= seconds:
                break
        wall = time.perf_counter() - t0
        info["decode"] = {"seconds": round(wall, 3), "video_frames": frames,
                          "video_fps": round(frames / wall, 1) if wall > 0 else None, "audio_samples": samples}
        return info
    finally:
        container.close()
