"""The engine process: its messages to and from the main process, and its loop.

The engine process opens the runtime (with a GPU: the one CUDA context and TensorRT engine of this
machine), reads windows straight from the cameras' shared-memory rings (streamer/ring.py), batches them
across cameras (streamer/inference/batcher.py: `max_batch`, `max_wait_ms`) and sends one small result per
window to the main process: scores and timing (the video and the audio stay in the engine). The results
queue is bounded: a main process that falls behind holds the engine back, and the cameras' rings then
drop their oldest windows. Evidence (keyframe and audio) never passes through the engine: the ingest
process writes it to the camera's evidence ring, which the main process reads (streamer/evidence_ring.py).
A camera's "end" message follows its last result.

Inside the engine process (`EngineLoop`, one method per thread):
    collect, a thread per camera:  ring.get() -> batcher.submit(window) -> (camera, window, future) on `order`
    run, the main thread:          batcher.run_once() -> infer(batch) -> runtime.infer (the thread that opened it)
    deliver:                       `order` in submission order -> future.result() -> results queue
    control:                       Attach(camera, ring) -> a new collector; Detach(camera) -> it ends

Cameras added at run time (the HTTP API, SIGHUP): the main process makes the camera's ring and sends it
on the control queue (`EngineClient.attach`, streamer/ring.py `share`: its queues' pipes travel through
multiprocessing's resource sharer, its semaphores and shared memory by name); a removed camera's
collector is told to stop (`detach`) and drops its mapping of the ring, which the main process unlinks.

The main-process side, `EngineClient`, is in streamer/inference/client.py.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.feed import sigmoid, windows_feed
from engines.spec import OUTPUT_LOGITS
from streamer.errors import StreamerError
from streamer.inference.batcher import Batcher, BatcherClosed
from streamer.ring import END, WindowRing
from streamer.window import Window

log = logging.getLogger(__name__)

READY_SETTING = "engine.ready_timeout"
_EMPTY_VIDEO = np.zeros(0, np.uint8)  # what a Result's window carries instead of its video and audio
_EMPTY_AUDIO = np.zeros(0, np.float32)


class EngineStartError(StreamerError, RuntimeError):
    """The engine could not start: the model or backend is unusable, or no ready signal came in time.
    Not recoverable by restarting: fix the model/backend, or raise `engine.ready_timeout`."""


class EngineDied(StreamerError, RuntimeError):
    """The engine process died while running. Recoverable: the pipeline restarts its process tree
    (capped per minute)."""

    recoverable = True


@dataclass
class Result:
    """One window's outcome, as the main process needs it (no video: it stays in the engine)."""

    window: Window  # video and audio replaced by empty arrays (evidence: streamer/evidence_ring.py)
    scores: np.ndarray  # [K] sigmoid of event_logits
    infer_start: float  # time.monotonic() when its batch started (the same for every window of a batch)
    infer_s: float  # the batch's inference time


@dataclass(frozen=True)
class EngineOptions:
    model: str
    backend: str
    threads: int
    max_batch: int
    max_wait_ms: float
    precision: str = "fp16"  # TensorRT: which built engine to load
    engine_cache: str | None = None  # TensorRT: engine cache directory (default ~/.cache/streamer/engines)
    device: str = "auto"  # engine.device: auto, cpu, cuda, cuda:N
    cuda_graphs: bool = True  # torch on CUDA: a CUDA graph per batch-size bucket


@dataclass(frozen=True)
class Channels:
    """What the two processes share: queues (multiprocessing's, from the client's context) and `stop`."""

    results: Any  # engine -> main: Ready or Failed first, then Result and Ended (bounded)
    stop: Any  # an Event: the main process stops the engine
    control: Any = None  # main -> engine: Attach, Detach


@dataclass(frozen=True)
class Ready:
    """Engine -> main, once: loaded and reading the rings."""

    backend: str
    precision: str
    max_batch: int
    pid: int
    device: str = "cpu"
    chosen_because: str = ""  # why open_runtime chose this backend and device


@dataclass(frozen=True)
class Failed:
    """Engine -> main, instead of Ready: it could not start."""

    error: str


@dataclass(frozen=True)
class Ended:
    """Engine -> main, after a camera's last result: its source finished. `ring` names the ring, so that
    the end of a replaced ring is told apart."""

    camera: str
    ring: str


