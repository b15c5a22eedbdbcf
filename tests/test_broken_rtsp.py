"""Broken RTSP: a server that answers garbage (hypothesis picks the bytes and when it hangs up), and broken
media served by the real RTSP server (flipped H.264 bytes, a file cut mid-frame). Each fails with one
SourceError naming the redacted URL, or gives increasing windows, in bounded time; in a running pipeline
the broken cameras stay bounded in their log lines while a good camera keeps its windows."""

from __future__ import annotations

import re
import socket
import threading
import time

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.config import parse_config
from streamer.errors import SourceError
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry
from streamer.net import free_port
from streamer.pipeline import Pipeline
from tests.fuzz import FUZZ
from tests.media import make_clip
from tests.test_restarts import run_until

SPEC = load_spec(DEFAULT_MODEL)
OPEN_S = 2.0
BOUND_S = 3 * OPEN_S + 5.0  # open, read stall, close: each bounded by the source's timeouts


class GarbageServer:
    """A TCP server that reads each request and answers `reply`, then hangs up (or keeps the connection
    open, silent, when `hang`)."""

    def __init__(self, reply: bytes, hang: bool) -> None:
        self.reply, self.hang = reply, hang
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.settimeout(1.0)
                conn.recv(4096)
                conn.sendall(self.reply)
                if not self.hang:
                    conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


REPLIES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda status, body: f"RTSP/1.0 {status} X\r\nCSeq: 1\r\n".encode() + body,
              st.integers(100, 999), st.binary(max_size=120)),
    st.builds(lambda n, sdp: (f"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n"
                              ).encode() + sdp, st.integers(0, 400), st.binary(max_size=200)),
)


@settings(FUZZ, max_examples=6)
@given(reply=REPLIES, hang=st.booleans())
def test_a_garbage_rtsp_server_gives_one_source_error_in_bounded_time(reply, hang):
    server = GarbageServer(reply, hang)
    url = f"rtsp://user:secret@127.0.0.1:{server.port}/cam"
    reader = SourceReader(url, "cam", probe_geometry(SPEC, 0.5),
                          SourceOptions(open_timeout=OPEN_S, stall_timeout=OPEN_S))
    t0 = time.monotonic()
    try:
        with pytest.raises(SourceError) as e:
            for _ in reader.windows():
                pass
    finally:
        server.close()
    assert time.monotonic() - t0 < BOUND_S
    msg = str(e.value)
    assert "\n" not in msg and "secret" not in msg and f"127.0.0.1:{server.port}/cam" in msg


def _flipped(src, dst, seed: int, flips: int = 40):
    """`src` remuxed into `dst` (Matroska) with `flips` bytes flipped in the slice data of its video
    packets (the 4-byte NAL length and the NAL header kept, so the damage is inside the pictures)."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vs = i.streams.video[0]
        ov = o.add_stream_from_template(vs)
        packets = [p for p in i.demux(vs) if p.dts is not None]
        hit = set(rng.choice(len(packets), size=min(flips, len(packets)), replace=False).tolist())
        for n, p in enumerate(packets):
            data = bytearray(bytes(p))
            if n in hit and len(data) > 8:
                data[int(rng.integers(6, len(data)))] ^= int(rng.integers(1, 256))
            q = av.Packet(bytes(data))
            q.pts, q.dts, q.time_base, q.is_keyframe, q.stream = p.pts, p.dts, p.time_base, p.is_keyframe, ov
            o.mux(q)
    return dst


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    d = tmp_path_factory.mktemp("broken_rtsp")
    clip = make_clip(d / "clip.mkv", seconds=3, size=(160, 120), video_codec="h264", audio_codec=None)
    whole = clip.read_bytes()
    cut = d / "cut.mkv"
    cut.write_bytes(whole[: len(whole) // 2])  # the server's stream ends mid-frame
    return {"flip": _flipped(clip, d / "flip.mkv", seed=7), "cut": cut}


def test_broken_media_over_rtsp_leaves_the_good_camera_its_windows(broken, rtsp_server, media_dir, redis_server,
                                                                  tmp_path, capfd):
    urls = {cid: rtsp_server(path, loop=False).url for cid, path in broken.items()}
    cams = [{"id": "good", "url": str(media_dir / "h264_aac.mp4"), "loop": True}]
    cams += [{"id": cid, "url": url, "open_timeout": OPEN_S, "stall_timeout": OPEN_S} for cid, url in urls.items()]
    cfg = parse_config({"cameras": cams, "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")},
                        "http": {"port": 0}, "anomaly": {"enabled": False}, "engine": {"backend": "onnxruntime-cpu"}})
    starts: dict[str, list[float]] = {}
    pipe = Pipeline(cfg, on_window=lambda r: starts.setdefault(r.window.camera, []).append(r.window.start))
    run_until(pipe, [], lambda: len(starts.get("good", [])) >= 12, timeout=40)
    t0 = time.monotonic()
    try:
        pipe.run()
    finally:
        pipe.close()
    assert time.monotonic() - t0 < 45  # nothing hangs
    good = starts["good"]
    assert len(good) >= 12 and all(abs(b - a - 0.5) < 1e-6 for a, b in zip(good, good[1:])), good
    for cid in urls:
        s = starts.get(cid, [])
        assert s and s == sorted(set(s)), (cid, s)  # played (damaged pictures still decode), in order, never twice  # what a broken stream gave is in order, never twice
    err = capfd.readouterr().err
    assert not re.search(r"Traceback", err), err[-3000:]
    for cid in urls:  # one line per attempt at most: a served stream that ends is reopened under the budget
        lines = [x for x in err.splitlines() if re.search(rf"(ERROR|WARNING) camera {cid}: ", x)]
        assert len(lines) <= 6, (cid, lines)
