"""The engine process with the real ONNX Runtime backend and the default model; the batcher under load."""

import multiprocessing as mp
import os
import random
import signal
import threading
import time

import pytest

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.engine.batcher import Batcher
from streamer.engine.process import EngineClient, EngineDied, EngineOptions, EngineStartError
from streamer.ingest.clip import clip_windows
from streamer.ingest.source import probe_geometry
from streamer.outputs import metrics as m
from streamer.ring import WindowRing

SPEC = load_spec(DEFAULT_MODEL)
GEO = probe_geometry(SPEC, 0.5)


@pytest.fixture(scope="module")
def windows(media_dir):
    return clip_windows(media_dir / "h264_aac.mp4", SPEC)


@pytest.fixture
def rings():
    ctx = mp.get_context("spawn")
    made = {f"cam{i}": WindowRing(ctx, GEO, 4) for i in range(3)}
    yield ctx, made
    for r in made.values():
        r.close(unlink=True)


def opts(model=str(DEFAULT_MODEL)):
    return EngineOptions(model, "onnxruntime", 1, 8, 10)


def results(client, n, timeout=20):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = client.get(timeout=0.2)
        if msg and msg[0] == "result":
            got.append(msg[1])
    return got


def test_batcher_many_cameras_every_item_once_within_limits():
    b = Batcher(max_batch=8, max_wait_ms=20, capacity=32)

    def camera(cid):
        for i in range(50):
            b.put((cid, i))
            time.sleep(random.random() * 0.002)

    threads = [threading.Thread(target=camera, args=(c,)) for c in range(16)]
    for t in threads:
        t.start()
    seen, sizes = [], []
    while len(seen) < 800:
        batch = b.next_batch(timeout=2)
        assert batch, "batcher stalled"
        sizes.append(len(batch))
        seen += batch
    assert sorted(seen) == sorted((c, i) for c in range(16) for i in range(50))
    assert max(sizes) == 8 and all(1 <= s <= 8 for s in sizes)
    for c in range(16):  # each camera's windows keep their order
        assert [i for cid, i in seen if cid == c] == list(range(50))


def test_ready_handshake_and_one_result_per_window(rings, windows):
    ctx, rs = rings
    client = EngineClient(ctx, opts(), rs, ready_timeout=60)
    try:
        assert client.backend == "onnxruntime"
        for cam, ring in rs.items():
            for w in windows[:3]:
                w.camera = cam
                ring.put(w, block=True)
        got = results(client, 9)
        assert len(got) == 9
        assert sorted((r.window.camera, r.window.start) for r in got) == sorted((c, w.start) for c in rs for w in windows[:3])
        assert all(r.scores.shape == (len(SPEC.classes),) and 0 <= r.scores.min() and r.scores.max() <= 1 for r in got)
        assert all(r.embedding.shape == (SPEC.embedding_dim,) for r in got)
        assert all(r.window.video.size == 0 and r.window.audio.shape == (16000,) for r in got)  # video stays in the engine
    finally:
        client.close()


def test_ready_timeout_names_the_setting(rings):
    ctx, rs = rings
    with pytest.raises(EngineStartError, match="engine.ready_timeout"):
        EngineClient(ctx, opts(), rs, ready_timeout=0.05)


def test_unusable_model_fails_at_start(rings, tmp_path):
    ctx, rs = rings
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "bad.json").write_text((DEFAULT_MODEL.with_suffix(".json")).read_text())
    with pytest.raises(EngineStartError, match="could not start"):
        EngineClient(ctx, opts(str(bad)), rs, ready_timeout=60)


def test_engine_death_is_reported(rings):
    ctx, rs = rings
    client = EngineClient(ctx, opts(), rs, ready_timeout=60)
    try:
        os.kill(client.proc.pid, signal.SIGKILL)
        client.proc.join(5)
        with pytest.raises(EngineDied, match="died"):
            client.get(timeout=0.1)
    finally:
        client.close()


def test_pipeline_restarts_a_dead_engine_and_keeps_going(redis_server, media_dir, tmp_path):
    from streamer.config import parse_config
    from streamer.pipeline import Pipeline

    cfg = parse_config({"cameras": [{"id": "cam", "url": str(media_dir / "h264_aac.mp4"), "loop": True}],
                        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")}, "metrics": {"port": 0}})
    pipe = Pipeline(cfg)
    before = m.ENGINE_RESTARTS._value.get()
    counts = {}

    def kill_engine():
        time.sleep(4)
        counts["before_kill"] = pipe.stats.windows
        os.kill(pipe.engine.proc.pid, signal.SIGKILL)

    threading.Thread(target=kill_engine, daemon=True).start()
    try:
        pipe.run(duration=16)
    finally:
        pipe.close()
    assert m.ENGINE_RESTARTS._value.get() == before + 1
    assert counts["before_kill"] >= 3
    assert pipe.stats.windows >= counts["before_kill"] + 6, "windows must flow again after the restart"