@dataclass(frozen=True)
class Attach:
    """Main -> engine: read this camera's ring (`streamer.ring.share`d)."""

    camera: str
    ring: bytes


@dataclass(frozen=True)
class Detach:
    """Main -> engine: stop reading this camera's ring and let go of it."""

    camera: str


def engine_main(opts: EngineOptions, rings: dict[str, WindowRing], channels: Channels, parent_pid: int | None = None) -> None:
    """Entry point of the engine process."""
    _become_engine_process(parent_pid)
    from engines.runtime.select import open_runtime

    try:
        runtime = open_runtime(opts.model, backend=opts.backend, threads=opts.threads, device=opts.device,
                               max_batch=opts.max_batch, precision=opts.precision, engine_cache=opts.engine_cache,
                               cuda_graphs=opts.cuda_graphs)
    except Exception as e:  # reported to the parent, which raises EngineStartError; then this process ends
        channels.results.put(Failed(f"{type(e).__name__}: {e}"))
        return
    EngineLoop(runtime, opts, rings, channels).run()


def _become_engine_process(parent_pid: int | None) -> None:
    from streamer.errors import install_log_redaction
    from streamer.procs import die_with_parent, set_name

    die_with_parent(parent_pid)  # SIGKILL when the main process ends, however it ends
    set_name("streamer:engine")  # /proc/<pid>/comm, ps, top
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")
    install_log_redaction()


def _count_poses(now: tuple[int, int], before: list[int]) -> None:
    """Export the runtime's (computed, reused) pose frames since `before` (updated in place)."""
    from streamer.outputs import metrics as m

    for result, n, b in zip(("computed", "reused"), now, before):
        if n > b:
            m.POSE_FRAMES.labels(result).inc(n - b)
    before[:] = now


