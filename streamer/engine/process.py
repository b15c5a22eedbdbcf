"""The engine process and its client in the main process.

The engine process opens the runtime (with a GPU: the one CUDA context and TensorRT engine of this
machine), reads windows straight from the cameras' shared-memory rings (streamer/ring.py), batches them
across cameras (streamer/engine/batcher.py: `max_batch`, `max_wait_ms`) and sends one small result per
window to the main process: scores, embedding, timing (the video, the audio and the keyframe stay in
the engine). The results queue is bounded: a main process that falls behind holds the engine back,
and the cameras' rings then drop their oldest windows. Evidence (keyframe and audio) is kept for each
camera's last `EVIDENCE_KEEP` windows and sent only when the main process asks for it, for a start
alert (`EngineClient.evidence`). A camera's "end" message follows its last result.

Inside the engine process:
    collector thread per camera:  ring.get() -> batcher.submit(window) -> (camera, window, future) on `order`
    main thread:                  batcher.run_once() -> runtime.infer(batch) (the thread that opened it)
    deliverer thread:             `order` in submission order -> future.result() -> results queue
    evidence thread:              requests (camera, window start) -> that window's keyframe + audio
    control thread:               Attach(camera, ring) -> a new collector; Detach(camera) -> it ends

Cameras added at run time (the HTTP API, SIGHUP): the main process makes the camera's ring and sends it
on the control queue (`EngineClient.attach`, streamer/ring.py `share`: its queues' pipes travel through
multiprocessing's resource sharer, its semaphores and shared memory by name); a removed camera's
collector is told to stop (`detach`) and drops its mapping of the ring, which the main process unlinks.

`EngineClient` (main process) starts the process and waits for its ready handshake; a missing handshake
raises EngineStartError naming `engine.ready_timeout`, a dead engine raises EngineDied from `get()`.
Restarting is the parent's job: a process killed while reading a ring's queue can leave that queue's
lock taken, so the pipeline restarts the engine with fresh rings and hands each running ingest process
its camera's new ring (streamer/ring.py RingHandle).
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.engine.batcher import Batcher, BatcherClosed
from streamer.errors import StreamerError
from streamer.ring import END, WindowRing
from streamer.window import Window

log = logging.getLogger(__name__)

READY_SETTING = "engine.ready_timeout"
EVIDENCE_KEEP = 16  # windows per camera whose keyframe and audio the engine keeps for evidence requests


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

    window: Window  # video and audio replaced by empty arrays, no keyframe (see EngineClient.evidence)
    scores: np.ndarray  # [K] sigmoid of event_logits
    embedding: np.ndarray  # [D]
    infer_start: float  # time.monotonic() when its batch started
    infer_s: float  # the batch's inference time
    batch: int = 1  # how many windows shared that call


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


def _count_poses(now: tuple[int, int], before: list[int]) -> None:
    """Export the runtime's (computed, reused) pose frames since `before` (updated in place)."""
    from streamer.outputs import metrics as m

    for result, n, b in zip(("computed", "reused"), now, before):
        if n > b:
            m.POSE_FRAMES.labels(result).inc(n - b)
    before[:] = now


