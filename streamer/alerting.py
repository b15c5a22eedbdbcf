"""Detection in the main process, after the engine: each window's scores (with the anomaly distance and
the sound level) go to the event tracker, its transitions become alerts (a start with its evidence, read
from the camera's evidence ring and encoded on the delivery thread) handed to the alert sink, and each
camera's last results are kept for the page and the API.

Everything here runs on the pipeline's thread (streamer/pipeline.py); `status()` may be read from any.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from engines.spec import ModelSpec
from streamer.config import CameraConfig, Config, LoudnessConfig
from streamer.detect import loudness
from streamer.detect.anomaly import EVENT as ANOMALY
from streamer.detect.anomaly import AnomalyScorer
from streamer.detect.events import EventTracker, Transition
from streamer.detect.loudness import EVENT as LOUD
from streamer.inference.process import Result
from streamer.outputs import alerts as alerts_mod
from streamer.outputs import evidence
from streamer.outputs import metrics as m
from streamer.outputs.history import History
from streamer.outputs.sink import AlertSink
from streamer.outputs.stats import Stats
from streamer.window import Window


@dataclass(frozen=True)
class CameraStatus:
    """A camera as the page and /api/cameras show it (`Pipeline.camera_status`)."""

    process: str  # starting | running | ended | failed
    pid: int | None  # its ingest process
    windows: int
    alerts: int
    latencies: list[float]  # end-to-end, s, of its recent windows (streamer.outputs.stats.RECENT)
    scores: dict[str, float]  # its last window's
    last_alert: dict[str, Any] | None  # id, event, state, time, score
    level: tuple[float, float] | None  # its last window's (RMS, peak) dBFS
    loudness: LoudnessConfig | None  # its `loud` event settings (None: off)
    fps: float = 0.0  # video frames decoded per second (streamer.outputs.stats.RATE_SPAN_S)


def sound_level(w: Window) -> tuple[float, float] | None:
    """A window's (RMS, peak) dBFS; None when it had no audio."""
    return None if w.rms_dbfs is None or w.peak_dbfs is None else (w.rms_dbfs, w.peak_dbfs)


