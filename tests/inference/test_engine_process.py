"""The engine process with the real ONNX Runtime backend and the default model (no mocks)."""

import collections
import dataclasses
import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.inference.client import EngineClient
from streamer.inference.process import Ended, EngineDied, EngineOptions, EngineStartError, Result
from streamer.ingest.clip import clip_windows
from streamer.ingest.source import probe_geometry
from streamer.outputs import metrics as m
from streamer.ring import WindowRing

SPEC = load_spec(DEFAULT_MODEL)
GEO = probe_geometry(SPEC, 0.5)
CTX = mp.get_context("spawn")


@pytest.fixture(scope="module")
def windows(media_dir):
    return clip_windows(media_dir / "h264_aac.mp4", SPEC)


def make_rings(n=3, slots=4):
    return {f"cam{i}": WindowRing(CTX, GEO, slots) for i in range(n)}


@pytest.fixture
def rings():
    made = make_rings()
    yield made
    for r in made.values():
        r.close(unlink=True)


def opts(model=str(DEFAULT_MODEL), max_batch=8, max_wait_ms=10):
    return EngineOptions(model, "onnxruntime-cpu", 1, max_batch, max_wait_ms)  # CPU on a GPU host too


def drain(client, until, timeout=30):
    """Messages until `until(msgs)` holds (or the timeout)."""
    msgs, deadline = [], time.monotonic() + timeout
    while not until(msgs) and time.monotonic() < deadline:
        msg = client.get(timeout=0.2)
        if msg is not None:
            msgs.append(msg)
    return msgs


def batch_sizes(results):
    """How many of the results each engine call gave: the windows of one batch share its start."""
    return list(collections.Counter(r.infer_start for r in results).values())


def feed(rings, windows, n):
    for cam, ring in rings.items():
        for w in windows[:n]:
            ring.put(dataclasses.replace(w, camera=cam), block=True, timeout=10)


def test_ready_handshake_then_one_result_per_window_in_order(rings, windows):
    client = EngineClient(CTX, opts(), rings, ready_timeout=60)
    try:
        assert (client.backend, client.precision, client.max_batch) == ("onnxruntime", "fp32", 8)
        feed(rings, windows, 3)
        for ring in rings.values():
            ring.put_end()
        msgs = drain(client, lambda ms: sum(isinstance(x, Ended) for x in ms) == 3)
        results = [x for x in msgs if isinstance(x, Result)]
        assert len(results) == 9
        for cam in rings:  # per camera: every window once, in order, then its end
            mine = [x for x in msgs if (x.window.camera if isinstance(x, Result) else x.camera) == cam]
            assert [x.window.start for x in mine[:-1]] == [w.start for w in windows[:3]]
            assert mine[-1] == Ended(cam, rings[cam].shm.name)  # the end names its ring
        assert all(r.scores.shape == (len(SPEC.classes),) and 0 <= r.scores.min() and r.scores.max() <= 1 for r in results)
        # video and audio stay in the engine, keyframes never reach it (evidence: tests/test_ring.py, the evidence ring)
        assert all(r.window.video.size == 0 and r.window.audio.size == 0 and r.window.keyframe is None for r in results)
        assert all(1 <= n <= 8 for n in batch_sizes(results))
    finally:
        client.close()
    assert not client.alive()


def test_many_cameras_share_batches(windows):
    rs = make_rings(n=12, slots=2)
    client = EngineClient(CTX, opts(max_batch=8, max_wait_ms=50), rs, ready_timeout=60)
    try:
        threads = [threading.Thread(target=feed, args=({c: r}, windows, 4)) for c, r in rs.items()]
        for t in threads:
            t.start()
        msgs = drain(client, lambda ms: len(ms) >= 48)
        for t in threads:
            t.join(10)
        results = [x for x in msgs if isinstance(x, Result)]
        assert len(results) == 48
        assert sorted((r.window.camera, r.window.start) for r in results) == sorted(
            (c, w.start) for c in rs for w in windows[:4])
        sizes = batch_sizes(results)
        assert max(sizes) > 1 and all(n <= 8 for n in sizes)
    finally:
        client.close()
        for r in rs.values():
            r.close(unlink=True)


def test_slow_start_names_the_ready_timeout_setting(rings):
    t0 = time.monotonic()
    with pytest.raises(EngineStartError, match=r"within 0.05 s \(engine.ready_timeout\); raise engine.ready_timeout"):
        EngineClient(CTX, opts(), rings, ready_timeout=0.05)  # a real start takes longer than 50 ms
    assert time.monotonic() - t0 < 10


