"""A window's moving objects go beside it to the main process, never through the engine's ring."""

import multiprocessing as mp
import os
import struct
import time

import numpy as np

from streamer import window_objects
from streamer.ring import WindowRing
from streamer.window import Geometry, Window
from streamer.window_objects import WindowObjects

GEO = Geometry(frames=4, height=8, width=8, seconds=1.0, hop=0.5, sample_rate=1000, objects=True)


def window(i):
    return Window(camera="c", start=i * 0.5, end=i * 0.5 + 1, video=np.zeros((4, 8, 8, 3), np.uint8),
                  audio=np.zeros(1000, np.float32), video_mask=1.0, audio_mask=1.0, arrival=time.monotonic(),
                  objects=np.full((2, 11), i, np.float64), objects_s=0.01 * i)


def produce(ring, objects, n):
    """What an ingest process does with each window (streamer/ingest/supervisor.py _Ingest._put)."""
    for i in range(n):
        window_objects.send(objects, window(i))
        ring.put(window(i), block=True)
    ring.put_end()
    ring.close()


def wait_take(store, cid, start, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = store.take(cid, start)
        if got is not None:
            return got
        time.sleep(0.01)
    return None


def test_the_engine_never_gets_objects_and_scoring_does():
    ctx = mp.get_context("spawn")
    ring, store = WindowRing(ctx, GEO, slots=2), WindowObjects(ctx)
    try:
        p = ctx.Process(target=produce, args=(ring, store.fresh("c"), 5))
        p.start()
        for i in range(5):
            w = ring.get(timeout=10)  # the engine's read side
            assert w.objects is None and w.start == i * 0.5
            got = wait_take(store, "c", w.start)  # the detection thread's, when the window's result arrives
            assert got is not None
            objects, objects_s = got
            assert objects.shape == (2, 11) and objects[0, 0] == i and objects_s == 0.01 * i
        p.join(10)
        assert p.exitcode == 0
    finally:
        ring.close(unlink=True)


def test_a_missing_window_is_none_and_older_entries_go():
    ctx = mp.get_context("spawn")
    store = WindowObjects(ctx)
    q = store.fresh("c")
    for i in (0, 1, 3):
        window_objects.send(q, window(i))
    assert wait_take(store, "c", 0.0) is not None  # arrived
    deadline = time.monotonic() + 5  # the reader thread stores the other two
    while len(store.kept.get("c", ())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.take("c", 1.0) is None  # window 2 (start 1.0) never queued: not scored, counted by the caller
    assert [e[0] for e in store.kept["c"]] == [1.5]  # window 1's entry went (its result will not come)
    assert store.take("c", 1.5)[0][0, 0] == 3
    assert store.take("other", 0.0) is None


def test_a_fresh_process_gets_a_fresh_queue_and_keeps_what_arrived():
    ctx = mp.get_context("spawn")
    store = WindowObjects(ctx)
    old = store.fresh("c")
    window_objects.send(old, window(0))
    time.sleep(0.2)  # the queue's feeder thread delivers
    new = store.fresh("c")  # the camera's ingest process respawned (the old one may have died holding a lock)
    assert new is not old
    window_objects.send(new, window(1))
    assert wait_take(store, "c", 0.0) is not None
    assert wait_take(store, "c", 0.5) is not None
    store.drop("c")
    assert store.take("c", 0.5) is None


def test_a_message_cut_short_by_a_killed_writer_blocks_neither_detection_nor_the_next_process():
    store = WindowObjects(mp.get_context("spawn"))
    q = store.fresh("c")
    q.put((0.0, np.ones((1, 3)), 0.0))
    assert wait_take(store, "c", 0.0) is not None
    # what an ingest process SIGKILLed mid-write leaves in the pipe: a length header and part of the message
    os.write(q._writer.fileno(), struct.pack("!i", 1_000_000) + b"\x80" * 16)
    t0 = time.monotonic()
    assert store.take("c", 0.5) is None  # not arrived: never a wait on the pipe
    assert time.monotonic() - t0 < 0.1
    q2 = store.fresh("c")  # the respawned process's queue and reader
    q2.put((0.5, np.full((1, 3), 2.0), 0.0))
    got = wait_take(store, "c", 0.5)
    assert got is not None and got[0][0, 0] == 2.0
