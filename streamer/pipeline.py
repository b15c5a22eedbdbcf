"""The process tree: one ingest process per source, the engine loop and alerts in the main process.

Ingest processes write windows into a shared-memory ring per camera (streamer/ring.py); for a live
source (a stream, or a file paced in real time) a full ring drops its oldest window and counts it, so
latency and memory stay flat when the engine falls behind. A file read as fast as it decodes waits
instead (nothing dropped).

Three parts, driven from the pipeline's thread: the Supervisor (streamer/supervision.py) runs the
ingest processes, restarts them and applies camera changes (`call`); the engine process reads the rings
(streamer/inference/); Alerting (streamer/alerting.py) turns each window's result into events and alerts.
Evidence goes around the engine: each ingest process writes its windows' keyframes and audio to the
camera's evidence ring (streamer/evidence_ring.py, made here, kept across engine restarts), which
Alerting reads for a start alert.

Stopping (`stop()`, from the CLI's SIGINT/SIGTERM handler): the loop ends within 0.1 s; open events are
closed with `end` alerts (reason "stop"); the ingest processes and the engine are asked to stop and
are terminated, then killed, when they have not within STOP_GRACE_S; the alert sink delivers what it
can within SINK_GRACE_S and spools the rest. Every child has PR_SET_PDEATHSIG set, so none outlives
the main process even when it is SIGKILLed.

An engine restart closes open events with `end` alerts carrying reason "engine_restart"; the engine
starts on fresh rings, which the running ingest processes are handed (they never stop decoding).

Each window's results also go to the status page's timeline (streamer/outputs/history.py) and its sound
level (computed in the ingest process, streamer/detect/loudness.py) to the metrics and the `loud` event.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable

from engines import spec as espec
from streamer import shard, startup
from streamer.alerting import Alerting, CameraStatus
from streamer.config import CameraConfig, Config
from streamer.detect.anomaly import AnomalyScorer
from streamer.errors import Stopped
from streamer.evidence_ring import Evidence
from streamer.inference.client import EngineClient
from streamer.inference.process import Ended, EngineDied, EngineOptions, Result
from streamer.ingest.source import probe_geometry
from streamer.ingest.supervisor import keyframe_width
from streamer.outputs import alerts as alerts_mod
from streamer.outputs import metrics as m
from streamer.outputs import stats as stats_mod
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from streamer.outputs.stats import Stats
from streamer.ring import WindowRing
from streamer.supervision import STOP_GRACE_S, RestartBudget, Supervisor
from streamer.window_objects import WindowObjects

log = logging.getLogger(__name__)

SINK_GRACE_S = 0.7  # the alert sink: delivers while Redis answers, then spools the rest
REDIS_TIMEOUT_S = 2.0  # per call and try: a Redis that stops answering fails the delivery thread's call after this


class Pipeline:
    def __init__(self, cfg: Config, on_alert: Callable[[dict], None] | None = None,
                 on_window: Callable[[Result], None] | None = None) -> None:
        cfg = shard.local_config(cfg)  # only this replica's cameras (all of them with one replica)
        self.cfg = cfg
        self._commands: queue.Queue = queue.Queue()  # camera changes, run on the pipeline's thread
        self._stop = threading.Event()
        self.running = False
        self.engine: EngineClient | None = None  # type: ignore[assignment]
        self._embedded: alerts_mod.EmbeddedRedis | None = None
        self.sink: AlertSink | None = None  # type: ignore[assignment]
        self.rings: dict[str, WindowRing] = {}
        self.evidence: Evidence | None = None  # each camera's evidence ring (made in _setup)
        try:
            self._setup(cfg, on_alert, on_window)
        except BaseException:  # a bad setting, or Stopped by a signal: nothing is left behind
            self._abort()
            raise

    def _setup(self, cfg: Config, on_alert: Callable[[dict], None] | None, on_window: Callable[[Result], None] | None) -> None:
        self.model_path = cfg.engine.model or str(espec.DEFAULT_MODEL)
        self.spec = startup.model_spec(cfg)  # the model rules `streamer check` applies too
        self.geo = replace(probe_geometry(self.spec, cfg.window.hop), objects=cfg.anomaly.enabled)  # objects: for anomaly
        self.anomaly = AnomalyScorer(cfg, self.spec.frames)  # a bad normality file fails here
        self.evidence = Evidence(self.geo.samples, cfg.window.queue)
        for c in cfg.cameras:
            self._add_evidence(c)
        self.stats = Stats(replica=cfg.shard.index or 0)  # its clock starts before the engine loads
        self._ctx = mp.get_context("spawn")
        self.objects = WindowObjects(self._ctx)  # each camera's windows' moving objects, beside the engine
        self.sup = Supervisor(self, self._ctx, self.geo, self._stop.is_set)
        r = cfg.redis
        spool = Spool(r.spool_dir, r.spool_max_alerts)  # a bad redis.spool_dir fails here, naming it
        self._start_engine()  # the engine loads the model now: a bad model or backend fails here, not later
        self.backend = self.engine.backend
        self.model = alerts_mod.ModelInfo(self.spec.name, self.spec.version, self.backend)
        self.redis_url = cfg.redis.url
        if self.redis_url is None:
            self._embedded = alerts_mod.EmbeddedRedis()
            self.redis_url = self._embedded.url
        client = alerts_mod.connect(self.redis_url, retries=1, timeout=REDIS_TIMEOUT_S, ssl_ca_certs=r.ssl_ca_certs,
                                    ssl_certfile=r.ssl_certfile, ssl_keyfile=r.ssl_keyfile)
        self.sink = AlertSink(client, self.redis_url, stream=r.stream, maxlen=r.maxlen, channel_prefix=r.channel_prefix,
                              spool=spool, evidence_ttl=cfg.evidence.ttl, journal=r.journal)
        a = self.alerting = Alerting(cfg, self.spec, self.anomaly, self.stats, self.sink, self.model, self.evidence.read,
                                     self.sup.delivered, on_alert, on_window, self.objects.take)
        # the same objects, under the names the tests and tools read
        self.tracker, self.history = a.tracker, a.history
        m.SPOOLED.set(len(self.sink.spool))

    # ---- what the page and the API read (any thread) ------------------------------------------------
    @property
    def pids(self) -> dict[str, int]:
        """camera -> its ingest process's pid."""
        return {cid: p.pid for cid, p in self.sup.procs.items()}

    @property
    def cam_state(self) -> dict[str, str]:
        """camera -> running | ended | failed (absent: not started yet)."""
        return self.sup.state

    def camera_status(self, cid: str) -> CameraStatus:
        """A camera's process, figures and last results, copied."""
        return self.alerting.status(cid, self.sup.state.get(cid, "starting"), self.sup.procs[cid].pid if cid in self.sup.procs else None)

    # ---- a camera's detection state and ring (for the Supervisor) -----------------------------------
    def attach_camera(self, cam: CameraConfig) -> WindowRing:
        """A new camera's detection state, and a fresh ring that the engine reads; returns the ring."""
        self.alerting.add(cam)  # a normality file that cannot be used fails here (ConfigError)
        ring = WindowRing(self._ctx, self.geo, self.cfg.window.queue)
        self.rings[cam.id] = ring
        self._add_evidence(cam)
        self.engine.attach(cam.id, ring)
        return ring

    def detach_camera(self, cid: str, replacing: bool = False) -> WindowRing:
        """A removed camera: its open events end, its detection state goes (Alerting.drop), the engine lets
        go of its ring. Returns the ring, to unlink once its process has ended."""
        self.alerting.drop(cid, replacing)
        self.evidence.drop(cid)
        self.engine.detach(cid)
        return self.rings.pop(cid)

    def _add_evidence(self, cam: CameraConfig) -> None:
        """The camera's evidence ring, which its ingest process writes (none while evidence is off)."""
        if self.cfg.evidence.enabled:
            self.evidence.add(cam.id, self.keyframe_width(cam))

    def detect_settings(self, cam: CameraConfig) -> None:
        """A camera's thresholds and loudness, live."""
        self.alerting.configure(cam)

    # ---- start, stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run()` to end (safe from a signal handler and from any thread)."""
        self._stop.set()

    def _abort(self) -> None:
        """Undo a start that failed or was stopped half-way."""
        try:
            if self.engine is not None:
                self.engine.close(timeout=0.2)
            self._close_rings()
            if self.evidence is not None:
                self.evidence.close()
            if self.sink is not None:
                self.sink.close(timeout=0.2)
            if self._embedded is not None:
                self._embedded.close()
        except Exception as e:  # best effort: the original error is the one to report
            log.debug("cleanup after a failed start: %s", e)

    def keyframe_width(self, cam: CameraConfig) -> int:
        """Width of the keyframes the camera's windows carry (0: evidence off)."""
        return keyframe_width(cam, self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0)

    def _start_engine(self, wait: bool = True) -> None:
        """Fresh rings and a fresh engine process reading them (`wait=False`: started, not yet ready;
        call `self.engine.wait_ready()`)."""
        self.rings = {c.id: WindowRing(self._ctx, self.geo, self.cfg.window.queue) for c in self.cfg.cameras}
        e = self.cfg.engine
        try:
            opts = EngineOptions(self.model_path, e.backend, e.threads, e.max_batch, e.max_wait_ms, e.precision, e.cache_dir,
                                 device=e.device, cuda_graphs=e.cuda_graphs)
            self.engine = EngineClient(self._ctx, opts, self.rings, e.ready_timeout, should_stop=self._stop.is_set,
                                       wait=wait)
        except Exception:
            self._close_rings()
            raise

    def call(self, op: str, *args: Any, timeout: float = 10.0) -> Any:
        """Run a camera change on the pipeline's thread and return its result (from any thread):
        add(CameraConfig), remove(id), replace(CameraConfig), detect(CameraConfig: its thresholds and loudness). Raises what the
        change raised, TimeoutError, or RuntimeError when the pipeline is not running."""
        return self.submit(op, *args).result(timeout)

    def submit(self, op: str, *args: Any) -> Future:
        """`call` without waiting: the change's Future."""
        if not self.running:
            raise RuntimeError("the pipeline is not running")
        fut: Future = Future()
        self._commands.put((op, args, fut))
        return fut

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, duration: float | None = None, summary_every: float = 0.0, summary: Callable[[str], None] | None = None) -> None:
        """Until every source has ended (with cameras changed while running, or none: until stopped), for
        `duration` s at most, or until `stop()`. `summary` gets the summary line every `summary_every` s and at the end."""
        self.sup.start()
        deadline = time.monotonic() + duration if duration else None
        stats_done = threading.Event()
        # reading the other processes' metrics (the summary line, the stats records) and writing to Redis
        # take long enough to delay alerts: not on this thread
        stats_thread = threading.Thread(target=self._stats_loop, args=(stats_done, summary_every, summary),
                                        name="streamer:stats", daemon=True)
        stats_thread.start()
        self.running = True
        try:
            self._loop(deadline)
        except Stopped:
            pass  # a stop while the engine was restarting
        finally:
            self._wind_down()
            stats_done.set()  # the stats thread publishes its last record and ends
            stats_thread.join(timeout=0.3)
            if summary:
                summary(self.stats.summary())

    def _loop(self, deadline: float | None) -> None:
        engine_restarts = RestartBudget()
        while self.sup.busy() and not self._stop.is_set():
            now = time.monotonic()
            if deadline and now >= deadline:
                return
            self.sup.apply(self._commands)
            if self.sup.removing:
                self.sup.reap()
            try:
                msg = self.engine.get(timeout=0.1)
            except EngineDied as e:
                if self._stop.is_set():
                    return  # it was stopped with us (a signal to the whole group)
                if not engine_restarts.spend(now):
                    raise
                self._restart_engine(e)
                continue
            self._handle(msg)
            self.sup.restart(now)  # an ingest process that died without finishing

    def _handle(self, msg: Result | Ended | None) -> None:
        if isinstance(msg, Result):
            if msg.window.camera in self.sup.cams:  # not a window of a camera removed meanwhile
                self.alerting.window(msg)
        elif isinstance(msg, Ended):
            ring = self.rings.get(msg.camera)
            if ring is None or msg.ring != ring.shm.name:
                return  # the end of a ring that was removed or replaced
            self.sup.ended(msg.camera)
            self.alerting.end_events(msg.camera, reason="source_end")

    def _restart_engine(self, e: EngineDied) -> None:
        """A fresh engine on fresh rings; open events end (their windows are cut), the ingest processes go on."""
        log.error("%s: restarting the engine with fresh rings; the ingest processes go on", e)
        m.ENGINE_RESTARTS.inc()
        self.alerting.end_events(reason="engine_restart")  # their windows are cut: say so
        self.sup.reap(force=True)
        self.engine.close()  # reaps the dead process and marks it dead for the metrics
        self._close_rings()
        self._start_engine(wait=False)
        self.sup.reshare()  # switched to before each process's next window
        self.engine.wait_ready()

    def _wind_down(self) -> None:
        """The end of `run`: late changes fail, open events end (reason "stop"), the engine and the ingest
        processes stop."""
        self.running = False
        self.sup.ask_stop()
        for _op, _args, fut in list(self._commands.queue):  # changes that came too late
            if not fut.done():
                fut.set_exception(RuntimeError("the pipeline stopped"))
        if self.engine is not None:
            self.engine.stop.set()  # the engine stops while the ingest processes do
        self.alerting.end_events(reason="stop")
        self.sup.stop()

    def close(self) -> None:
        """Stop the engine, free the rings, deliver or spool every accepted alert, stop the embedded Redis.
        Bounded: about STOP_GRACE_S + SINK_GRACE_S + 1 s at the worst (a Redis that does not answer)."""
        if self.engine is not None:
            self.engine.close(timeout=STOP_GRACE_S)
        self._close_rings()
        self.evidence.close()
        if self.sink is not None:
            self.sink.close(timeout=SINK_GRACE_S)  # what Redis did not take in time is in the spool
            self.sink.client.close()
        if self._embedded:
            self._embedded.close()

    def _close_rings(self) -> None:
        for r in self.rings.values():
            r.close(unlink=True)
        self.rings = {}

    # ---- the stats thread ---------------------------------------------------------------------------
    def _stats_loop(self, done: threading.Event, summary_every: float = 0.0,
                    summary: Callable[[str], None] | None = None) -> None:
        """The stats records to Redis every `stats_interval` s and the summary line every `summary_every`
        s; a last record when `done` is set."""
        every = self.cfg.redis.stats_interval
        next_stats = time.monotonic() + every
        next_summary = time.monotonic() + summary_every if summary_every and summary else None
        while True:
            wake = min(next_stats, next_summary) if next_summary else next_stats
            if done.wait(max(wake - time.monotonic(), 0)):
                break
            now = time.monotonic()
            if next_summary and now >= next_summary:
                try:
                    summary(self.stats.summary())  # type: ignore[misc]
                except Exception as e:
                    log.debug("summary: %s", e)
                next_summary += summary_every
            if now >= next_stats:
                self._publish_stats()
                next_stats += every
        self._publish_stats()

    def _publish_stats(self) -> None:
        try:
            stats_mod.publish(self.sink.client, self.cfg.redis.stats_stream, self.stats.records())
        except Exception as e:  # stats are best effort; alerts are not
            log.debug("stats not published: %s", e)
