"""Builds streamer/assets/demo.mp4 from MIT-licensed Surveillance Camera Fight clips in ../shared/data/fight.

Quiet scene first (no_fight), then a fight, from one source video: H.264 + AAC, 640x360, 25 fps.
The source video (lmfaDmCCRoY) is one of the fight set's validation sources, which the default model never
trained on. Run once; the result is committed. Usage: python scripts/make_demo_clip.py [DATA_DIR]
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLIPS = ["video/nofi029.mp4", "video/nofi030.mp4", "video/fi037.mp4", "video/fi038.mp4"]
OUT = Path(__file__).resolve().parent.parent / "streamer" / "assets" / "demo.mp4"
FPS, W, H, RATE = 25, 640, 360, 48000


def main(data: Path) -> None:
    out = av.open(str(OUT), "w")
    vs = out.add_stream("libx264", rate=FPS, options={"crf": "28", "preset": "slow", "g": str(FPS)})
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    aus = out.add_stream("aac", rate=RATE, layout="mono")
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE)
    fifo = av.AudioFifo()
    n_video, t_offset = 0, 0.0
    for rel in CLIPS:
        src = av.open(str(data / rel))
        v = src.streams.video[0]
        clip_len = 0.0
        for frame in src.decode(v):
            t = frame.time or 0.0
            while n_video / FPS <= t_offset + t:  # resample to constant 25 fps
                img = frame.reformat(width=W, height=H, format="yuv420p")
                img.pts = n_video
                img.time_base = Fraction(1, FPS)
                out.mux(vs.encode(img))
                n_video += 1
            clip_len = max(clip_len, t + 1 / float(v.average_rate or FPS))
        src.close()
        src = av.open(str(data / rel))
        n_samples = 0
        if src.streams.audio:
            for frame in src.decode(src.streams.audio[0]):
                for f in resampler.resample(frame):
                    f.pts = None
                    fifo.write(f)
                    n_samples += f.samples
        need = int(round((t_offset + clip_len) * RATE)) - fifo.samples_written
        if need > 0:  # pad silence to keep audio aligned with video
            pad = av.AudioFrame.from_ndarray(np.zeros((1, need), np.float32), format="fltp", layout="mono")
            pad.sample_rate = RATE
            pad.pts = None
            fifo.write(pad)
        src.close()
        t_offset += clip_len
    for f in iter(lambda: fifo.read(1024), None):
        f.pts = None
        out.mux(aus.encode(f))
    out.mux(vs.encode(None))
    out.mux(aus.encode(None))
    out.close()
    print(f"{OUT}: {t_offset:.1f} s, {OUT.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "fight")
