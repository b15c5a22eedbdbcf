"""The process tree: one ingest process per source, the engine loop and alerts in the main process.

Ingest processes write windows into a shared-memory ring per camera (streamer/ring.py); for a live
source (a stream, or a file paced in real time) a full ring drops its oldest window and counts it, so
latency and memory stay flat when the engine falls behind. A file read as fast as it decodes waits
instead (nothing dropped).

Stopping (`stop()`, from the CLI's SIGINT/SIGTERM handler): the loop ends within 0.1 s; open events are
closed with `end` alerts (reason "stop"); the ingest processes and the engine are asked to stop and
are terminated, then killed, when they have not within STOP_GRACE_S; the alert sink delivers what it
can within SINK_GRACE_S and spools the rest. Every child has PR_SET_PDEATHSIG set, so none outlives
the main process even when it is SIGKILLed.

Restarts keep the timeline: a respawned ingest process continues its camera's source time from the
last window delivered (so an event open across the restart closes normally). An engine restart
closes open events with `end` alerts carrying reason "engine_restart"; the engine starts on fresh
rings, which the running ingest processes are handed (they never stop decoding).

Cameras change while running (`call("add" | "remove" | "replace" | "detect", ...)`, from the HTTP
API and SIGHUP through streamer/fleet.py): the change runs on the pipeline's own thread between two
engine messages. An added camera gets a fresh ring, which the engine attaches (EngineClient.attach), and
its own ingest process; a removed one's open events end (reason "stop"), its ingest process is asked to
stop (terminated after STOP_GRACE_S), the engine detaches its ring and the ring is unlinked. No other
camera, ring or process is touched. `detect` changes a camera's thresholds and loudness live (from the next
window on; its ingest process and timeline go on).

Each window's results also go to the status page's timeline (streamer/outputs/history.py) and its sound
level (computed in the ingest process, streamer/detect/loudness.py) to the metrics and the `loud` event.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable

from engines import spec as espec
from streamer import shard, startup
from streamer.config import CameraConfig, Config, LoudnessConfig
from streamer.detect import loudness
from streamer.detect.anomaly import EVENT as ANOMALY
from streamer.detect.anomaly import AnomalyScorer
from streamer.detect.events import EventTracker, Transition
from streamer.detect.loudness import EVENT as LOUD
from streamer.engine.client import EngineClient
from streamer.engine.process import Ended, EngineDied, EngineOptions, Result
from streamer.errors import Stopped
from streamer.ingest.source import probe_geometry
from streamer.ingest.supervisor import ingest_main, keyframe_width
from streamer.outputs import alerts as alerts_mod
from streamer.outputs import evidence
from streamer.outputs import metrics as m
from streamer.outputs import stats as stats_mod
from streamer.outputs.history import History
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from streamer.outputs.stats import Stats
from streamer.ring import RingHandle, WindowRing, share
from streamer.window import Window

log = logging.getLogger(__name__)

MAX_RESTARTS_PER_MIN = 5
STOP_GRACE_S = 1.0  # ingest processes and the engine: asked to stop, then terminated
SINK_GRACE_S = 0.7  # the alert sink: delivers while Redis answers, then spools the rest
REDIS_TIMEOUT_S = 2.0  # per call and try: a Redis that stops answering fails the delivery thread's call after this


class RestartBudget:
    """The one restart rule, for the engine and for each camera's ingest process: at most
    MAX_RESTARTS_PER_MIN restarts in any minute; one more means give up."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def spend(self, now: float) -> bool:
        """Count a restart at `now`; False when it is over the budget."""
        self.times = [t for t in self.times if now - t < 60] + [now]
        return len(self.times) <= MAX_RESTARTS_PER_MIN