class Alerting:
    """Windows to events to alerts. `evidence(camera, window start)` gives a start alert's (keyframe,
    audio) without waiting (streamer/evidence_ring.py Evidence.read); `objects(camera, window start)` its
    (moving objects, objects_s), which came beside the engine (streamer/window_objects.py); `delivered(camera, end, arrival)` hears of each window judged (the timeline a respawned
    ingest process continues)."""

    def __init__(self, cfg: Config, spec: ModelSpec, anomaly: AnomalyScorer, stats: Stats, sink: AlertSink, model: alerts_mod.ModelInfo,
                 evidence: Callable[[str, float], tuple[Any, Any]], delivered: Callable[[str, float, float], None],
                 on_alert: Callable[[dict], None] | None = None, on_window: Callable[[Result], None] | None = None,
                 objects: Callable[[str, float], tuple[Any, float] | None] | None = None) -> None:
        self.cfg, self.spec, self.anomaly, self.stats, self.sink, self.model = cfg, spec, anomaly, stats, sink, model
        self.evidence, self.delivered, self.objects = evidence, delivered, objects
        self.on_alert = on_alert
        self.on_window = on_window  # every window's result, as detection sees it (tests, tools)
        self.tracker = EventTracker({**spec.thresholds, **cfg.detect.thresholds}, cfg.detect.min_windows, cfg.detect.cooldown)
        self.history = History(spec.classes, cfg.http.history_minutes, cfg.window.hop)
        # what the status page and /api/cameras show (read: status())
        self.latest_scores: dict[str, dict[str, float]] = {}  # camera -> its last window's scores
        self.last_alert: dict[str, dict[str, Any]] = {}  # camera -> its last alert (id, event, state, time, score)
        self.loudness: dict[str, LoudnessConfig | None] = {}  # camera -> its `loud` event settings (None: off)
        for c in cfg.cameras:
            self.configure(c)
            self._export_series(c.id)

    # ---- cameras ---------------------------------------------------------------------------------
    def configure(self, cam: CameraConfig) -> None:
        """A camera's thresholds and `loud` settings into the event tracker: at start, when it is added, and
        live (op `detect`). The anomaly threshold is the model's again unless `thresholds` sets one."""
        loud = cam.loudness if cam.loudness is not None else self.cfg.detect.loudness
        self.loudness[cam.id] = loud
        self.tracker.configure(cam.id, {**cam.thresholds, **({LOUD: loud.threshold_dbfs} if loud else {})},
                               {LOUD: loud.min_windows} if loud else {})
        if loud is not None:
            m.ALERTS.labels(cam.id, LOUD)

    def _export_series(self, cid: str) -> None:
        """A camera's figures, from its start; its alert series, exported from the start at 0."""
        self.stats.camera(cid)
        m.ALERTS_DROPPED.labels(cid, "spool_full")
        for event in self.spec.classes:
            m.ALERTS.labels(cid, event)
        if self.cfg.evidence.enabled:
            m.EVIDENCE_MISSED.labels(cid)
        if self.cfg.anomaly.enabled:
            m.ALERTS.labels(cid, ANOMALY)
            m.OBJECTS_MISSED.labels(cid)
            m.NORMALITY_LEARNING.labels(cid).set(self.anomaly.progress(cid))

    def add(self, cam: CameraConfig) -> None:
        """A camera added while running. A normality file that cannot be used fails here (ConfigError)."""
        self.anomaly.add(cam)
        self.configure(cam)
        self._export_series(cam.id)

    def drop(self, cid: str, replacing: bool = False) -> None:
        """A removed camera: its open events end (reason "stop") and its state goes (its figures and
        timeline stay when `replacing`: the camera restarts)."""
        self.end_events(cid, reason="stop")
        self.anomaly.remove(cid)
        self.tracker.forget(cid)
        if not replacing:
            self.stats.drop(cid)
            self.history.drop(cid)
        for d in (self.latest_scores, self.last_alert, self.loudness):
            d.pop(cid, None)

    def end_events(self, camera: str | None = None, reason: str | None = None) -> None:
        """End the open events of `camera` (None: every camera) with `end` alerts saying `reason`."""
        for t in self.tracker.close_all(camera, reason=reason):
            self._publish(t, None, {})

    def status(self, cid: str, process: str, pid: int | None) -> CameraStatus:
        """A camera's figures and last results, copied (safe from any thread)."""
        st = self.stats.cams.get(cid)
        return CameraStatus(
            process=process, pid=pid, windows=st.windows if st else 0, alerts=st.alerts if st else 0,
            latencies=list(st.latencies) if st else [], scores=dict(self.latest_scores.get(cid) or {}),
            last_alert=self.last_alert.get(cid), level=st.level if st else None, loudness=self.loudness.get(cid),
            fps=st.series.rates()["frames"] if st else 0.0)

    # ---- windows and alerts ------------------------------------------------------------------------
    def window(self, r: Result) -> None:
        """One window's result: scores, events, alerts."""
        w = r.window
        m.STAGE_LATENCY.labels("decode").observe(w.decode_s)
        m.STAGE_LATENCY.labels("window").observe(w.window_s)
        lat = {"decode": w.decode_s * 1000, "window": w.window_s * 1000, "queue": (r.infer_start - w.arrival) * 1000,
               "infer": r.infer_s * 1000}
        scores = dict(zip(self.spec.classes, r.scores.tolist()))
        cell = self._anomaly(w, scores)
        level = sound_level(w)
        self.delivered(w.camera, w.end, w.arrival)
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
        self.stats.window(w.camera, done - w.arrival, level, (w.ingest_pid, w.frames), r.infer_start)

    def _anomaly(self, w: Window, scores: dict[str, float]) -> dict[str, int] | None:
        """A window's moving objects learned from or scored (into `scores`); the cell of its worst object."""
        if self.objects is not None and self.cfg.anomaly.enabled:
            got = self.objects(w.camera, w.start)
            if got is None:  # not arrived (practically never: they are queued before the window enters the ring)
                m.OBJECTS_MISSED.labels(w.camera).inc()
                return None
            w.objects, w.objects_s = got
        if w.objects is None:  # no objects (anomaly off, or a microphone alone)
            return None
        if w.camera in self.anomaly.learners:
            self.anomaly.learn(w.camera, w.objects)
            m.NORMALITY_LEARNING.labels(w.camera).set(self.anomaly.progress(w.camera))
            return None
        scored = self.anomaly.score(w.camera, w.objects)
        if scored is None:
            return None
        scores[ANOMALY], cell = scored
        # the model's threshold, unless the camera's `thresholds` sets one for anomaly
        self.tracker.default_threshold(w.camera, ANOMALY, self.anomaly.models[w.camera].threshold)
        return cell

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
        level = sound_level(w) if w is not None else None
        alert = alerts_mod.make_alert(
            camera=t.camera, event=t.event, state=t.state, score=score, start=t.start, end=t.end, wall_end=wall_end,
            latency_ms=latency_ms, model=self.model, top=top or [], level=level, anomaly_score=anomaly_score,
            anomaly_cell=cell if t.event == ANOMALY and t.state == "start" else None,
            duration_s=t.duration if t.state == "end" else None,
            reason=t.reason if t.state == "end" else None,
        )
        files = self._evidence(alert, w) if t.state == "start" and w is not None and self.cfg.evidence.enabled else {}
        if w is not None:
            done = time.monotonic()
            alert["latency_ms"]["publish"] = round((done - t_pub) * 1000, 2)
            alert["latency_ms"]["end_to_end"] = round((done - w.arrival) * 1000, 2)
        self.history.alert(t.camera, {**alert, "_t": wall_end})  # before Redis has it: a page that hears of it finds it here
        self.sink.submit(alert, files)
        m.STAGE_LATENCY.labels("publish").observe(time.monotonic() - t_pub)
        self.stats.alert(t.camera, t.event)
        self.last_alert[t.camera] = {k: alert[k] for k in ("id", "event", "state", "time", "score")}
        if self.on_alert:
            self.on_alert(alert)

    def _evidence(self, alert: dict[str, Any], w: Window) -> dict[str, Callable[[], bytes]]:
        """A start alert's evidence files, read now from the camera's evidence ring and encoded later, on the
        delivery thread (AlertSink); `alert["evidence"]` names the keys of those it has."""
        keys = evidence.keys("streamer:evidence", alert["id"])
        keyframe, audio = self.evidence(w.camera, w.start)
        files: dict[str, Callable[[], bytes]] = {}
        if keyframe is not None:
            files[keys["keyframe"]] = partial(evidence.jpeg, keyframe, self.cfg.evidence.jpeg_quality)
        if audio is not None:  # the ring gives audio only for a window that had some
            files[keys["audio"]] = partial(evidence.wav, audio, self.spec.sample_rate)
        alert["evidence"] = {name: key for name, key in keys.items() if key in files}
        return files
