"""The source supervisor against a real RTSP server that goes away, comes back, or stalls."""

import multiprocessing as mp
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from engines.spec import ModelSpec
from streamer.config import CameraConfig
from streamer.errors import SourceTimeout
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry
from streamer.ingest.supervisor import ingest_main
from streamer.ring import END, RingHandle, WindowRing

GEO = probe_geometry(ModelSpec(frames=4, height=32, width=32), 0.5)


def metric(dir_, name, camera):
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(dir_))
    return registry.get_sample_value(name, {"camera": camera}) or 0.0


def test_rtsp_server_restart_mid_stream_resumes(rtsp_server, media_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the ingest process records metrics here
    server = rtsp_server(media_dir / "h264_aac.mp4")
    ctx = mp.get_context("spawn")
    ring = WindowRing(ctx, GEO, 8)
    stop, updates = ctx.Event(), ctx.Queue()  # (kept referenced until the child has started)
    cam = CameraConfig(id="cam", url=server.url, open_timeout=3, stall_timeout=3)
    proc = ctx.Process(target=ingest_main, args=(cam, GEO, RingHandle(ring, updates), stop))
    proc.start()
    try:
        before = [ring.get(timeout=15) for _ in range(3)]
        server.stop()
        time.sleep(1.0)
        server.start()
        after = []
        deadline = time.monotonic() + 30
        while len(after) < 3 and time.monotonic() < deadline:
            w = ring.get(timeout=30)
            if w != END and w.start > before[-1].start + 0.5:
                after.append(w)
        assert len(after) == 3, "windows did not resume after the server came back"
        assert all(a.start > before[-1].end - 1 for a in after)  # the timeline continues, it does not restart at 0
        assert metric(tmp_path, "streamer_reconnects_total", "cam") >= 1
        assert metric(tmp_path, "streamer_frames_decoded_total", "cam") > 0
        assert metric(tmp_path, "streamer_audio_frames_decoded_total", "cam") > 0  # the ingest process exports its counts
    finally:
        stop.set()
        proc.join(10)
        ring.close(unlink=True)


def test_stall_watchdog_fires_within_stall_timeout(rtsp_server, media_dir):
    server = rtsp_server(media_dir / "h264_aac.mp4")
    reader = SourceReader(server.url, "cam", GEO, SourceOptions(open_timeout=5, stall_timeout=2.0))
    with pytest.raises(SourceTimeout, match="stall_timeout"):
        for w in reader.windows():
            if w.start == 1.0:
                server.pause()  # the connection stays open, nothing more is sent
    silence = time.monotonic() - reader.stats.last_packet
    assert silence <= 2.0 + 1.0, f"watchdog fired {silence:.2f} s after the last packet"


def test_a_running_ingest_process_switches_to_the_ring_it_is_handed(media_dir):
    """After an engine restart the pipeline hands each ingest process a fresh ring (RingHandle): the
    process keeps decoding, its next windows land in the new ring, continuing the same timeline."""
    from streamer.ring import share

    ctx = mp.get_context("spawn")
    old, new, updates, stop = WindowRing(ctx, GEO, 4), WindowRing(ctx, GEO, 4), ctx.Queue(), ctx.Event()
    cam = CameraConfig(id="cam", url=str(media_dir / "h264_aac.mp4"), realtime=True, loop=True)
    proc = ctx.Process(target=ingest_main, args=(cam, GEO, RingHandle(old, updates), stop))
    proc.start()
    try:
        before = old.get(timeout=15)
        updates.put(share(new))
        after = new.get(timeout=10)
        assert after.start > before.start  # the same process and timeline, not a restart at 0
        assert proc.is_alive()
    finally:
        stop.set()
        proc.join(10)
        old.close(unlink=True)
        new.close(unlink=True)
