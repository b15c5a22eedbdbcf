"""Ingest benchmark: streamer's windows vs FFmpeg's bare decode vs a naive OpenCV loop.

    python -m benchmarks.ingest [--json FILE] [--seconds 60] [--threads N] [--repeat 3]

Test media (60 s 1080p30 and 720p25, H.264 + AAC, x264 `veryfast` with its default B-frames) is
generated with PyAV on first run and cached under .cache/bench/. Every contender decodes the same file
with the same decoder thread count; the contenders take turns, `--repeat` rounds, and the median of
each is reported (a 2-core machine is noisy). `streamer_fps` counts source frames (video packets) per
second: frames no window samples are not decoded when nothing references them, so it can exceed
`ffmpeg_fps`; `streamer_all_frames_fps` is the same ingest made to decode every frame. The naive
OpenCV loop is a reference column (no target: bare decoding is itself only ~1.7x it); how many
cameras a machine holds is benchmarks/density.py's question.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engines.spec import ModelSpec
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
FILES = {"1080p30": (1920, 1080, 30), "720p25": (1280, 720, 25)}


def make_media(name: str, seconds: float, bframes: bool = True, geometry: tuple[int, int, int] | None = None,
               variant: int = 0) -> Path:
    """`bframes=False`: a camera-like stream (no B-frames, keyframe every 2 s, as most H.264 CCTV); `geometry`:
    (width, height, fps) for a name not in FILES; `variant`: another scene of the same kind (its own seed)."""
    w, h, fps = geometry or FILES[name]
    path = CACHE / f"cctv2_{name}_{int(seconds)}s{'' if bframes else '_nobf'}{f'_v{variant}' if variant else ''}.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    out = av.open(str(tmp), "w")
    vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "26", "g": str(2 * fps), **({} if bframes else {"bf": "0"})})
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    aus = out.add_stream("aac", rate=48000, layout="stereo")
    rng = np.random.default_rng(variant)
    # A fixed camera: a static textured scene (blocks at several scales) with a few people-sized
    # objects walking across it; no sensor noise (a camera's encoder at CCTV bit rates removes most).
    scene = sum(np.kron(rng.integers(0, 80, (h // b + 1, w // b + 1, 3)), np.ones((b, b, 1)))[:h, :w] for b in (4, 16, 64))
    scene = scene.astype(np.uint8)
    walkers = [(rng.integers(0, h - h // 4), rng.uniform(2, 6) * (1 if k % 2 else -1), rng.integers(0, 255, 3)) for k in range(4)]
    for i in range(int(seconds * fps)):
        img = scene.copy()
        for k, (y, speed, colour) in enumerate(walkers):
            x = int(k * w / 4 + i * speed) % w
            img[y : y + h // 4, x : x + w // 24] = colour
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = i, Fraction(1, fps)
        out.mux(vs.encode(f))
    out.mux(vs.encode(None))
    n = 0
    while n < seconds * 48000:
        a = av.AudioFrame.from_ndarray((rng.standard_normal((2, 1024)) * 0.1).astype(np.float32), format="fltp", layout="stereo")
        a.sample_rate, a.pts = 48000, n
        n += 1024
        out.mux(aus.encode(a))
    out.mux(aus.encode(None))
    out.close()
    tmp.rename(path)
    return path


def ffmpeg_fps(path: Path, threads: int) -> tuple[float, str]:
    """The limit: decode every video frame and discard it."""
    if shutil.which("ffmpeg"):
        t = time.perf_counter()
        r = subprocess.run(["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t
        frames = _frame_count(path)
        if r.returncode == 0:
            return frames / wall, "ffmpeg CLI"
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type, vs.codec_context.thread_count = "AUTO", threads
        t = time.perf_counter()
        n = sum(1 for _ in c.decode(vs))
        return n / (time.perf_counter() - t), "PyAV decode, no conversion"


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(c.streams.video[0]) if _.size)


def naive_fps(path: Path, spec: ModelSpec, threads: int) -> float:
    """What users write: read every frame with OpenCV and resize it to the model's size."""
    import cv2

    cv2.setNumThreads(threads)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    n = 0
    t = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.resize(frame, (spec.width, spec.height))
        n += 1
    wall = time.perf_counter() - t
    cap.release()
    return n / wall


def streamer_fps(path: Path, spec: ModelSpec, threads: int, skip: bool = True) -> tuple[float, int]:
    """streamer's ingest producing windows (audio decoded and resampled too)."""
    opts = SourceOptions(decoder_threads=threads, realtime=False, skip_unsampled=skip)
    reader = SourceReader(str(path), "bench", probe_geometry(spec, 0.5), opts)
    t = time.perf_counter()
    windows = sum(1 for _ in reader.windows())
    return reader.stats.frames_read / (time.perf_counter() - t), windows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write results to this file")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median of each contender is reported")
    args = p.parse_args(argv)
    spec = ModelSpec()
    results: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                 "python": platform.python_version(), "av": av.__version__}, "threads": args.threads,
                     "date": date.today().isoformat()}
    print(f"{'file':10} {'ffmpeg_fps':>11} {'streamer_fps':>13} {'vs_ffmpeg':>10} {'realtime':>9} {'all_frames_fps':>15} {'naive_fps(ref)':>15}")
    for name, (_w, _h, fps) in FILES.items():
        path = make_media(name, args.seconds)
        runs: dict[str, list[float]] = {"ffmpeg": [], "naive": [], "streamer": [], "all_frames": []}
        for _ in range(args.repeat):  # take turns so a noisy neighbour hits every contender alike
            ff, how = ffmpeg_fps(path, args.threads)
            runs["ffmpeg"].append(ff)
            runs["naive"].append(naive_fps(path, spec, args.threads))
            st, windows = streamer_fps(path, spec, args.threads)
            runs["streamer"].append(st)
            runs["all_frames"].append(streamer_fps(path, spec, args.threads, skip=False)[0])
        ff, nv, st, al = (float(np.median(runs[k])) for k in ("ffmpeg", "naive", "streamer", "all_frames"))
        row = {"ffmpeg_fps": round(ff, 1), "ffmpeg_how": how, "naive_fps": round(nv, 1), "streamer_fps": round(st, 1),
               "ratio_vs_ffmpeg": round(st / ff, 3), "ratio_vs_naive": round(st / nv, 3),
               "realtime_streams": round(st / fps, 2), "windows": windows,
               "streamer_all_frames_fps": round(al, 1), "all_frames_ratio_vs_ffmpeg": round(al / ff, 3),
               "runs": {k: [round(v, 1) for v in vals] for k, vals in runs.items()}}
        results[name] = row
        print(f"{name:10} {ff:11.1f} {st:13.1f} {st / ff:10.2f} {st / fps:9.2f} {al:15.1f} {nv:15.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