class EngineLoop:
    """The engine process with its runtime open: the threads (one method each) and the state they share."""

    def __init__(self, runtime: Any, opts: EngineOptions, rings: dict[str, WindowRing], channels: Channels) -> None:
        self.runtime, self.rings, self.ch = runtime, rings, channels
        self.max_batch = opts.max_batch
        if runtime.max_batch is not None and runtime.max_batch < self.max_batch:
            log.warning("engine.max_batch %d is more than this %s engine takes (%d); batches are capped at %d",
                        self.max_batch, runtime.backend, runtime.max_batch, runtime.max_batch)
            self.max_batch = runtime.max_batch
        self.batcher: Batcher[Window, tuple] = Batcher(self.infer, self.max_batch, opts.max_wait_ms,
                                                       capacity=2 * self.max_batch)
        # (camera, window | END, future | ring name), in submission order per camera; bounded: a full one holds
        # the collectors back (the rings then drop their oldest windows), memory stays flat
        self.order: queue.Queue = queue.Queue(maxsize=4 * self.max_batch + 2 * len(rings))
        self.detached = {cam: threading.Event() for cam in rings}  # set: that camera's collector ends
        self.pose_counts = list(runtime.pose_counts)

    def run(self) -> None:
        """Start the threads, say Ready, and run batches on this thread (the one that opened the runtime)
        until stopped."""
        import os

        from streamer.outputs import metrics as m

        precision = getattr(self.runtime, "precision", "fp32")
        m.ENGINE_INFO.labels(self.runtime.backend, precision, self.runtime.spec.name).set(1)
        for cam, ring in self.rings.items():
            self._start_collector(cam, ring)
        deliverer = self._thread(self.deliver, "deliver")
        self._thread(self.control, "control")
        rt = self.runtime
        self.ch.results.put(Ready(rt.backend, precision, self.max_batch, os.getpid(), rt.device, rt.chosen_because))
        with rt:
            try:
                while not self.ch.stop.is_set():
                    self.batcher.run_once(timeout=0.2)  # errors go to the batch's windows, counted by the deliverer
            finally:
                self._shut_down(deliverer)

    def _thread(self, target: Any, name: str, *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"streamer:engine:{name}", daemon=True)
        t.start()
        return t

    def _start_collector(self, camera: str, ring: WindowRing) -> None:
        self._thread(self.collect, f"collect:{camera}", camera, ring, self.detached[camera])

    def _shut_down(self, deliverer: threading.Thread) -> None:
        self.batcher.close()
        try:
            self.order.put(("", None, None), timeout=0.5)
        except queue.Full:
            pass  # the deliverer is waiting on a full results queue: it sees `stop` itself
        deliverer.join(timeout=1)
        # results nobody will read must not hold this process at exit (its queue feeder would wait for the
        # pipe to drain)
        for q in (self.ch.results, self.ch.control):
            if q is not None:
                q.cancel_join_thread()

    def infer(self, windows: list[Window]) -> list[tuple[np.ndarray, float, float]]:
        """One runtime call: (scores, start, duration) per window that the runtime returned (the batcher
        checks the count). The graph's `embedding` output is not sent: nothing in the main process reads it."""
        from streamer.outputs import metrics as m

        t0 = time.monotonic()
        logits = self.runtime.infer(windows_feed(windows))[OUTPUT_LOGITS]
        dt = time.monotonic() - t0
        m.STAGE_LATENCY.labels("infer").observe(dt)
        m.BATCH_SIZE.observe(len(windows))
        _count_poses(self.runtime.pose_counts, self.pose_counts)
        for w in windows:
            m.STAGE_LATENCY.labels("queue").observe(max(t0 - w.arrival, 0))
        scores = sigmoid(logits)
        return [(scores[i], t0, dt) for i in range(logits.shape[0])]

    def _put(self, q: Any, item: Any) -> bool:
        """Put on a bounded queue, waiting while it is full; False once stopping."""
        while True:
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self.ch.stop.is_set():
                    return False

    def collect(self, camera: str, ring: WindowRing, gone: threading.Event) -> None:
        """One camera's ring -> the batcher, and its future (or its END) on `order`; until stopped or `gone`."""
        try:
            while not self.ch.stop.is_set() and not gone.is_set():
                try:
                    item = ring.get(timeout=0.5)
                except (queue.Empty, OSError, ValueError, EOFError):
                    continue
                if gone.is_set():
                    return
                if isinstance(item, str):  # END: reported after this camera's last result (naming the ring)
                    self._put(self.order, (camera, END, ring.shm.name))
                    return
                try:
                    fut = self.batcher.submit(item)
                except BatcherClosed:
                    return
                if not self._put(self.order, (camera, item, fut)):
                    return
        finally:
            if gone.is_set():  # detached: let go of the ring (the main process unlinks it)
                ring.let_go()

    def control(self) -> None:
        """Cameras added and removed while running."""
        while self.ch.control is not None and not self.ch.stop.is_set():
            try:
                msg = self.ch.control.get(timeout=0.5)
            except (queue.Empty, OSError, EOFError, ValueError):
                continue
            if msg is None:
                return
            if isinstance(msg, Attach):
                self.attach(msg)
            elif isinstance(msg, Detach):
                self.detach(msg.camera)

    def attach(self, msg: Attach) -> None:
        """A new collector for the camera's ring; one it had before (a replaced ring) ends."""
        import pickle

        self.detach(msg.camera, quiet=True)
        self.detached[msg.camera] = threading.Event()
        self._start_collector(msg.camera, pickle.loads(msg.ring))
        log.info("camera %s: attached", msg.camera)

    def detach(self, camera: str, quiet: bool = False) -> None:
        gone = self.detached.pop(camera, None)
        if gone is not None:
            gone.set()
        if not quiet:
            log.info("camera %s: detached", camera)

    def deliver(self) -> None:
        """`order` -> the results queue, in submission order: each window's Result, each camera's Ended."""
        while True:
            camera, w, fut = self.order.get()
            if w is None:
                return
            if isinstance(w, str):
                self._put(self.ch.results, Ended(camera, fut))  # fut: the ring's name
                continue
            try:
                scores, t0, dt = fut.result()
            except Exception as e:  # that window's batch failed: counted, never silently lost
                from streamer.outputs import metrics as m

                if not isinstance(e, BatcherClosed):
                    log.error("camera %s: window at %.2f s lost: %s", camera, w.start, e)
                m.WINDOWS_DROPPED.labels(camera, "engine_error").inc()
                continue
            w.video, w.audio = _EMPTY_VIDEO, _EMPTY_AUDIO
            if not self._put(self.ch.results, Result(w, scores, t0, dt)):
                return