def test_unusable_model_fails_at_start_and_is_not_recoverable(rings, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "bad.json").write_text(DEFAULT_MODEL.with_suffix(".json").read_text())
    with pytest.raises(EngineStartError, match="could not start: ModelLoadError") as e:
        EngineClient(CTX, opts(str(bad)), rings, ready_timeout=60)
    assert e.value.recoverable is False  # a bad model: restarting cannot help


def test_death_is_detected_and_a_restarted_engine_serves_again(windows):
    rs = make_rings(n=2)
    client = EngineClient(CTX, opts(), rs, ready_timeout=60)
    try:
        feed(rs, windows, 1)
        assert len(drain(client, lambda ms: len(ms) >= 2)) == 2
        os.kill(client.proc.pid, signal.SIGKILL)
        client.proc.join(5)
        with pytest.raises(EngineDied, match=r"died \(exit code -9") as died:
            while True:
                client.get(timeout=0.1)
        assert died.value.recoverable is True  # a crash: a fresh engine may serve (below)
    finally:
        client.close()
        for r in rs.values():
            r.close(unlink=True)
    rs = make_rings(n=2)  # what the pipeline does: fresh rings, a fresh engine process
    client = EngineClient(CTX, opts(), rs, ready_timeout=60)
    try:
        feed(rs, windows, 2)
        assert len([x for x in drain(client, lambda ms: len(ms) >= 4) if isinstance(x, Result)]) == 4
    finally:
        client.close()
        for r in rs.values():
            r.close(unlink=True)


def test_pipeline_restarts_a_dead_engine_and_keeps_going(redis_server, media_dir, tmp_path):
    from streamer.config import parse_config
    from streamer.pipeline import Pipeline

    cfg = parse_config({"cameras": [{"id": "cam", "url": str(media_dir / "h264_aac.mp4"), "loop": True}],
                        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")}, "http": {"port": 0}})
    pipe = Pipeline(cfg)
    before = m.ENGINE_RESTARTS._value.get()
    counts = {}

    def wait_for(n: int, seconds: float = 40.0) -> None:
        deadline = time.monotonic() + seconds
        while pipe.stats.windows < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill_engine():  # once windows flow (start-up time depends on the machine's load), then until they flow again
        wait_for(3)
        counts["before_kill"] = pipe.stats.windows
        os.kill(pipe.engine.proc.pid, signal.SIGKILL)
        wait_for(counts["before_kill"] + 6)
        pipe.stop()

    threading.Thread(target=kill_engine, daemon=True).start()
    try:
        pipe.run(duration=90)
    finally:
        pipe.close()
    assert m.ENGINE_RESTARTS._value.get() == before + 1
    assert counts["before_kill"] >= 3
    assert pipe.stats.windows >= counts["before_kill"] + 6, "windows must flow again after the restart"


def test_a_ring_attached_while_running_is_read_and_a_detached_one_is_let_go(rings, windows):
    """Cameras added at run time: the engine reads a ring made after it started (sent over its control
    queue); a detached camera's windows are no longer read and its ring can be unlinked."""
    client = EngineClient(CTX, opts(), rings, ready_timeout=60)
    extra = WindowRing(CTX, GEO, 4)
    try:
        client.attach("late", extra)
        for w in windows[:3]:
            extra.put(dataclasses.replace(w, camera="late"), block=True, timeout=10)
        extra.put_end()
        msgs = drain(client, lambda ms: Ended("late", extra.shm.name) in ms)
        late = [x.window.start for x in msgs if isinstance(x, Result) and x.window.camera == "late"]
        assert late == [w.start for w in windows[:3]]
        client.detach("cam0")
        time.sleep(1.5)  # the collector notices within its 0.5 s read timeout
        feed({"cam0": rings["cam0"], "cam1": rings["cam1"]}, windows, 2)
        msgs = drain(client, lambda ms: sum(isinstance(x, Result) for x in ms) >= 2, timeout=10)
        msgs += drain(client, lambda ms: False, timeout=1.5)
        assert {x.window.camera for x in msgs if isinstance(x, Result)} == {"cam1"}  # cam0 is not read any more
        assert rings["cam0"].ready.qsize() == 2  # its windows wait in a ring nobody reads
    finally:
        client.close()
        extra.close(unlink=True)