def engine_main(opts: EngineOptions, rings: dict[str, WindowRing], results: Any, stop: Any,
                requests: Any = None, replies: Any = None, parent_pid: int | None = None, control: Any = None) -> None:
    """Entry point of the engine process."""
    import os

    from streamer.errors import install_log_redaction
    from streamer.procs import die_with_parent, set_name

    die_with_parent(parent_pid)  # SIGKILL when the main process ends, however it ends
    set_name("streamer:engine")  # /proc/<pid>/comm, ps, top
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")
    install_log_redaction()
    from engines import spec as espec
    from engines.feed import sigmoid, windows_feed
    from engines.runtime.select import open_runtime
    from streamer.outputs import metrics as m

    try:
        runtime = open_runtime(opts.model, backend=opts.backend, threads=opts.threads, device=opts.device,
                               max_batch=opts.max_batch, precision=opts.precision, engine_cache=opts.engine_cache,
                               cuda_graphs=opts.cuda_graphs)
    except Exception as e:  # reported to the parent, which raises EngineStartError; then this process ends
        results.put(Failed(f"{type(e).__name__}: {e}"))
        return
    precision = getattr(runtime, "precision", "fp32")
    max_batch = opts.max_batch
    if runtime.max_batch is not None and runtime.max_batch < max_batch:
        log.warning("engine.max_batch %d is more than this %s engine takes (%d); batches are capped at %d",
                    max_batch, runtime.backend, runtime.max_batch, runtime.max_batch)
        max_batch = runtime.max_batch
    m.ENGINE_INFO.labels(runtime.backend, precision, runtime.spec.name).set(1)

    pose_counts = list(runtime.pose_counts)

    def infer(windows: list[Window]) -> list[tuple[np.ndarray, np.ndarray, float, float, int]]:
        """One runtime call; one row per window that the runtime returned (the batcher checks the count)."""
        t0 = time.monotonic()
        out = runtime.infer(windows_feed(windows))
        logits, emb = out[espec.OUTPUT_LOGITS], out[espec.OUTPUT_EMBEDDING]
        if logits.shape[0] != emb.shape[0]:
            raise RuntimeError(f"the runtime returned {logits.shape[0]} logit rows but {emb.shape[0]} embeddings")
        dt = time.monotonic() - t0
        m.STAGE_LATENCY.labels("infer").observe(dt)
        m.BATCH_SIZE.observe(len(windows))
        _count_poses(runtime.pose_counts, pose_counts)
        for w in windows:
            m.STAGE_LATENCY.labels("queue").observe(max(t0 - w.arrival, 0))
        scores = sigmoid(logits)
        return [(scores[i], emb[i], t0, dt, len(windows)) for i in range(logits.shape[0])]

    batcher: Batcher[Window, tuple] = Batcher(infer, max_batch, opts.max_wait_ms, capacity=2 * max_batch)
    # (camera, window | END, future | None), in submission order per camera; bounded: a full one holds the
    # collectors back (the rings then drop their oldest windows), memory stays flat
    order: queue.Queue = queue.Queue(maxsize=4 * max_batch + 2 * len(rings))
    empty = np.zeros(0, np.uint8)
    empty_audio = np.zeros(0, np.float32)
    kept: dict[str, collections.deque] = {cam: collections.deque(maxlen=EVIDENCE_KEEP) for cam in rings}
    kept_lock = threading.Lock()

    def send(msg: tuple) -> bool:
        """Put on the bounded results queue, waiting while it is full; False once stopping."""
        while True:
            try:
                results.put(msg, timeout=0.2)
                return True
            except queue.Full:
                if stop.is_set():
                    return False

    def put_order(item: tuple) -> bool:
        while True:
            try:
                order.put(item, timeout=0.2)
                return True
            except queue.Full:
                if stop.is_set():
                    return False

    detached: dict[str, threading.Event] = {}

    def collect(camera: str, ring: WindowRing, gone: threading.Event | None = None) -> None:
        try:
            while not stop.is_set() and not (gone is not None and gone.is_set()):
                try:
                    item = ring.get(timeout=0.5)
                except (queue.Empty, OSError, ValueError, EOFError):
                    continue
                if gone is not None and gone.is_set():
                    return
                if isinstance(item, str):  # END: reported after this camera's last result (naming the ring)
                    put_order((camera, END, ring.shm.name))
                    return
                try:
                    fut = batcher.submit(item)
                except BatcherClosed:
                    return
                if not put_order((camera, item, fut)):
                    return
        finally:
            if gone is not None and gone.is_set():  # detached: let go of the ring (the main process unlinks it)
                ring.let_go()

    def control_loop() -> None:
        """Cameras added and removed while running."""
        import pickle

        while control is not None and not stop.is_set():
            try:
                msg = control.get(timeout=0.5)
            except (queue.Empty, OSError, EOFError, ValueError):
                continue
            if msg is None:
                return
            if isinstance(msg, Attach):
                camera, ring = msg.camera, pickle.loads(msg.ring)
                old = detached.get(camera)
                if old is not None:
                    old.set()
                gone = detached[camera] = threading.Event()
                with kept_lock:
                    kept[camera] = collections.deque(maxlen=EVIDENCE_KEEP)
                threading.Thread(target=collect, args=(camera, ring, gone), name=f"streamer:engine:collect:{camera}",
                                 daemon=True).start()
                log.info("camera %s: attached", camera)
            elif isinstance(msg, Detach):
                gone = detached.pop(msg.camera, None)
                if gone is not None:
                    gone.set()
                with kept_lock:
                    kept.pop(msg.camera, None)
                log.info("camera %s: detached", msg.camera)

    def deliver() -> None:
        while True:
            camera, w, fut = order.get()
            if w is None:
                return
            if isinstance(w, str):
                send(Ended(camera, fut))  # fut: the ring's name
                continue
            try:
                scores, emb, t0, dt, n = fut.result()
            except Exception as e:  # that window's batch failed: counted, never silently lost
                if not isinstance(e, BatcherClosed):
                    log.error("camera %s: window at %.2f s lost: %s", camera, w.start, e)
                m.WINDOWS_DROPPED.labels(camera, "engine_error").inc()
                continue
            with kept_lock:
                if camera in kept:  # not a camera detached meanwhile
                    keyframe = w.keyframe
                    if keyframe is None and w.video_mask and kept[camera]:  # a substream camera's main keyframe,
                        keyframe = kept[camera][-1][1]  # sent with the first window after it changed: still the newest
                    kept[camera].append((w.start, keyframe, w.audio if w.audio_mask else None))
            w.video, w.audio, w.keyframe = empty, empty_audio, None
            if not send(Result(w, scores, emb, t0, dt, n)):
                return

    def serve_evidence() -> None:
        while requests is not None and not stop.is_set():
            try:
                req = requests.get(timeout=0.5)
            except (queue.Empty, OSError, EOFError, ValueError):
                continue
            if req is None:
                return
            camera, start = req
            found = (None, None)
            with kept_lock:
                for t, key, audio in kept.get(camera, ()):
                    if abs(t - start) < 1e-6:
                        found = (key, audio)
            try:
                replies.put((camera, start, *found), timeout=1.0)
            except queue.Full:
                pass

    for cam in rings:
        detached[cam] = threading.Event()
    threads = [threading.Thread(target=collect, args=(cam, ring, detached[cam]), name=f"streamer:engine:collect:{cam}", daemon=True)
               for cam, ring in rings.items()]
    deliverer = threading.Thread(target=deliver, name="streamer:engine:deliver", daemon=True)
    evidence_server = threading.Thread(target=serve_evidence, name="streamer:engine:evidence", daemon=True)
    controller = threading.Thread(target=control_loop, name="streamer:engine:control", daemon=True)
    for t in [*threads, deliverer, evidence_server, controller]:
        t.start()
    results.put(Ready(runtime.backend, precision, max_batch, os.getpid(), runtime.device, runtime.chosen_because))
    with runtime:
        try:
            while not stop.is_set():
                batcher.run_once(timeout=0.2)  # errors go to the batch's windows, counted by the deliverer
        finally:
            batcher.close()
            try:
                order.put(("", None, None), timeout=0.5)
            except queue.Full:
                pass  # the deliverer is waiting on a full results queue: it sees `stop` itself
            deliverer.join(timeout=1)
            # results nobody will read must not hold this process at exit (its queue feeder would wait
            # for the pipe to drain)
            for q in (results, replies, control):
                if q is not None:
                    q.cancel_join_thread()