class Pipeline:
    def __init__(self, cfg: Config, on_alert: Callable[[dict], None] | None = None,
                 on_window: Callable[[Result], None] | None = None) -> None:
        cfg = shard.local_config(cfg)  # only this replica's cameras (all of them with one replica)
        self.cfg = cfg
        self.on_alert = on_alert
        self.on_window = on_window  # every window's result, as detection sees it (tests, tools)
        self._commands: queue.Queue = queue.Queue()  # camera changes, run on the pipeline's thread
        # what the status page and /api/cameras show (written by the pipeline's thread only)
        self.cam_state: dict[str, str] = {}  # camera -> running | ended | failed
        self.latest_scores: dict[str, dict[str, float]] = {}  # camera -> its last window's scores
        self.last_alert: dict[str, dict[str, Any]] = {}  # camera -> its last alert (id, event, state, time, score)
        self.latest_level: dict[str, tuple[float, float] | None] = {}  # camera -> its last window's (RMS, peak) dBFS
        self.loudness: dict[str, LoudnessConfig | None] = {}  # camera -> its `loud` event settings (None: off)
        self.pids: dict[str, int] = {}  # camera -> its ingest process
        self._stop = threading.Event()
        self.running = False
        self.engine: EngineClient | None = None  # type: ignore[assignment]
        self._embedded: alerts_mod.EmbeddedRedis | None = None
        self.sink: AlertSink | None = None  # type: ignore[assignment]
        self.rings: dict[str, WindowRing] = {}
        try:
            self._setup(cfg)
        except BaseException:  # a bad setting, or Stopped by a signal: nothing is left behind
            self._abort()
            raise

    def _setup(self, cfg: Config) -> None:
        self.model_path = cfg.engine.model or str(espec.DEFAULT_MODEL)
        self.spec = startup.model_spec(cfg)  # the model rules `streamer check` applies too
        self.geo = replace(probe_geometry(self.spec, cfg.window.hop), objects=cfg.anomaly.enabled)  # objects: for anomaly
        self.anomaly = AnomalyScorer(cfg, self.spec.frames)  # a bad normality file fails here
        self.tracker = EventTracker({**self.spec.thresholds, **cfg.detect.thresholds}, cfg.detect.min_windows, cfg.detect.cooldown)
        for c in cfg.cameras:
            self._detect_settings(c)
        self.history = History(self.spec.classes, cfg.http.history_minutes, cfg.window.hop)
        self.stats = Stats(replica=cfg.shard.index or 0)
        self._ctx = mp.get_context("spawn")
        self._last: dict[str, tuple[float, float]] = {}  # camera -> (end, arrival) of its last window: the timeline to continue
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
        for c in cfg.cameras:  # export every series from the start, at 0
            m.ALERTS_DROPPED.labels(c.id, "spool_full")
            for event in self.spec.classes:
                m.ALERTS.labels(c.id, event)
            if cfg.anomaly.enabled:
                m.ALERTS.labels(c.id, ANOMALY)
                m.NORMALITY_LEARNING.labels(c.id).set(self.anomaly.progress(c.id))
            if self.loudness[c.id] is not None:
                m.ALERTS.labels(c.id, LOUD)
        m.SPOOLED.set(len(self.sink.spool))

    def _detect_settings(self, cam: CameraConfig) -> None:
        """A camera's thresholds and `loud` settings into the event tracker: at start, when it is added, and
        live (op `detect`). The anomaly threshold is the model's again unless `thresholds` sets one."""
        loud = cam.loudness if cam.loudness is not None else self.cfg.detect.loudness
        self.loudness[cam.id] = loud
        self.tracker.per_camera[cam.id] = {**cam.thresholds, **({LOUD: loud.threshold_dbfs} if loud else {})}
        self.tracker.per_camera_windows[cam.id] = {LOUD: loud.min_windows} if loud else {}

    def stop(self) -> None:
        """Ask `run()` to end (safe from a signal handler and from any thread)."""
        self._stop.set()

    def _abort(self) -> None:
        """Undo a start that failed or was stopped half-way."""
        try:
            if self.engine is not None:
                self.engine.close(timeout=0.2)
            self._close_rings()
            if self.sink is not None:
                self.sink.close(timeout=0.2)
            if self._embedded is not None:
                self._embedded.close()
        except Exception as e:  # best effort: the original error is the one to report
            log.debug("cleanup after a failed start: %s", e)

    def _start_engine(self, wait: bool = True) -> None:
        """Fresh rings and a fresh engine process reading them (`wait=False`: started, not yet ready;
        call `self.engine.wait_ready()`)."""
        kf = self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0
        self.rings = {c.id: WindowRing(self._ctx, self.geo, self.cfg.window.queue, keyframe_width(c, kf)) for c in self.cfg.cameras}
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

    def run(self, duration: float | None = None, summary_every: float = 0.0, summary: Callable[[str], None] | None = None) -> None:
        ctx = self._ctx
        stops: dict[str, Any] = {}  # camera -> its ingest process's stop event
        updates: dict[str, Any] = {}  # camera -> the queue that hands its ingest process a fresh ring
        kf = self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0
        cams = {c.id: c for c in self.cfg.cameras}

        def spawn(cid: str) -> Any:
            stops[cid], updates[cid] = ctx.Event(), ctx.Queue()
            rings = RingHandle(self.rings[cid], updates[cid])
            p = ctx.Process(target=ingest_main, args=(cams[cid], self.geo, rings, stops[cid], keyframe_width(cams[cid], kf), self._last.get(cid), os.getpid()),
                            name=f"streamer:ingest:{cid}", daemon=True)
            p.start()
            self.pids[cid], self.cam_state[cid] = p.pid, "running"
            return p

        def stop_ingest() -> None:
            """Ask every ingest process to stop; terminate, then kill, those still running after STOP_GRACE_S."""
            for ev in stops.values():
                ev.set()
            deadline = time.monotonic() + STOP_GRACE_S
            for p in procs.values():
                p.join(timeout=max(deadline - time.monotonic(), 0))
            for p in procs.values():
                if p.is_alive():
                    p.terminate()
            for p in procs.values():
                p.join(timeout=0.3)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=1)
                m.process_exited(p.pid)

        live = set(cams)
        # the loop ends when every source has ended, unless the fleet is managed while running (cameras
        # added or removed through the API or SIGHUP) or started empty: then it runs until stopped
        hold = not cams
        if not cams:  # more replicas than this one's share of cameras: idle until stopped (or a camera is added)
            log.warning("shard %d of %d: no cameras hash to this replica", self.cfg.shard.index or 0, self.cfg.shard.replicas)
        procs = {cid: spawn(cid) for cid in cams}
        restarts = {cid: RestartBudget() for cid in cams}
        removing: list[tuple[str, Any, WindowRing, float, Future]] = []  # removed cameras whose process is ending

        def set_cameras() -> None:
            self.cfg = self.cfg.model_copy(update={"cameras": list(cams.values())})

        def add(fut: Future, cam: CameraConfig, resume: bool = False) -> None:
            nonlocal hold
            if cam.id in cams:
                raise KeyError(f"camera {cam.id} exists")
            self.anomaly.add(cam)  # a normality file that cannot be used fails here (ConfigError)
            ring = WindowRing(ctx, self.geo, self.cfg.window.queue, keyframe_width(cam, kf))
            self.rings[cam.id] = ring
            self.engine.attach(cam.id, ring)
            cams[cam.id] = cam
            set_cameras()
            self._detect_settings(cam)
            if not resume:
                self._last.pop(cam.id, None)
            m.ALERTS_DROPPED.labels(cam.id, "spool_full")
            for event in self.spec.classes:
                m.ALERTS.labels(cam.id, event)
            if self.cfg.anomaly.enabled:
                m.ALERTS.labels(cam.id, ANOMALY)
                m.NORMALITY_LEARNING.labels(cam.id).set(self.anomaly.progress(cam.id))
            if self.loudness[cam.id] is not None:
                m.ALERTS.labels(cam.id, LOUD)
            procs[cam.id] = spawn(cam.id)
            restarts[cam.id] = RestartBudget()
            live.add(cam.id)
            hold = True
            log.info("camera %s: added (ingest pid %d)", cam.id, procs[cam.id].pid)
            fut.set_result({"id": cam.id, "pid": procs[cam.id].pid, "ring": ring.shm.name})

        def remove(fut: Future, cid: str, replacing: bool = False) -> None:
            nonlocal hold
            if cid not in cams:
                raise KeyError(f"camera {cid} is not running here")
            for t in self.tracker.close_all(cid, reason="stop"):
                self._publish(t, None, {})
            stops[cid].set()
            self.engine.detach(cid)
            ring = self.rings.pop(cid)
            p = procs.pop(cid)
            live.discard(cid)
            del cams[cid], restarts[cid]
            set_cameras()
            self.anomaly.remove(cid)
            self.tracker.per_camera.pop(cid, None)
            self.tracker.per_camera_windows.pop(cid, None)
            if not replacing:
                self._last.pop(cid, None)
                self.stats.cams.pop(cid, None)
                self.history.drop(cid)
            for d in (self.cam_state, self.latest_scores, self.latest_level, self.last_alert, self.pids, self.loudness):
                d.pop(cid, None)
            hold = True
            removing.append((cid, p, ring, time.monotonic() + STOP_GRACE_S, fut))

        def replace(fut: Future, cam: CameraConfig) -> None:
            """Another source or setting: that camera alone restarts, continuing its timeline."""
            remove(Future(), cam.id, replacing=True)
            add(fut, cam, resume=True)

        def detect(fut: Future, cam: CameraConfig) -> None:
            """The camera's thresholds and loudness, live: its next window is judged by them."""
            if cam.id not in cams:
                raise KeyError(f"camera {cam.id} is not running here")
            cams[cam.id] = cam  # the same camera but for these settings (streamer.fleet.live_only)
            set_cameras()
            self._detect_settings(cam)
            if self.loudness[cam.id] is not None:
                m.ALERTS.labels(cam.id, LOUD)
            fut.set_result({"id": cam.id, "thresholds": dict(cam.thresholds)})

        ops = {"add": add, "remove": remove, "replace": replace, "detect": detect}

        def apply_commands() -> None:
            while True:
                try:
                    op, args, fut = self._commands.get_nowait()
                except queue.Empty:
                    return
                try:
                    ops[op](fut, *args)
                except Exception as e:
                    if not fut.done():
                        fut.set_exception(e)

        def reap(force: bool = False) -> None:
            """Removed cameras: once the process has ended (or its grace is over), free the ring."""
            now = time.monotonic()
            for item in list(removing):
                cid, p, ring, deadline, fut = item
                if p.exitcode is None and not force and now < deadline:
                    continue
                if p.exitcode is None:
                    p.terminate()
                    p.join(timeout=0.3)
                    if p.is_alive():
                        p.kill()
                        p.join(timeout=1)
                p.join(timeout=0)
                m.process_exited(p.pid)
                ring.close(unlink=True)
                removing.remove(item)
                log.info("camera %s: removed (ingest exit code %s, ring %s unlinked)", cid, p.exitcode, ring.shm.name)
                if not fut.done():
                    fut.set_result({"id": cid, "pid": p.pid, "exitcode": p.exitcode, "ring": ring.shm.name})
        engine_restarts = RestartBudget()
        now = time.monotonic()
        deadline = now + duration if duration else None
        stats_done = threading.Event()
        # reading every process's metrics (the summary line, the stats records) and writing to Redis take
        # long enough to delay alerts: not on this thread
        stats_thread = threading.Thread(target=self._stats_loop, args=(stats_done, summary_every, summary),
                                        name="streamer:stats", daemon=True)
        stats_thread.start()
        self.running = True
        try:
            while (live or hold) and not self._stop.is_set():
                now = time.monotonic()
                if deadline and now >= deadline:
                    break
                apply_commands()
                if removing:
                    reap()
                try:
                    msg = self.engine.get(timeout=0.1)
                except EngineDied as e:
                    if self._stop.is_set():
                        break  # it was stopped with us (a signal to the whole group)
                    if not engine_restarts.spend(now):
                        raise
                    log.error("%s: restarting the engine with fresh rings; the ingest processes go on", e)
                    m.ENGINE_RESTARTS.inc()
                    for t in self.tracker.close_all(reason="engine_restart"):  # their windows are cut: say so
                        self._publish(t, None, {})
                    reap(force=True)
                    self.engine.close()  # reaps the dead process and marks it dead for the metrics
                    self._close_rings()
                    self._start_engine(wait=False)
                    for cid in live:
                        updates[cid].put(share(self.rings[cid]))  # switched to before the process's next window
                    self.engine.wait_ready()
                    continue
                if isinstance(msg, Result):
                    if msg.window.camera in cams:  # not a window of a camera removed meanwhile
                        self._detect_and_publish(msg)
                elif isinstance(msg, Ended):
                    ring = self.rings.get(msg.camera)
                    if ring is None or msg.ring != ring.shm.name:
                        continue  # the end of a ring that was removed or replaced
                    live.discard(msg.camera)
                    self.cam_state[msg.camera] = "ended"
                    for t in self.tracker.close_all(msg.camera, reason="source_end"):
                        self._publish(t, None, {})
                for cid, p in procs.items():  # an ingest process that died without finishing is restarted
                    if self._stop.is_set():
                        break
                    if cid in live and p.exitcode not in (None, 0):
                        if not restarts[cid].spend(now):
                            log.error("camera %s: ingest died %d times in a minute; giving up on it", cid, len(restarts[cid].times))
                            live.discard(cid)
                            self.cam_state[cid] = "failed"
                            continue
                        log.error("camera %s: ingest process died (exit code %s); restarting it", cid, p.exitcode)
                        m.process_exited(p.pid)
                        m.PROCESS_RESTARTS.labels(cid).inc()
                        procs[cid] = spawn(cid)  # continues the camera's timeline (self._last)
        except Stopped:
            pass  # a stop while the engine was restarting
        finally:
            self.running = False
            for ev in stops.values():
                ev.set()
            for _op, _args, fut in list(self._commands.queue):  # changes that came too late
                if not fut.done():
                    fut.set_exception(RuntimeError("the pipeline stopped"))
            if self.engine is not None:
                self.engine.stop.set()  # the engine stops while the ingest processes do
            for t in self.tracker.close_all(reason="stop"):
                self._publish(t, None, {})
            stop_ingest()
            reap(force=True)
            stats_done.set()  # the stats thread publishes its last record and ends
            stats_thread.join(timeout=0.3)
            if summary:
                summary(self.stats.summary())

    def close(self) -> None:
        """Stop the engine, free the rings, deliver or spool every accepted alert, stop the embedded Redis.
        Bounded: about STOP_GRACE_S + SINK_GRACE_S + 1 s at the worst (a Redis that does not answer)."""
        if self.engine is not None:
            self.engine.close(timeout=STOP_GRACE_S)
        self._close_rings()
        if self.sink is not None:
            self.sink.close(timeout=SINK_GRACE_S)  # what Redis did not take in time is in the spool
            self.sink.client.close()
        if self._embedded:
            self._embedded.close()

    def _close_rings(self) -> None:
        for r in self.rings.values():
            r.close(unlink=True)
        self.rings = {}

    # ---- main-process stages ----------------------------------------------------------------
    def _detect_and_publish(self, r: Result) -> None:
        w = r.window
        m.STAGE_LATENCY.labels("decode").observe(w.decode_s)
        m.STAGE_LATENCY.labels("window").observe(w.window_s)
        lat = {"decode": w.decode_s * 1000, "window": w.window_s * 1000, "queue": (r.infer_start - w.arrival) * 1000,
               "infer": r.infer_s * 1000}
        scores = dict(zip(self.spec.classes, r.scores.tolist()))
        cell = None
        if w.objects is None:  # no objects (anomaly off, or a microphone alone)
            pass
        elif w.camera in self.anomaly.learners:
            self.anomaly.learn(w.camera, w.objects)
            m.NORMALITY_LEARNING.labels(w.camera).set(self.anomaly.progress(w.camera))
        else:
            scored = self.anomaly.score(w.camera, w.objects)
            if scored is not None:
                scores[ANOMALY], cell = scored
                # the model's threshold, unless the camera's `thresholds` sets one for anomaly
                self.tracker.per_camera.setdefault(w.camera, {}).setdefault(ANOMALY, self.anomaly.models[w.camera].threshold)
        level = None if w.rms_dbfs is None or w.peak_dbfs is None else (w.rms_dbfs, w.peak_dbfs)
        self._level(w.camera, level)
        self._last[w.camera] = (w.end, w.arrival)
        self.latest_scores[w.camera] = scores
        self.history.add(w.camera, time.time() - (time.monotonic() - w.arrival), r.scores, scores.get(ANOMALY), level)
        if self.on_window:
            self.on_window(r)
        signals = dict(scores)
        if self.loudness.get(w.camera) is not None:  # no audio: not loud (the event closes after its cooldown)
            signals[LOUD] = loudness.NOT_HEARD if level is None else level[0]
        transitions = self.tracker.update(w.camera, w.start, w.end, signals)
        if transitions:
            top = sorted(zip(self.spec.classes, r.scores.tolist()), key=lambda kv: -kv[1])[: self.cfg.detect.top_k]
            for t in transitions:
                self._publish(t, w, lat, cell, top)
        done = time.monotonic()
        m.E2E_LATENCY.labels(w.camera).observe(done - w.arrival)
        self.stats.window(w.camera, done - w.arrival, level)

    def _level(self, camera: str, level: tuple[float, float] | None) -> None:
        """A window's sound level to the metrics and the page (NaN in the gauges: that window had no audio)."""
        self.latest_level[camera] = level
        m.SOUND_LEVEL.labels(camera, "rms").set(level[0] if level else float("nan"))
        m.SOUND_LEVEL.labels(camera, "peak").set(level[1] if level else float("nan"))
        if level is not None:
            m.SOUND_LEVEL_RMS.labels(camera).observe(level[0])

    def _publish(self, t: Transition, w: Window | None, latency_ms: dict[str, float],
                 cell: dict[str, int] | None = None, top: list[tuple[str, float]] | None = None) -> None:
        """One alert: build it (with evidence for a start), hand it to the sink. Latency ends at the hand-off.
        `top`: the window's highest class scores."""
        t_pub = time.monotonic()
        wall_end = time.time() - (t_pub - w.arrival) if w is not None else time.time()
        score, anomaly_score = t.score, None
        if t.event == ANOMALY:  # an unbounded distance: `score` maps it into [0, 1), 0.5 at the threshold
            anomaly_score = t.score
            score = t.score / (t.score + max(self.tracker.threshold(t.camera, ANOMALY), 1e-9))
        elif t.event == LOUD:  # dBFS: `score` is the level as a linear amplitude
            score = loudness.amplitude(t.score)
        level = self.latest_level.get(t.camera) if w is not None else None
        alert = alerts_mod.make_alert(
            camera=t.camera, event=t.event, state=t.state, score=score, start=t.start, end=t.end, wall_end=wall_end,
            latency_ms=latency_ms, model=self.model, top=top or [], level=level, anomaly_score=anomaly_score,
            anomaly_cell=cell if t.event == ANOMALY and t.state == "start" else None,
            duration_s=t.duration if t.state == "end" else None,
            reason=t.reason if t.state == "end" else None,
        )
        files: dict[str, bytes] = {}
        if t.state == "start" and w is not None and self.cfg.evidence.enabled:
            keys = evidence.keys("streamer:evidence", alert["id"])
            keyframe, audio = self.engine.evidence(w.camera, w.start)  # only start alerts fetch it
            if keyframe is not None:
                files[keys["keyframe"]] = evidence.jpeg(keyframe, self.cfg.evidence.jpeg_quality)
            if audio is not None and w.audio_mask:
                files[keys["audio"]] = evidence.wav(audio, self.spec.sample_rate)
            alert["evidence"] = {name: key for name, key in keys.items() if key in files}
        if w is not None:
            done = time.monotonic()
            alert["latency_ms"]["publish"] = round((done - t_pub) * 1000, 2)
            alert["latency_ms"]["end_to_end"] = round((done - w.arrival) * 1000, 2)
        self.history.alert(t.camera, {**alert, "_t": wall_end})  # before Redis has it: a page that hears of it finds it here
        self.sink.submit(alert, files)
        m.STAGE_LATENCY.labels("publish").observe(time.monotonic() - t_pub)
        m.ALERTS.labels(t.camera, t.event).inc()
        self.stats.alert(t.camera)
        self.last_alert[t.camera] = {k: alert[k] for k in ("id", "event", "state", "time", "score")}
        if self.on_alert:
            self.on_alert(alert)

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
