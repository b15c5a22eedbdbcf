"""The process tree: one ingest process per source, the engine loop and alerts in the main process.

Ingest processes write windows into a shared-memory ring per camera (streamer/ring.py); for a live
source (a stream, or a file paced in real time) a full ring drops its oldest window and counts it, so
latency and memory stay flat when the engine falls behind. A file read as fast as it decodes waits
instead (nothing dropped).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from typing import Any, Callable

from engines import spec as espec
from streamer.config import Config
from streamer.detect.anomaly import EVENT as ANOMALY
from streamer.detect.anomaly import AnomalyScorer
from streamer.detect.events import EventTracker, Transition
from streamer.engine.process import EngineClient, EngineDied, EngineOptions, Result
from streamer.errors import ConfigError
from streamer.ingest.source import probe_geometry
from streamer.ingest.supervisor import ingest_main
from streamer.outputs import alerts as alerts_mod
from streamer.outputs import evidence
from streamer.outputs import metrics as m
from streamer.outputs import stats as stats_mod
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from streamer.outputs.stats import Stats
from streamer.ring import WindowRing
from streamer.window import Window

log = logging.getLogger(__name__)

MAX_RESTARTS_PER_MIN = 5


class Pipeline:
    def __init__(self, cfg: Config, on_alert: Callable[[dict], None] | None = None) -> None:
        self.cfg = cfg
        self.on_alert = on_alert
        self.model_path = cfg.engine.model or str(espec.DEFAULT_MODEL)
        try:
            self.spec = espec.load_spec(self.model_path)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"engine.model: {e}") from None
        if abs(cfg.window.seconds - self.spec.window_seconds) > 1e-9:
            raise ConfigError(f"window.seconds: {cfg.window.seconds:g} does not match the model's window of {self.spec.window_seconds:g} s ({self.model_path})")
        self.geo = probe_geometry(self.spec, cfg.window.hop)
        unknown = sorted(set(cfg.detect.thresholds) - set(self.spec.classes))
        if unknown:
            raise ConfigError(f"detect.thresholds: unknown classes {unknown}; the model has {list(self.spec.classes)}")
        if cfg.anomaly.enabled and ANOMALY in self.spec.classes:
            raise ConfigError(f"anomaly.enabled: the model has a class called {ANOMALY!r}; set anomaly.enabled: false")
        self.anomaly = AnomalyScorer(cfg, self.model_path, self.spec.embedding_dim)  # a bad model file fails here
        self.tracker = EventTracker({**self.spec.thresholds, **cfg.detect.thresholds}, cfg.detect.min_windows,
                                    cfg.detect.cooldown, {c.id: dict(c.thresholds) for c in cfg.cameras})
        self.stats = Stats()
        self._ctx = mp.get_context("spawn")
        self.rings: dict[str, WindowRing] = {}
        self._start_engine()  # the engine loads the model now: a bad model or backend fails here, not later
        self.backend = self.engine.backend
        self.model = alerts_mod.ModelInfo(self.spec.name, self.spec.version, self.backend)
        self._embedded: alerts_mod.EmbeddedRedis | None = None
        self.redis_url = cfg.redis.url
        if self.redis_url is None:
            self._embedded = alerts_mod.EmbeddedRedis()
            self.redis_url = self._embedded.url
        r = cfg.redis
        client = alerts_mod.connect(self.redis_url, ssl_ca_certs=r.ssl_ca_certs, ssl_certfile=r.ssl_certfile, ssl_keyfile=r.ssl_keyfile)
        self.sink = AlertSink(client, self.redis_url, stream=r.stream, maxlen=r.maxlen, channel_prefix=r.channel_prefix,
                              spool=Spool(r.spool_dir, r.spool_max_alerts), evidence_ttl=cfg.evidence.ttl)
        for c in cfg.cameras:  # export every series from the start, at 0
            m.ALERTS_DROPPED.labels(c.id, "spool_full")
            for event in self.spec.classes:
                m.ALERTS.labels(c.id, event)
            if cfg.anomaly.enabled:
                m.ALERTS.labels(c.id, ANOMALY)
                m.NORMALITY_LEARNING.labels(c.id).set(self.anomaly.progress(c.id))
        m.SPOOLED.set(len(self.sink.spool))
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _start_engine(self) -> None:
        """Fresh rings and a fresh engine process reading them."""
        kf = self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0
        self.rings = {c.id: WindowRing(self._ctx, self.geo, self.cfg.window.queue, kf) for c in self.cfg.cameras}
        e = self.cfg.engine
        try:
            opts = EngineOptions(self.model_path, e.backend, e.threads, e.max_batch, e.max_wait_ms, e.precision, e.cache_dir)
            self.engine = EngineClient(self._ctx, opts, self.rings, e.ready_timeout)
        except Exception:
            self._close_rings()
            raise

    def run(self, duration: float | None = None, summary_every: float = 0.0, summary: Callable[[str], None] | None = None) -> None:
        ctx = self._ctx
        stop = ctx.Event()
        kf = self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0
        cams = {c.id: c for c in self.cfg.cameras}

        def spawn(cid: str) -> Any:
            p = ctx.Process(target=ingest_main, args=(cams[cid], self.geo, self.rings[cid], stop, kf), name=f"streamer:ingest:{cid}", daemon=True)
            p.start()
            return p

        def stop_ingest() -> None:
            stop.set()
            for p in procs.values():
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2)
                m.process_exited(p.pid)

        live = set(cams)
        procs = {cid: spawn(cid) for cid in cams}
        restarts: dict[str, list[float]] = {cid: [] for cid in cams}
        engine_restarts: list[float] = []
        now = time.monotonic()
        deadline = now + duration if duration else None
        next_summary = now + summary_every if summary_every else None
        stats_done = threading.Event()
        stats_thread = threading.Thread(target=self._stats_loop, args=(stats_done,), name="streamer:stats", daemon=True)
        stats_thread.start()  # reading every process's metrics takes long enough to delay alerts: not on this thread
        try:
            while live and not self._stop.is_set():
                now = time.monotonic()
                if deadline and now >= deadline:
                    break
                try:
                    msg = self.engine.get(timeout=0.1)
                except EngineDied as e:
                    engine_restarts = [t for t in engine_restarts if now - t < 60] + [now]
                    if len(engine_restarts) > MAX_RESTARTS_PER_MIN:
                        raise
                    log.error("%s: restarting the engine, the rings and the ingest processes", e)
                    m.ENGINE_RESTARTS.inc()
                    stop_ingest()
                    self.engine.close()  # reaps the dead process and marks it dead for the metrics
                    self._close_rings()
                    self._start_engine()
                    stop = ctx.Event()
                    procs = {cid: spawn(cid) for cid in live}
                    continue
                if msg is not None and msg[0] == "result":
                    self._detect_and_publish(msg[1])
                elif msg is not None and msg[0] == "end":
                    live.discard(msg[1])
                    for t in self.tracker.close_all(msg[1]):
                        self._publish(t, None, {})
                for cid, p in procs.items():  # an ingest process that died without finishing is restarted
                    if cid in live and p.exitcode not in (None, 0):
                        restarts[cid] = [t for t in restarts[cid] if now - t < 60] + [now]
                        if len(restarts[cid]) > MAX_RESTARTS_PER_MIN:
                            log.error("camera %s: ingest died %d times in a minute; giving up on it", cid, len(restarts[cid]))
                            live.discard(cid)
                            continue
                        log.error("camera %s: ingest process died (exit code %s); restarting it", cid, p.exitcode)
                        m.process_exited(p.pid)
                        m.PROCESS_RESTARTS.labels(cid).inc()
                        procs[cid] = spawn(cid)
                if next_summary and summary and now >= next_summary:
                    summary(self.stats.summary())
                    next_summary += summary_every
        finally:
            stop.set()
            for t in self.tracker.close_all():
                self._publish(t, None, {})
            stop_ingest()
            stats_done.set()
            stats_thread.join(timeout=5)
            self._publish_stats()
            if summary:
                summary(self.stats.summary())

    def close(self) -> None:
        self.engine.close()
        self._close_rings()
        self.sink.flush()
        self.sink.close()
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
        if w.camera in self.anomaly.learners:
            self.anomaly.learn(w.camera, r.embedding)
            m.NORMALITY_LEARNING.labels(w.camera).set(self.anomaly.progress(w.camera))
        else:
            scored = self.anomaly.score(w.camera, r.embedding)
            if scored is not None:
                scores[ANOMALY], cell = scored
                # the model's threshold, unless the camera's `thresholds` sets one for anomaly
                self.tracker.per_camera.setdefault(w.camera, {}).setdefault(ANOMALY, self.anomaly.models[w.camera].threshold)
        for t in self.tracker.update(w.camera, w.start, w.end, scores):
            self._publish(t, w, lat, cell)
        done = time.monotonic()
        m.E2E_LATENCY.labels(w.camera).observe(done - w.arrival)
        self.stats.window(w.camera, done - w.arrival)

    def _publish(self, t: Transition, w: Window | None, latency_ms: dict[str, float],
                 cell: dict[str, int] | None = None) -> None:
        """One alert: build it (with evidence for a start), hand it to the sink. Latency ends at the hand-off."""
        t_pub = time.monotonic()
        wall_end = time.time() - (t_pub - w.arrival) if w is not None else time.time()
        score, anomaly_score = t.score, None
        if t.event == ANOMALY:  # an unbounded distance: `score` maps it into [0, 1), 0.5 at the threshold
            anomaly_score = t.score
            score = t.score / (t.score + max(self.tracker.threshold(t.camera, ANOMALY), 1e-9))
        alert = alerts_mod.make_alert(
            camera=t.camera, event=t.event, state=t.state, score=score, start=t.start, end=t.end, wall_end=wall_end,
            latency_ms=latency_ms, model=self.model, anomaly_score=anomaly_score,
            anomaly_cell=cell if t.event == ANOMALY and t.state == "start" else None,
            duration_s=t.duration if t.state == "end" else None,
        )
        files: dict[str, bytes] = {}
        if t.state == "start" and w is not None and self.cfg.evidence.enabled:
            keys = evidence.keys("streamer:evidence", alert["id"])
            if w.keyframe is not None:
                files[keys["keyframe"]] = evidence.jpeg(w.keyframe, self.cfg.evidence.jpeg_quality)
            if w.audio_mask:
                files[keys["audio"]] = evidence.wav(w.audio, self.spec.sample_rate)
            alert["evidence"] = {name: key for name, key in keys.items() if key in files}
        if w is not None:
            done = time.monotonic()
            alert["latency_ms"]["publish"] = round((done - t_pub) * 1000, 2)
            alert["latency_ms"]["end_to_end"] = round((done - w.arrival) * 1000, 2)
        self.sink.submit(alert, files)
        m.STAGE_LATENCY.labels("publish").observe(time.monotonic() - t_pub)
        m.ALERTS.labels(t.camera, t.event).inc()
        self.stats.alert(t.camera)
        if self.on_alert:
            self.on_alert(alert)

    def _stats_loop(self, done: threading.Event) -> None:
        while not done.wait(self.cfg.redis.stats_interval):
            self._publish_stats()

    def _publish_stats(self) -> None:
        try:
            stats_mod.publish(self.sink.client, self.cfg.redis.stats_stream, self.stats.records())
        except Exception as e:  # stats are best effort; alerts are not
            log.debug("stats not published: %s", e)