class EngineClient:
    """Starts the engine process, waits for its ready handshake, and reports its death.

    `should_stop`: polled while waiting for the handshake; when it returns True the start is abandoned
    (the process killed) and `Stopped` raised, so a stop during a slow model load takes no longer than
    any other."""

    def __init__(self, ctx: Any, opts: EngineOptions, rings: dict[str, WindowRing], ready_timeout: float,
                 should_stop: Any = None, results_queue: int = 0, wait: bool = True) -> None:
        self.ctx, self.opts, self.rings, self.ready_timeout = ctx, opts, rings, ready_timeout
        self.should_stop = should_stop
        self.results: Any = ctx.Queue(maxsize=results_queue or max(64, 8 * len(rings)))
        self.requests: Any = ctx.Queue()
        self.replies: Any = ctx.Queue(maxsize=64)
        self.control: Any = ctx.Queue()  # cameras attached and detached while running
        self.stop = ctx.Event()
        self.backend = self.precision = self.device = "?"
        self.chosen_because = ""
        self.max_batch = opts.max_batch
        self.proc: Any = None
        self._t_start = 0.0
        self._start()
        if wait:
            self.wait_ready()

    def _start(self) -> None:
        import os

        self.proc = self.ctx.Process(target=engine_main, name="streamer:engine", daemon=True,
                                     args=(self.opts, self.rings, self.results, self.stop, self.requests, self.replies,
                                           os.getpid(), self.control))
        self._t_start = time.monotonic()
        self.proc.start()

    def wait_ready(self) -> None:
        """Wait for the started process's ready signal (`wait=False` lets the caller do other work first:
        the pipeline starts the ingest processes meanwhile); on any failure no engine is left behind."""
        try:
            self._wait_ready(self._t_start)
        except BaseException:  # Stopped (a signal), or anything else
            self._kill()
            raise

    def _wait_ready(self, t_start: float) -> None:
        from streamer.errors import Stopped

        deadline = t_start + self.ready_timeout
        while True:
            if self.should_stop is not None and self.should_stop():
                raise Stopped("stopped while the engine was starting")
            try:
                msg = self.results.get(timeout=max(min(deadline - time.monotonic(), 0.1), 0.01))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    self._kill()
                    raise EngineStartError(
                        f"the engine process sent no ready signal within {self.ready_timeout:g} s "
                        f"({READY_SETTING}); raise {READY_SETTING} if loading the model takes longer here"
                    ) from None
                if not self.proc.is_alive():
                    raise EngineStartError(f"the engine process exited with code {self.proc.exitcode} before it "
                                           "was ready") from None
                continue
            if isinstance(msg, Ready):
                self.backend, self.precision, self.max_batch = msg.backend, msg.precision, msg.max_batch
                self.device, self.chosen_because = msg.device, msg.chosen_because
                log.info("engine ready in %.1f s: %s %s on %s, max batch %d (pid %d)", time.monotonic() - t_start,
                         self.backend, self.precision, self.device, self.max_batch, msg.pid)
                return
            if isinstance(msg, Failed):
                self.proc.join(timeout=5)
                raise EngineStartError(f"the engine could not start: {msg.error}")

    def evidence(self, camera: str, start: float, timeout: float = 0.25) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The keyframe and audio (None when the window had none) of a camera's recent window, asked of
        the engine; (None, None) when the engine no longer has it or does not answer within `timeout`."""
        try:
            self.requests.put((camera, start))
        except (OSError, ValueError):
            return None, None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("camera %s: no evidence from the engine within %.0f ms", camera, timeout * 1000)
                return None, None
            try:
                cam, t, key, audio = self.replies.get(timeout=left)
            except queue.Empty:
                continue
            except (OSError, ValueError, EOFError):
                return None, None
            if cam == camera and abs(t - start) < 1e-6:
                return key, audio

    def attach(self, camera: str, ring: WindowRing) -> None:
        """Start reading a camera's ring (a camera added while running)."""
        from streamer.ring import share

        self.rings = {**self.rings, camera: ring}
        self.control.put(Attach(camera, share(ring)))

    def detach(self, camera: str) -> None:
        """Stop reading a camera's ring; the engine lets go of it (the caller unlinks it)."""
        self.rings = {k: v for k, v in self.rings.items() if k != camera}
        self.control.put(Detach(camera))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def get(self, timeout: float) -> Result | Ended | None:
        """The next message from the engine (a Result, or Ended), or None; EngineDied
        when the engine process is gone and nothing is left to read from it."""
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            pass
        if self.proc.exitcode is not None and not self.stop.is_set():
            raise EngineDied(f"the engine process died (exit code {self.proc.exitcode}, pid {self.proc.pid})")
        return None

    def _kill(self) -> None:
        if self.proc is None or self.proc.pid is None:
            return
        self.proc.terminate()
        self.proc.join(timeout=0.3)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=2)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the engine to stop; after `timeout` s it is terminated, then killed."""
        self.stop.set()
        if self.proc is not None:
            self.proc.join(timeout=timeout)
            if self.proc.is_alive():
                self._kill()
            from streamer.outputs import metrics as m

            m.process_exited(self.proc.pid)
