"""The process tree: one ingest process per source, the engine loop and alerts in the main process.

Ingest processes write windows into a shared-memory ring per camera (streamer/ring.py); for a live
source (a stream, or a file paced in real time) a full ring drops its oldest window and counts it, so
latency and memory stay flat when the engine falls behind. A file read as fast as it decodes waits
instead (nothing dropped).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from typing import Any, Callable

import numpy as np

from engines import spec as espec
from streamer.config import Config
from streamer.detect.events import EventTracker, Transition
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
from streamer.ring import END, WindowRing
from streamer.window import Window

log = logging.getLogger(__name__)

MAX_RESTARTS_PER_MIN = 5


class Pipeline:
    def __init__(self, cfg: Config, on_alert: Callable[[dict], None] | None = None) -> None:
        from engines.runtime.select import open_runtime  # lazy: the runtime loads the model

        self.cfg = cfg
        self.on_alert = on_alert
        model_path = cfg.engine.model or str(espec.DEFAULT_MODEL)
        self.runtime = open_runtime(model_path, backend=cfg.engine.backend, threads=cfg.engine.threads)
        self.spec = self.runtime.spec
        if abs(cfg.window.seconds - self.spec.window_seconds) > 1e-9:
            raise ConfigError(f"window.seconds: {cfg.window.seconds:g} does not match the model's window of {self.spec.window_seconds:g} s ({model_path})")
        self.geo = probe_geometry(self.spec, cfg.window.hop)
        self.model = alerts_mod.ModelInfo(self.spec.name, self.spec.version, self.runtime.backend)
        m.ENGINE_INFO.labels(self.runtime.backend, getattr(self.runtime, "precision", "fp32"), self.spec.name).set(1)
        unknown = sorted(set(cfg.detect.thresholds) - set(self.spec.classes))
        if unknown:
            raise ConfigError(f"detect.thresholds: unknown classes {unknown}; the model has {list(self.spec.classes)}")
        self.tracker = EventTracker({**self.spec.thresholds, **cfg.detect.thresholds}, cfg.detect.min_windows,
                                    cfg.detect.cooldown, {c.id: dict(c.thresholds) for c in cfg.cameras})
        self.stats = Stats()
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
        m.SPOOLED.set(len(self.sink.spool))
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None, summary_every: float = 0.0, summary: Callable[[str], None] | None = None) -> None:
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        kf = self.cfg.evidence.jpeg_width if self.cfg.evidence.enabled else 0
        rings = {c.id: WindowRing(ctx, self.geo, self.cfg.window.queue, kf) for c in self.cfg.cameras}
        cams = {c.id: c for c in self.cfg.cameras}

        def spawn(cid: str) -> Any:
            p = ctx.Process(target=ingest_main, args=(cams[cid], self.geo, rings[cid], stop, kf), name=f"streamer:ingest:{cid}", daemon=True)
            p.start()
            return p

        batchq: queue.Queue = queue.Queue(maxsize=self.cfg.window.queue * len(cams))
        live = set(rings)
        collectors = [threading.Thread(target=self._collect, args=(cid, r, batchq), name=f"streamer:collect:{cid}", daemon=True)
                      for cid, r in rings.items()]
        procs = {cid: spawn(cid) for cid in cams}
        restarts: dict[str, list[float]] = {cid: [] for cid in cams}
        for t in collectors:
            t.start()
        now = time.monotonic()
        deadline = now + duration if duration else None
        next_summary = now + summary_every if summary_every else None
        next_stats = now + self.cfg.redis.stats_interval
        try:
            while live and not self._stop.is_set():
                now = time.monotonic()
                if deadline and now >= deadline:
                    break
                batch = self._next_batch(batchq, live)
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
                if batch:
                    self._infer_and_publish(batch)
                if next_summary and summary and now >= next_summary:
                    summary(self.stats.summary())
                    next_summary += summary_every
                if now >= next_stats:
                    self._publish_stats()
                    next_stats = now + self.cfg.redis.stats_interval
        finally:
            stop.set()
            for t in self.tracker.close_all():
                self._publish(t, None, {})
            for p in procs.values():
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2)
                m.process_exited(p.pid)
            for r in rings.values():
                r.close(unlink=True)
            self._publish_stats()
            if summary:
                summary(self.stats.summary())

    def close(self) -> None:
        self.sink.flush()
        self.sink.close()
        self.runtime.close()
        self.sink.client.close()
        if self._embedded:
            self._embedded.close()

    # ---- main-process stages ----------------------------------------------------------------
    def _collect(self, camera: str, ring: WindowRing, batchq: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                item = ring.get(timeout=0.5)
            except (queue.Empty, OSError, ValueError):
                continue
            batchq.put((camera, item))  # blocks: drops happen once, in the camera's ring
            if item == END:
                return

    def _next_batch(self, batchq: queue.Queue, live: set[str]) -> list[Window]:
        batch: list[Window] = []
        try:
            item = batchq.get(timeout=0.1)
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.cfg.engine.max_wait_ms / 1000
        while True:
            camera, w = item
            if isinstance(w, str):
                live.discard(camera)
                for t in self.tracker.close_all(camera):
                    self._publish(t, None, {})
            else:
                batch.append(w)
            if len(batch) >= self.cfg.engine.max_batch:
                return batch
            try:
                item = batchq.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                return batch

    def _infer_and_publish(self, batch: list[Window]) -> None:
        t0 = time.monotonic()
        feed = {
            espec.INPUT_VIDEO: np.stack([w.video for w in batch]),
            espec.INPUT_AUDIO: np.stack([w.audio for w in batch]),
            espec.INPUT_VIDEO_MASK: np.array([w.video_mask for w in batch], np.float32),
            espec.INPUT_AUDIO_MASK: np.array([w.audio_mask for w in batch], np.float32),
        }
        logits = self.runtime.infer(feed)[espec.OUTPUT_LOGITS]
        t1 = time.monotonic()
        m.STAGE_LATENCY.labels("infer").observe(t1 - t0)
        m.BATCH_SIZE.observe(len(batch))
        scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
        for w, row in zip(batch, scores):
            m.STAGE_LATENCY.labels("decode").observe(w.decode_s)
            m.STAGE_LATENCY.labels("window").observe(w.window_s)
            m.STAGE_LATENCY.labels("queue").observe(max(t0 - w.arrival, 0))
            lat = {"decode": w.decode_s * 1000, "window": w.window_s * 1000, "queue": (t0 - w.arrival) * 1000, "infer": (t1 - t0) * 1000}
            for t in self.tracker.update(w.camera, w.start, w.end, dict(zip(self.spec.classes, row.tolist()))):
                self._publish(t, w, lat)
            done = time.monotonic()
            m.E2E_LATENCY.labels(w.camera).observe(done - w.arrival)
            self.stats.window(w.camera, done - w.arrival)

    def _publish(self, t: Transition, w: Window | None, latency_ms: dict[str, float]) -> None:
        """One alert: build it (with evidence for a start), hand it to the sink. Latency ends at the hand-off."""
        t_pub = time.monotonic()
        wall_end = time.time() - (t_pub - w.arrival) if w is not None else time.time()
        alert = alerts_mod.make_alert(
            camera=t.camera, event=t.event, state=t.state, score=t.score, start=t.start, end=t.end, wall_end=wall_end,
            latency_ms=latency_ms, model=self.model, duration_s=t.duration if t.state == "end" else None,
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

    def _publish_stats(self) -> None:
        try:
            stats_mod.publish(self.sink.client, self.cfg.redis.stats_stream, self.stats.records())
        except Exception as e:  # stats are best effort; alerts are not
            log.debug("stats not published: %s", e)
