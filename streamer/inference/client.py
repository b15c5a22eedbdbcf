"""The engine process seen from the main process: `EngineClient` starts it, waits for its ready
handshake, attaches and detaches cameras' rings, reads its results and stops it. (Evidence is not asked
of the engine: streamer/evidence_ring.py.)

A missing handshake raises EngineStartError naming `engine.ready_timeout`, a dead engine raises EngineDied
from `get()`. Restarting is the parent's job: a process killed while reading a ring's queue can leave that
queue's lock taken, so the pipeline restarts the engine with fresh rings and hands each running ingest
process its camera's new ring (streamer/ring.py RingHandle). The engine side is streamer/inference/process.py.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from streamer import procs
from streamer.inference.process import (
    READY_SETTING,
    Attach,
    Channels,
    Detach,
    Ended,
    EngineDied,
    EngineOptions,
    EngineStartError,
    Failed,
    Ready,
    Result,
    engine_main,
)
from streamer.ring import WindowRing

log = logging.getLogger(__name__)


class EngineClient:
    """Starts the engine process, waits for its ready handshake, and reports its death.

    `should_stop`: polled while waiting for the handshake; when it returns True the start is abandoned
    (the process killed) and `Stopped` raised, so a stop during a slow model load takes no longer than
    any other."""

    def __init__(self, ctx: Any, opts: EngineOptions, rings: dict[str, WindowRing], ready_timeout: float,
                 should_stop: Any = None, wait: bool = True) -> None:
        self.ctx, self.opts, self.ready_timeout = ctx, opts, ready_timeout
        self.should_stop = should_stop
        self.results: Any = ctx.Queue(maxsize=max(64, 8 * len(rings)))
        self.control: Any = ctx.Queue()  # cameras attached and detached while running
        self.stop = ctx.Event()
        self.backend = self.precision = self.device = "?"
        self.chosen_because = ""
        self.max_batch = opts.max_batch
        self.proc: Any = None
        self._t_start = 0.0
        self._start(rings)
        if wait:
            self.wait_ready()

    def _start(self, rings: dict[str, WindowRing]) -> None:
        import os

        channels = Channels(self.results, self.stop, self.control)
        self.proc = self.ctx.Process(target=engine_main, name="streamer:engine", daemon=True,
                                     args=(self.opts, rings, channels, os.getpid()))
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
                self._check_starting(deadline)
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

    def _check_starting(self, deadline: float) -> None:
        """EngineStartError once the deadline has passed or the process has exited."""
        if time.monotonic() >= deadline:
            self._kill()
            raise EngineStartError(
                f"the engine process sent no ready signal within {self.ready_timeout:g} s "
                f"({READY_SETTING}); raise {READY_SETTING} if loading the model takes longer here"
            ) from None
        if not self.proc.is_alive():
            raise EngineStartError(f"the engine process exited with code {self.proc.exitcode} before it "
                                   "was ready") from None

    def attach(self, camera: str, ring: WindowRing) -> None:
        """Start reading a camera's ring (a camera added while running)."""
        from streamer.ring import share

        self.control.put(Attach(camera, share(ring)))

    def detach(self, camera: str) -> None:
        """Stop reading a camera's ring; the engine lets go of it (the caller unlinks it)."""
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
        procs.end([self.proc], grace=0.3, reap=2)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the engine to stop; after `timeout` s it is terminated, then killed."""
        self.stop.set()
        if self.proc is not None:
            self.proc.join(timeout=timeout)
            if self.proc.is_alive():
                self._kill()
            from streamer.outputs import metrics as m

            m.process_exited(self.proc.pid)
