"""The shared-memory ring between an ingest process and the engine: bounded, drops the oldest."""

import multiprocessing as mp
import time

import numpy as np

from streamer.ring import END, WindowRing
from streamer.window import Geometry, Window

GEO = Geometry(frames=4, height=8, width=8, seconds=1.0, hop=0.5, sample_rate=1000)


def window(i):
    return Window(camera="c", start=i * 0.5, end=i * 0.5 + 1, video=np.full((4, 8, 8, 3), i % 256, np.uint8),
                  audio=np.full(1000, i, np.float32), video_mask=1.0, audio_mask=1.0, arrival=time.monotonic(),
                  keyframe=np.full((6, 8, 3), 7, np.uint8))


def produce(ring, n, delay):
    dropped = 0
    for i in range(n):
        dropped += ring.put(window(i))[1]
        time.sleep(delay)
    ring.put_end()
    ring.close()


def test_round_trip_keeps_every_field_but_the_keyframe():
    ring = WindowRing(mp.get_context("spawn"), GEO, slots=2)
    try:
        ring.put(window(3))
        w = ring.get(timeout=2)
        assert w.start == 1.5 and w.video[0, 0, 0, 0] == 3 and w.audio[0] == 3
        assert w.keyframe is None  # the keyframe goes to the evidence ring (tests/test_evidence_ring.py), not to the engine
        assert w.camera == "c" and w.video_mask == 1.0
    finally:
        ring.close(unlink=True)


def test_full_ring_drops_the_oldest():
    ring = WindowRing(mp.get_context("spawn"), GEO, slots=3)
    try:
        results = [ring.put(window(i)) for i in range(10)]
        assert sum(d for _w, d in results) == 7
        got = [ring.get(timeout=2).start for _ in range(3)]
        assert got == [3.5, 4.0, 4.5]  # the newest three survive, in order
    finally:
        ring.close(unlink=True)


def test_slow_consumer_across_processes_stays_bounded():
    ctx = mp.get_context("spawn")
    ring = WindowRing(ctx, GEO, slots=4)
    proc = ctx.Process(target=produce, args=(ring, 200, 0.002))
    proc.start()
    ages, starts = [], []
    try:
        while True:
            w = ring.get(timeout=10)
            if w == END:
                break
            ages.append(time.monotonic() - w.arrival)
            starts.append(w.start)
            time.sleep(0.02)  # an engine ten times slower than the source
        proc.join(5)
        assert len(starts) < 100, "most windows must have been dropped"
        assert starts == sorted(starts) and starts[-1] == 199 * 0.5  # order kept, newest delivered
        assert max(ages[len(ages) // 2:]) < 4 * 0.02 + 0.1  # latency bounded by the ring size, not growing
    finally:
        ring.close(unlink=True)
