"""The engine process and its client.

The engine process opens the runtime (one CUDA context / TensorRT engine when there is a GPU),
reads windows straight from the cameras' shared-memory rings, batches them across cameras and
returns one small result per window (scores, embedding, the window's timing, and for evidence its
keyframe and audio) on a queue. The main process waits for a ready handshake, notices the engine's
death and restarts it.
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

from streamer.engine.batcher import Batcher
from streamer.errors import StreamerError
from streamer.ring import END, WindowRing
from streamer.window import Window

log = logging.getLogger(__name__)


class EngineStartError(StreamerError, RuntimeError):
    """The engine could not start (model or backend unusable, or no ready signal in time). Not recoverable."""


class EngineDied(StreamerError, RuntimeError):
    """The engine process died while running. Recoverable: the pipeline restarts its process tree."""


@dataclass
class Result:
    """One window's outcome, as the main process needs it (no video: it stays in the engine)."""

    window: Window  # video replaced by an empty array
    scores: np.ndarray  # [K] sigmoid of event_logits
    embedding: np.ndarray  # [D]
    infer_start: float  # time.monotonic()
    infer_s: float


@dataclass(frozen=True)
class EngineOptions:
    model: str
    backend: str
    threads: int
    max_batch: int
    max_wait_ms: float


def engine_main(opts: EngineOptions, rings: dict[str, WindowRing], results: Any, stop: Any) -> None:
    """Entry point of the engine process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")
    from engines import spec as espec
    from engines.runtime.select import open_runtime
    from streamer.outputs import metrics as m

    try:
        runtime = open_runtime(opts.model, backend=opts.backend, threads=opts.threads)
    except Exception as e:  # any failure to open is reported to the parent, then this process ends
        results.put(("error", f"{type(e).__name__}: {e}"))
        return
    precision = getattr(runtime, "precision", "fp32")
    m.ENGINE_INFO.labels(runtime.backend, precision, runtime.spec.name).set(1)
    batcher = Batcher(opts.max_batch, opts.max_wait_ms, capacity=2 * opts.max_batch)

    def collect(camera: str, ring: WindowRing) -> None:
        while not stop.is_set():
            try:
                item = ring.get(timeout=0.5)
            except (queue.Empty, OSError, ValueError):
                continue
            batcher.put((camera, item))
            if item == END:
                return

    for cam, ring in rings.items():
        threading.Thread(target=collect, args=(cam, ring), name=f"streamer:collect:{cam}", daemon=True).start()
    empty = np.zeros(0, np.uint8)

    def infer(windows: list[Window]) -> None:
        t0 = time.monotonic()
        feed = {
            espec.INPUT_VIDEO: np.stack([w.video for w in windows]),
            espec.INPUT_AUDIO: np.stack([w.audio for w in windows]),
            espec.INPUT_VIDEO_MASK: np.array([w.video_mask for w in windows], np.float32),
            espec.INPUT_AUDIO_MASK: np.array([w.audio_mask for w in windows], np.float32),
        }
        try:
            out = runtime.infer(feed)
            logits, emb = out[espec.OUTPUT_LOGITS], out[espec.OUTPUT_EMBEDDING]
            if logits.shape[0] != len(windows) or emb.shape[0] != len(windows):  # one result per input, always
                raise RuntimeError(f"the runtime returned {logits.shape[0]} results for {len(windows)} windows")
        except Exception as e:  # the whole batch fails together: every window of it is counted
            log.error("inference failed for a batch of %d: %s", len(windows), e)
            for w in windows:
                m.WINDOWS_DROPPED.labels(w.camera, "engine_error").inc()
            return
        dt = time.monotonic() - t0
        m.STAGE_LATENCY.labels("infer").observe(dt)
        m.BATCH_SIZE.observe(len(windows))
        scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
        for w, s, e in zip(windows, scores, emb):
            m.STAGE_LATENCY.labels("queue").observe(max(t0 - w.arrival, 0))
            w.video = empty
            results.put(("result", Result(w, s, e, t0, dt)))

    results.put(("ready", runtime.backend, precision))
    with runtime:
        while not stop.is_set():
            items = batcher.next_batch(timeout=0.2)
            windows = [w for _cam, w in items if not isinstance(w, str)]
            ended = [cam for cam, w in items if isinstance(w, str)]  # reported after this batch's results
            if windows:
                infer(windows)
            for cam in ended:
                results.put(("end", cam))


class EngineClient:
    """Starts the engine process, waits for its ready handshake, and reports its death."""

    def __init__(self, ctx: Any, opts: EngineOptions, rings: dict[str, WindowRing], ready_timeout: float) -> None:
        self.ctx, self.opts, self.rings, self.ready_timeout = ctx, opts, rings, ready_timeout
        self.results: Any = ctx.Queue()
        self.stop = ctx.Event()
        self.backend = self.precision = "?"
        self.proc: Any = None
        self._start()

    def _start(self) -> None:
        self.proc = self.ctx.Process(target=engine_main, args=(self.opts, self.rings, self.results, self.stop),
                                     name="streamer:engine", daemon=True)
        self.proc.start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                msg = self.results.get(timeout=max(min(deadline - time.monotonic(), 0.5), 0.01))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    self.proc.terminate()
                    raise EngineStartError(f"the engine sent no ready signal within {self.ready_timeout:g} s; "
                                           f"raise engine.ready_timeout if the model takes longer to load") from None
                if not self.proc.is_alive():
                    raise EngineStartError(f"the engine process exited with code {self.proc.exitcode} before it was ready")
                continue
            if msg[0] == "ready":
                _, self.backend, self.precision = msg
                log.info("engine ready: %s %s (pid %d)", self.backend, self.precision, self.proc.pid)
                return
            if msg[0] == "error":
                self.proc.join(timeout=5)
                raise EngineStartError(f"the engine could not start: {msg[1]}")

    def get(self, timeout: float) -> tuple | None:
        """The next message from the engine, or None; EngineDied when the engine process is gone.

        A process killed while it waited on a queue can leave that queue's lock taken, so the caller
        restarts the whole tree (rings, engine, ingest) rather than reusing the queues."""
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            pass
        if self.proc.exitcode is not None and not self.stop.is_set():
            raise EngineDied(f"the engine process died (exit code {self.proc.exitcode})")
        return None

    def close(self) -> None:
        self.stop.set()
        if self.proc is not None:
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(timeout=2)
            from streamer.outputs import metrics as m

            m.process_exited(self.proc.pid)
