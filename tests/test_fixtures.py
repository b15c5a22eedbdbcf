"""The fixtures are real: a Redis that answers and restarts on its port, clips that decode to what
was asked for, and an RTSP server that streams them in real time, loops, stops and starts again."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import MEDIA, RtspServer, redis_ping
from tests.media import AUDIO_RATES, make_clip

CODEC_NAMES = {"h264": "h264", "hevc": "hevc", "mjpeg": "mjpeg", "aac": "aac", "libopus": "opus",
               "pcm_mulaw": "pcm_mulaw", "pcm_s16le": "pcm_s16le"}


def listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a listening TCP socket on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, _, hexport = local.partition(":")
                if state == "0A" and int(hexport, 16) == port:
                    found.append(addr)
    return found


# --- Redis -------------------------------------------------------------------------------------

def test_redis_round_trip_and_restart_on_the_same_port(redis_server):
    client = redis_server.client(socket_timeout=2)
    assert client.ping()
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert listeners(redis_server.port) == ["0100007F"]  # 127.0.0.1 only
    first = client.xadd("fixtures:stream", {"camera": "cam1", "n": "1"})
    second = client.xadd("fixtures:stream", {"camera": "cam1", "n": "2"})
    assert client.xrange("fixtures:stream") == [(first, {b"camera": b"cam1", b"n": b"1"}),
                                                 (second, {b"camera": b"cam1", b"n": b"2"})]

    port = redis_server.port
    redis_server.stop()
    assert not redis_ping(port) and listeners(port) == []
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    redis_server.start()
    assert redis_server.port == port
    again = redis_server.client(socket_timeout=2)
    assert again.ping()
    assert again.xlen("fixtures:stream") == 0  # nothing is persisted across a restart
    assert again.config_get("save")["save"] == "" and again.config_get("appendonly")["appendonly"] == "no"


# --- media ---------------------------------------------------------------------------------------

@dataclass
class Decoded:
    video: list[tuple[float, float]] = field(default_factory=list)  # (time, mean RGB value)
    samples: int = 0
    audio_start: float | None = None
    loud: list[float] = field(default_factory=list)  # times of samples above 0.4 (first channel)


def decode_all(path: Path) -> Decoded:
    out = Decoded()
    with av.open(str(path)) as c:
        for frame in c.decode(*c.streams):
            if isinstance(frame, av.VideoFrame):
                out.video.append((float(frame.time), float(frame.to_ndarray(format="rgb24").mean())))
            else:
                pcm = frame.to_ndarray()
                pcm = pcm.reshape(-1, frame.samples)[0] if frame.format.is_planar else pcm.reshape(frame.samples, -1)[:, 0]
                pcm = pcm.astype(np.float32) / (32768.0 if pcm.dtype == np.int16 else 1.0)
                if out.audio_start is None:
                    out.audio_start = float(frame.time)
                loud = np.flatnonzero(np.abs(pcm) > 0.4)
                out.loud += [float(frame.time) + i / frame.sample_rate for i in loud[:1]]
                out.samples += frame.samples
    return out


@pytest.mark.parametrize("name", list(MEDIA))
def test_media_dir_clips_decode_to_what_was_asked(media_dir, name):
    spec = MEDIA[name]
    seconds, fps = spec["seconds"], 25
    with av.open(str(media_dir / name)) as c:
        if spec["video_codec"]:
            v = c.streams.video[0].codec_context
            assert (v.name, v.width, v.height, v.pix_fmt) == ("h264", 320, 240, "yuv420p")
            assert len(c.streams.video) == 1
        else:
            assert not c.streams.video
        if spec["audio_codec"]:
            a = c.streams.audio[0].codec_context
            assert a.name == CODEC_NAMES[spec["audio_codec"]]
            assert a.channels == spec.get("channels", 1)
            assert a.sample_rate == spec.get("sample_rate", AUDIO_RATES[spec["audio_codec"]])
            frame_s = (a.frame_size or 1024) / a.sample_rate
            rate = a.sample_rate
        else:
            assert not c.streams.audio
    d = decode_all(media_dir / name)
    if spec["video_codec"]:
        times = [t for t, _ in d.video]
        assert abs(len(times) - seconds * fps) <= 1
        assert times == sorted(times) and abs(times[0]) < 1e-6
        assert abs(times[-1] - (seconds - 1 / fps)) <= 1 / fps
        white = [t for t, mean in d.video if mean > 250]
        assert white and all(abs(t - 2.0) < 1e-6 for t in white), white  # the flash, and only there
        assert max(mean for t, mean in d.video if t not in white) < 200  # the pattern is never near-white
    if spec["audio_codec"]:
        assert abs(d.samples / rate - seconds) <= frame_s, d.samples  # +- one codec frame
        if spec.get("click_at"):
            assert d.loud and abs(d.loud[0] - 2.0) <= 0.005, d.loud  # the click, 10 ms from 2.0 s
        else:
            assert not d.loud  # quiet noise only


@pytest.mark.parametrize("name,video,audio,channels", [
    ("x.mp4", "h264", "aac", 1),
    ("x.mkv", "h264", "libopus", 2),
    ("x.mov", "hevc", "pcm_mulaw", 1),
    ("x.mkv", "mjpeg", "pcm_s16le", 2),
])
def test_make_clip_is_deterministic_and_has_its_codecs(tmp_path, name, video, audio, channels):
    kwargs = dict(seconds=1.0, size=(64, 48), video_codec=video, audio_codec=audio, channels=channels,
                  flash_at=[0.4], click_at=[0.5], audio_offset=0.1)
    a = make_clip(tmp_path / f"a-{name}", **kwargs)
    b = make_clip(tmp_path / f"b-{name}", **kwargs)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with av.open(str(a)) as c:
        assert c.streams.video[0].codec_context.name == CODEC_NAMES[video]
        assert c.streams.audio[0].codec_context.name == CODEC_NAMES[audio]
        assert c.streams.audio[0].codec_context.channels == channels
    d = decode_all(a)
    assert [round(t, 2) for t, mean in d.video if mean > 240] == [0.4]
    assert d.loud and abs(d.loud[0] - 0.6) <= 0.005  # click at 0.5 s + audio_offset 0.1 s


# --- RTSP ----------------------------------------------------------------------------------------

@dataclass
class Watched:
    codecs: dict[str, str]
    video: list[tuple[float, float]] = field(default_factory=list)  # decoded (time, mean RGB)
    audio: list[tuple[float, int]] = field(default_factory=list)  # decoded (time, samples)
    packets: dict[str, int] = field(default_factory=dict)
    untimed: int = 0  # decoded frames without a PTS (FFmpeg gives the first H.264 frame over RTSP none)
    wall: float = 0.0  # seconds from av.open to the last packet
    ended: bool = False  # the server ended the stream


def watch(url: str, until: float) -> Watched:
    """Demux and decode an RTSP stream until `until` seconds of content (or its end)."""
    t0 = time.monotonic()
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5, 5)) as c:
        seen = Watched({s.type: s.codec_context.name for s in c.streams})
        streams = c.streams.video[:1] + c.streams.audio[:1]
        ended = True
        for pkt in c.demux(*streams):
            if pkt.size == 0:
                continue  # the flush packet at the end
            kind = pkt.stream.type
            seen.packets[kind] = seen.packets.get(kind, 0) + 1
            for frame in pkt.decode():
                if frame.time is None:
                    seen.untimed += 1
                    continue
                if kind == "video":
                    seen.video.append((float(frame.time), float(frame.to_ndarray(format="rgb24").mean())))
                else:
                    seen.audio.append((float(frame.time), frame.samples))
            last = max([t for t, _ in seen.video[-1:] + seen.audio[-1:]], default=0.0)
            if last >= until:
                ended = False
                break
        seen.ended = ended
    seen.wall = time.monotonic() - t0
    return seen


@pytest.mark.parametrize("name", ["h264_aac.mp4", "h264_opus.mkv", "video_only.mp4"])
def test_rtsp_server_streams_clip_in_real_time(rtsp_server, media_dir, name):
    spec = MEDIA[name]
    server = rtsp_server(media_dir / name)
    assert server.url == f"rtsp://127.0.0.1:{server.port}/cam"
    assert listeners(server.port) == ["0100007F"]  # 127.0.0.1 only
    seen = watch(server.url, until=2.2)
    assert seen.codecs.get("video") == "h264"
    assert seen.codecs.get("audio") == (CODEC_NAMES[spec["audio_codec"]] if spec["audio_codec"] else None)
    assert len(seen.video) >= 50
    times = [t for t, _ in seen.video]
    assert times == sorted(times) and abs(times[0]) < 0.05, times[:5]
    assert seen.untimed <= 1  # only the very first frame may come without a PTS
    assert all(abs((b - a) - 0.04) < 0.005 for a, b in zip(times, times[1:])), "frames are 1/25 s apart"
    white = [t for t, mean in seen.video if mean > 240]
    assert white and abs(white[0] - 2.0) <= 0.04, white  # the flash made it through, where it belongs
    if spec["audio_codec"]:
        assert sum(n for _, n in seen.audio) >= 2.0 * 48000 * 0.9 or seen.audio[-1][0] >= 2.0
        assert all(b[0] >= a[0] for a, b in zip(seen.audio, seen.audio[1:]))
    # paced like a camera: 2.2 s of content cannot arrive much faster than 2.2 s
    assert 1.9 <= seen.wall <= 6.0, seen.wall


def test_rtsp_server_stop_and_start_on_the_same_port(rtsp_server, media_dir):
    server = rtsp_server(media_dir / "h264_aac.mp4")
    port = server.port
    assert len(watch(server.url, until=0.3).video) >= 5
    server.stop()
    assert listeners(port) == []
    with pytest.raises(OSError):  # av.error.ConnectionRefusedError is a ConnectionRefusedError
        av.open(server.url, options={"rtsp_transport": "tcp"}, timeout=(2, 2))
    server.start()
    assert server.port == port
    again = watch(server.url, until=0.3)
    assert len(again.video) >= 5 and again.codecs == {"video": "h264", "audio": "aac"}


def test_rtsp_server_loops_on_one_timeline_or_ends(rtsp_server, tmp_path):
    clip = make_clip(tmp_path / "short.mkv", seconds=1.2, audio_codec="libopus", flash_at=[0.4], click_at=[0.4])
    looped = watch(rtsp_server(clip, loop=True).url, until=2.9)
    assert not looped.ended
    times = [t for t, _ in looped.video]
    assert times == sorted(times) and len(set(times)) == len(times), "the timeline never goes back"
    assert times[-1] >= 2.8 and max(t for t, _ in looped.audio) >= 2.5
    assert max(b - a for a, b in zip(times, times[1:])) <= 0.06  # no hole at the wrap
    flashes = [t for t, mean in looped.video if mean > 240]
    assert len(flashes) == 3 and all(abs(f - (0.4 + 1.2 * k)) <= 0.05 for k, f in enumerate(flashes)), flashes

    once = watch(rtsp_server(clip, loop=False).url, until=10)
    assert once.ended
    assert abs(once.video[-1][0] - 1.16) <= 0.05 and len(once.video) + once.untimed == 30
    assert once.wall < 5


def test_rtsp_server_start_failure_names_the_cause(tmp_path, media_dir):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not an mp4 file" * 100)
    with pytest.raises(RuntimeError, match="garbage.mp4") as e:
        RtspServer(bad).start(timeout=10)
    assert "its stderr" in str(e.value) and "rtsp_server" in str(e.value)

    busy = RtspServer(media_dir / "video_only.mp4").start()
    try:
        with pytest.raises(RuntimeError, match="cannot listen"):
            RtspServer(media_dir / "video_only.mp4", port=busy.port).start(timeout=10)
    finally:
        busy.close()


def test_free_port_is_bindable_on_loopback(free_port):
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
