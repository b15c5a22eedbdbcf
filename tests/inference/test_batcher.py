"""The batcher with many concurrent cameras: one result per input, limits kept, failures to every caller."""

import random
import threading
import time

import pytest

from streamer.inference.batcher import Batcher, BatcherClosed, BatchError


class Owner:
    """The engine's main thread: runs batches until stopped."""

    def __init__(self, batcher):
        self.batcher, self.stop = batcher, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            self.batcher.run_once(timeout=0.05)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def test_many_cameras_each_caller_gets_its_own_result_within_limits():
    sizes, threads_seen = [], set()

    def fn(items):
        sizes.append(len(items))
        threads_seen.add(threading.current_thread().name)
        time.sleep(0.002)  # an inference
        return [(cam, i, i * i) for cam, i in items]

    b = Batcher(fn, max_batch=8, max_wait_ms=10, capacity=32)
    owner = Owner(b)
    got, errors = {}, []

    def camera(cid):
        futs = []
        for i in range(40):
            futs.append(b.submit((cid, i)))
            time.sleep(random.random() * 0.003)
        try:
            got[cid] = [f.result(timeout=10) for f in futs]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    cams = [threading.Thread(target=camera, args=(c,)) for c in range(20)]
    for t in cams:
        t.start()
    for t in cams:
        t.join(30)
    owner.close()
    assert not errors
    for c in range(20):  # every caller got exactly its own results, in its order
        assert got[c] == [(c, i, i * i) for i in range(40)]
    assert sum(sizes) == 800 and max(sizes) == 8 and all(1 <= s <= 8 for s in sizes)
    assert sum(sizes) / len(sizes) > 2, "concurrent cameras should share batches"
    assert threads_seen == {owner.thread.name}, "the batch function runs on the owning thread only"


def test_a_lone_window_waits_at_most_max_wait():
    b = Batcher(lambda items: items, max_batch=8, max_wait_ms=30)
    owner = Owner(b)
    try:
        t0 = time.monotonic()
        assert b.submit("w").result(timeout=5) == "w"
        assert time.monotonic() - t0 < 0.03 + 0.15  # max_wait plus scheduling slack, far from a full batch
    finally:
        owner.close()


def test_a_full_batch_does_not_wait():
    b = Batcher(lambda items: items, max_batch=4, max_wait_ms=5000)
    futs = [b.submit(i) for i in range(4)]
    t0 = time.monotonic()
    assert b.run_once(timeout=1) == 4
    assert time.monotonic() - t0 < 0.5
    assert [f.result(0) for f in futs] == [0, 1, 2, 3]


def test_a_failing_batch_fails_every_caller_of_that_batch_only():
    calls = []

    def fn(items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("inference failed")
        return items

    b = Batcher(fn, max_batch=3, max_wait_ms=0)
    first = [b.submit(x) for x in ("a", "boom", "c")]
    second = [b.submit(x) for x in ("d", "e")]
    assert b.run_once(1) == 3 and b.run_once(1) == 2
    for f in first:
        with pytest.raises(RuntimeError, match="inference failed"):
            f.result(0)
    assert [f.result(0) for f in second] == ["d", "e"]


@pytest.mark.parametrize("rows", [1, 3])
def test_not_one_result_per_input_fails_every_caller(rows):
    b = Batcher(lambda items: ["x"] * rows, max_batch=2, max_wait_ms=0)
    futs = [b.submit(i) for i in range(2)]
    b.run_once(1)
    for f in futs:
        with pytest.raises(BatchError, match=f"returned {rows} results for 2 inputs"):
            f.result(0)


def test_capacity_blocks_producers_and_close_releases_everyone():
    b = Batcher(lambda items: items, max_batch=2, max_wait_ms=0, capacity=2)
    waiting = [b.submit(1), b.submit(2)]
    with pytest.raises(TimeoutError, match="stayed full"):
        b.submit(3, timeout=0.05)
    blocked = []

    def producer():
        try:
            b.submit(4)
        except BatcherClosed as e:
            blocked.append(e)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    b.close()
    t.join(2)
    assert blocked and not t.is_alive()
    for f in waiting:
        with pytest.raises(BatcherClosed):
            f.result(0)
    with pytest.raises(BatcherClosed):
        b.submit(5)
    assert b.run_once(timeout=0.01) == 0
