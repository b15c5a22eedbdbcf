"""Real media for tests, made with PyAV: deterministic, with white flashes and clicks at known times.

    make_clip(tmp / "cam.mp4", seconds=8, flash_at=[2.0], click_at=[2.0])          # H.264 + AAC
    make_clip(tmp / "cam.mkv", audio_codec="libopus", channels=2)                   # H.264 + Opus
    make_clip(tmp / "mute.mp4", audio_codec=None)                                   # video only

Video is a pattern of 8x8 blocks of fixed noise scrolling one block per frame; frame i has PTS i at
time base 1/fps, and a frame at a `flash_at` second is all white. Audio is quiet noise (0.01 RMS)
with a 10 ms burst at 0.9 at each `click_at` second, shifted by `audio_offset` (a known A/V offset), and a
clap at each `clap_at` second: CLAP_SECONDS of noise decaying from CLAP_PEAK (a window that holds one is
about 13 dB louder than the quiet noise (-40 dBFS; -45 at 16 kHz)).
H.264 is coded with a keyframe every second and no B-frames, so an RTSP client starts quickly.
The same arguments give the same bytes (fixed seed, bit-exact muxing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# default sample rate per audio encoder (FFmpeg names)
AUDIO_RATES = {"aac": 48000, "libopus": 48000, "opus": 48000, "pcm_mulaw": 8000, "pcm_alaw": 8000, "pcm_s16le": 16000}
VIDEO_ENCODERS = {"h264": "libx264", "hevc": "libx265"}
CLICK_SECONDS = 0.01
CLICK_LEVEL = 0.9
NOISE_RMS = 0.01
CLAP_SECONDS = 0.08
CLAP_PEAK = 0.9
CLAP_DECAY_S = 0.015


def _video_options(codec: str, fps: int) -> dict[str, str]:
    if codec in ("h264", "libx264"):
        return {"g": str(fps), "bf": "0", "tune": "zerolatency", "preset": "veryfast", "threads": "1"}
    if codec in ("hevc", "libx265"):
        return {"g": str(fps), "x265-params": f"keyint={fps}:bframes=0:frame-threads=1:pools=none:log-level=error", "preset": "veryfast"}
    return {}


def make_clip(
    path: str | Path,
    seconds: float = 4.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    video_codec: str | None = "h264",
    audio_codec: str | None = "aac",
    sample_rate: int | None = None,
    channels: int = 1,
    flash_at: Sequence[float] = (),
    click_at: Sequence[float] = (),
    clap_at: Sequence[float] = (),
    audio_offset: float = 0.0,
    seed: int = 0,
) -> Path:
    """Write a clip to `path`; the container follows the extension (.mp4/.mov for H.264/HEVC + AAC or
    G.711, .mkv for anything incl. Opus and PCM). Returns the path."""
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    if not video_codec and not audio_codec:
        raise ValueError("a clip needs a video or an audio codec")
    path = Path(path)
    rng = np.random.default_rng(seed)
    w, h = size
    out = av.open(str(path), "w", container_options={"fflags": "+bitexact"})  # no random UIDs, dates
    try:
        vs = aus = None
        if video_codec:
            vs = out.add_stream(VIDEO_ENCODERS.get(video_codec, video_codec), rate=fps,
                                options=_video_options(video_codec, fps))
            vs.width, vs.height = w, h
            vs.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
            vs.time_base = Fraction(1, fps)
            vs.codec_context.time_base = Fraction(1, fps)
        if audio_codec:
            rate = sample_rate or AUDIO_RATES.get(audio_codec, 48000)
            aus = out.add_stream(audio_codec, rate=rate, layout="mono" if channels == 1 else "stereo")
            aus.time_base = Fraction(1, rate)
            aus.codec_context.time_base = Fraction(1, rate)

        if vs is not None:
            flashes = {round(t * fps) for t in flash_at}
            blocks = rng.integers(0, 200, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            for i in range(int(round(seconds * fps))):
                if i in flashes:
                    img = np.full((h, w, 3), 255, np.uint8)
                else:
                    img = np.repeat(np.repeat(np.roll(blocks, i, 1), 8, 0), 8, 1)[:h, :w]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
            for pkt in vs.encode(None):
                out.mux(pkt)

        if aus is not None:
            rate = aus.codec_context.sample_rate
            n = int(round(seconds * rate))
            pcm = (rng.standard_normal((channels, n)) * NOISE_RMS).astype(np.float32)
            for t in click_at:
                i = int(round((t + audio_offset) * rate))
                if 0 <= i < n:
                    pcm[:, i : i + int(rate * CLICK_SECONDS)] = CLICK_LEVEL
            for t in clap_at:
                _clap(pcm, int(round((t + audio_offset) * rate)), rate, rng)
            layout = "mono" if channels == 1 else "stereo"
            chunk = aus.codec_context.frame_size or 1024
            for start in range(0, n, chunk):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + chunk]), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
                for pkt in aus.encode(frame):
                    out.mux(pkt)
            for pkt in aus.encode(None):
                out.mux(pkt)
    finally:
        out.close()
    return path


def _clap(pcm: np.ndarray, i: int, rate: int, rng: np.random.Generator) -> None:
    """A hand clap into `pcm` [channels, n] at sample i: a burst of noise with an exponential decay."""
    n = min(int(rate * CLAP_SECONDS), pcm.shape[1] - i)
    if i < 0 or n <= 0:
        return
    env = CLAP_PEAK * np.exp(-np.arange(n) / (CLAP_DECAY_S * rate))
    pcm[:, i : i + n] = rng.uniform(-1, 1, n) * env


def make_scene(
    path: str | Path,
    seconds: float = 10.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    block_at: tuple[float, float] | None = None,
    seed: int = 0,
) -> Path:
    """A static scene (fixed textured background, the same for every seed) with a little sensor noise
    per frame (from `seed`); during `block_at` (start, end seconds) a bright block crosses the middle
    of the picture from left to right. H.264 only, keyframe every second. Returns the path."""
    path = Path(path)
    w, h = size
    bg = np.random.default_rng(1234).integers(40, 120, (h // 8 + 1, w // 8 + 1, 3)).astype(np.int16)
    bg = np.repeat(np.repeat(bg, 8, 0), 8, 1)[:h, :w]
    rng = np.random.default_rng(seed)
    bs = h // 4  # block side

    def frames():
        for i in range(int(round(seconds * fps))):
            img = bg + rng.integers(-3, 4, bg.shape)
            t = i / fps
            if block_at and block_at[0] <= t < block_at[1]:
                x = int((t - block_at[0]) / (block_at[1] - block_at[0]) * (w - bs))
                img[(h - bs) // 2 : (h + bs) // 2, x : x + bs] = 250
            yield img

    return write_h264(path, frames(), fps, size)


def make_street(
    path: str | Path,
    seconds: float = 10.0,
    fps: int = 10,
    size: tuple[int, int] = (240, 160),
    walkers: int = 4,
    fast_at: tuple[float, float] | None = None,
    seed: int = 0,
) -> Path:
    """A static street (fixed textured background) where `walkers` dark figures walk left and right along
    a band at walking pace (0.1 picture heights per second), and during `fast_at` (start, end seconds)
    one more figure crosses the whole picture (in 3 s: 5 times walking pace). `seed` sets the sensor noise
    only; the walkers are the same in every clip (a walker's position depends on the time alone). H.264."""
    path = Path(path)
    w, h = size
    bg = np.random.default_rng(1234).integers(120, 200, (h // 8 + 1, w // 8 + 1, 3)).astype(np.int16)
    bg = np.repeat(np.repeat(bg, 8, 0), 8, 1)[:h, :w]
    figs = np.random.default_rng(99)
    fh, fw = h // 6, h // 16  # a figure: tall and narrow
    looks = [figs.integers(20, 70, (fh, fw, 3)) for _ in range(walkers + 1)]
    lanes = [int(h * (0.45 + 0.3 * i / max(walkers, 1))) for i in range(walkers)]
    starts = figs.uniform(0, w, walkers)
    rng = np.random.default_rng(seed)

    def frames():
        for i in range(int(round(seconds * fps))):
            t = i / fps
            img = bg + rng.integers(-3, 4, bg.shape)
            for k, y in enumerate(lanes):
                step = (1 if k % 2 else -1) * 0.1 * h * t
                x = int((starts[k] + step) % (w + fw)) - fw
                _paste(img, looks[k], x, y)
            if fast_at and fast_at[0] <= t < fast_at[1]:
                x = int((t - fast_at[0]) / (fast_at[1] - fast_at[0]) * (w + fw)) - fw
                _paste(img, looks[-1], x, int(h * 0.6))
            yield img

    return write_h264(path, frames(), fps, size)


def write_h264(path: str | Path, frames: Iterable[np.ndarray], fps: int, size: tuple[int, int],
               options: dict[str, str] | None = None) -> Path:
    """RGB frames ([H, W, 3], clipped to uint8) as a bit-exact H.264 file at `fps` (frame i at i / fps)."""
    path = Path(path)
    w, h = size
    with av.open(str(path), "w", container_options={"fflags": "+bitexact"}) as out:
        vs = out.add_stream("libx264", rate=fps, options=options or _video_options("h264", fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = Fraction(1, fps)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    return path


def _paste(img: np.ndarray, fig: np.ndarray, x: int, y: int) -> None:
    """Paste a figure with its top-left corner at (x, y), clipped to the picture."""
    h, w = fig.shape[:2]
    x0, x1 = max(x, 0), min(x + w, img.shape[1])
    if x1 > x0:
        img[y : y + h, x0:x1] = fig[: img.shape[0] - y, x0 - x : x1 - x]


def write_video_with_pts(path: str | Path, pts: Sequence[int], fps: int = 25, gop: int | None = None) -> Path:
    """H.264 (64x48) whose frame i has PTS pts[i] at time base 1/fps: timestamp jumps, resets; `gop`: a
    keyframe every `gop` frames exactly (else x264's default)."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps, options={"g": str(gop), "sc_threshold": "0", "bf": "0"} if gop else None)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    vs.time_base = Fraction(1, fps)
    for i, p in enumerate(pts):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 250, np.uint8), format="rgb24")
        f.pts, f.time_base = p, Fraction(1, fps)
        for pkt in vs.encode(f):
            out.mux(pkt)
    for pkt in vs.encode(None):
        out.mux(pkt)
    out.close()
    return Path(path)


def write_av_with_jump(path: str | Path, seconds: float, jump_at: float, jump_s: float, fps: int = 25,
                       rate: int = 16000) -> Path:
    """H.264 (64x48, a keyframe a second) and PCM audio (.mkv) whose timestamps both jump by `jump_s` at
    `jump_at` (a spliced stream, a camera's clock reset); frame i is grey level 4 * i."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps, options={"g": str(fps), "sc_threshold": "0", "bf": "0"})
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    aus = out.add_stream("pcm_s16le", rate=rate, layout="mono")
    n = rate // fps
    for i in range(int(round(seconds * fps))):
        t = i / fps + (jump_s if i / fps >= jump_at else 0.0)
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (4 * i) % 250, np.uint8), format="rgb24")
        f.pts, f.time_base = int(round(t * fps)), Fraction(1, fps)
        for pkt in vs.encode(f):
            out.mux(pkt)
        a = av.AudioFrame.from_ndarray(np.full((1, n), 1000 * (i % 20), np.int16), format="s16", layout="mono")
        a.sample_rate, a.pts, a.time_base = rate, int(round(t * rate)), Fraction(1, rate)
        for pkt in aus.encode(a):
            out.mux(pkt)
    for st in (vs, aus):
        for pkt in st.encode(None):
            out.mux(pkt)
    out.close()
    return Path(path)


def flip_payload_bytes(data: bytes, seed: int, flips: int = 12) -> bytes:
    """`data` with `flips` bytes flipped just after H.264/H.265 start codes (00 00 01: NAL headers and
    slice data) and ADTS sync words (AAC frames) of an elementary stream or an MPEG-TS file."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    marks = [i + 3 for i in range(len(data) - 3) if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1]
    marks += [i + 7 for i in range(len(data) - 8) if data[i] == 0xFF and data[i + 1] & 0xF6 == 0xF0]
    for at in rng.choice(marks, size=min(flips, len(marks)), replace=False):
        at = int(at) + int(rng.integers(0, 6))
        if at < len(out):
            out[at] ^= int(rng.integers(1, 256))
    return bytes(out)
