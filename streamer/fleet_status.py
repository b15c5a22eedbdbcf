"""The fleet's status as /api/cameras, /api/engine, /healthz/ready and the page show it: each camera's
process and source state, its rates and last results, and the engine's.

Rates (frames/s, windows/s, the mean batch) are taken over the interval since the last snapshot at
least 0.5 s old (since the start for the first). A camera's own figures come from
`Pipeline.camera_status`; the ingest and engine processes' counters from the metrics they write.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.alerting import CameraStatus
from streamer.config import CameraConfig
from streamer.errors import redact
from streamer.outputs import metrics as m

TOP_SCORES = 3  # class scores per camera on the page
RECENT = 200  # windows whose latency the p99 is taken over
MIN_INTERVAL_S = 0.5  # a rate over a shorter interval than this is taken since the start instead

_SUMMED = {"streamer_frames_decoded_total": "frames", "streamer_reconnects_total": "reconnects",
           "streamer_windows_dropped_total": "dropped"}


@dataclass
class Counts:
    """Counters summed over every process (per camera, or the engine's batches), and the windows judged."""

    frames: dict[str, float] = field(default_factory=dict)
    up: dict[str, float] = field(default_factory=dict)  # the highest streamer_source_up
    reconnects: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    batch_sum: float = 0.0
    batch_count: float = 0.0
    windows: int = 0


def read_counts(windows: int) -> Counts:
    """Every process's counters now (the metrics), with `windows` judged."""
    c = Counts(windows=windows)
    for s in m.collect_samples():
        cam = s.labels.get("camera")
        if s.name in _SUMMED:
            by_cam = getattr(c, _SUMMED[s.name])
            by_cam[cam] = by_cam.get(cam, 0.0) + s.value
        elif s.name == "streamer_source_up":
            c.up[cam] = max(c.up.get(cam, 0.0), s.value)
        elif s.name == "streamer_engine_batch_size_sum":
            c.batch_sum += s.value
        elif s.name == "streamer_engine_batch_size_count":
            c.batch_count += s.value
    return c


def source_state(st: CameraStatus, now: Counts, cid: str) -> str:
    """up | reconnecting | starting | down (its process ended or was given up on)."""
    if st.process in ("ended", "failed"):
        return "down"
    if now.up.get(cid, 0.0) >= 1:
        return "up"
    if now.reconnects.get(cid, 0.0) > 0 or st.windows:
        return "reconnecting"
    return "starting"


def camera_row(cam: CameraConfig, st: CameraStatus, now: Counts, base: Counts, dt: float) -> dict[str, Any]:
    """A camera as /api/cameras shows it; rates over `dt` s since `base`."""
    cid = cam.id
    lat = st.latencies[-RECENT:]
    top = sorted(st.scores.items(), key=lambda kv: -kv[1])[:TOP_SCORES]
    return {
        "id": cid,
        "url": redact(cam.url),
        "detect_url": redact(cam.detect_url) if cam.detect_url else None,
        "audio": cam.audio,
        "state": source_state(st, now, cid),
        "process": st.process,
        "pid": st.pid,
        "windows": st.windows,
        "fps": round(max(now.frames.get(cid, 0.0) - base.frames.get(cid, 0.0), 0.0) / dt, 2),
        "latency_p99_ms": round(float(np.percentile(np.asarray(lat) * 1000, 99)), 1) if lat else None,
        "dropped": int(now.dropped.get(cid, 0.0)),
        "alerts": st.alerts,
        "last_alert": st.last_alert,
        "top_scores": [{"class": k, "score": round(float(v), 4)} for k, v in top],
        "thresholds": dict(cam.thresholds),
        "level": {"rms_dbfs": st.level[0], "peak_dbfs": st.level[1]} if st.level else None,
        "loudness": st.loudness.model_dump() if st.loudness else None,
    }


class FleetStatus:
    """The running pipeline's status, computed at most once per `max_age` s however many clients ask."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._snap: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._prev: tuple[float, Counts] | None = None  # the last snapshot at least MIN_INTERVAL_S apart: its time, counts
        self.started = time.monotonic()

    def snapshot(self, max_age: float = 1.0) -> dict[str, Any]:
        """Cameras and engine, as /api/cameras, /api/engine and the page show them."""
        with self._lock:
            now = time.monotonic()
            if self._snap is not None and now - self._snap["_t"] < max_age:
                return self._snap
            self._snap = self._compute(now)
            return self._snap

    def invalidate(self) -> None:
        """The next snapshot is computed afresh (after a change)."""
        self._snap = None

    def _compute(self, now: float) -> dict[str, Any]:
        pipe = self.pipe
        counts = read_counts(pipe.stats.windows)
        dt, base = self._base(now, counts)
        cameras = [camera_row(cam, pipe.camera_status(cam.id), counts, base, dt) for cam in list(pipe.cfg.cameras)]
        return {"_t": now, "time": time.time(), "replica": pipe.cfg.shard.index or 0, "replicas": pipe.cfg.shard.replicas,
                "cameras": cameras, "engine": self._engine(counts, base, dt)}

    def _base(self, now: float, counts: Counts) -> tuple[float, Counts]:
        """The interval the rates are over, and the counts at its start."""
        prev = self._prev
        recent = prev is not None and now - prev[0] < MIN_INTERVAL_S
        if prev is None or recent:
            out = (max(now - self.started, 1e-9), Counts())
        else:
            out = (now - prev[0], prev[1])
        if not recent:
            self._prev = (now, counts)
        return out

    def _engine(self, now: Counts, base: Counts, dt: float) -> dict[str, Any]:
        pipe, engine = self.pipe, self.pipe.engine
        batches = now.batch_count - base.batch_count
        return {
            "backend": getattr(engine, "backend", None),
            "device": getattr(engine, "device", None),
            "chosen_because": getattr(engine, "chosen_because", None),
            "precision": getattr(engine, "precision", None),
            "max_batch": getattr(engine, "max_batch", None),
            "batch_mean": round((now.batch_sum - base.batch_sum) / batches, 2) if batches > 0 else None,
            "windows_per_s": round((now.windows - base.windows) / dt, 2),
            "windows": now.windows,
            "alive": bool(engine is not None and engine.alive()),
            "model": {"name": pipe.spec.name, "version": pipe.spec.version, "classes": list(pipe.spec.classes)},
        }

    def history(self, cid: str, since: float | None = None, alerts: bool = True) -> dict[str, Any] | None:
        """The camera's timeline (streamer.outputs.history); None when it does not run here."""
        if cid not in {c.id for c in self.pipe.cfg.cameras}:
            return None
        return self.pipe.history.view(cid, since, alerts)

    def histories(self, since: dict[str, float]) -> dict[str, Any]:
        """Every camera's rows after `since[camera]` (the event stream's `history` event), without alerts."""
        out = {}
        for cam in list(self.pipe.cfg.cameras):
            view = self.pipe.history.view(cam.id, since.get(cam.id), alerts=False)
            if view["t"]:
                out[cam.id] = view
        return out

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): the engine answers and at least one source delivers (a replica without cameras
        is ready with none)."""
        pipe = self.pipe
        if not pipe.running:
            return False, "not ready: the pipeline is starting or stopping"
        if pipe.engine is None or not pipe.engine.alive():
            return False, "not ready: the engine process is not running (it is being restarted)"
        snap = self.snapshot()
        if not snap["cameras"]:
            return True, "ready: no cameras on this replica"
        ups = [c["id"] for c in snap["cameras"] if c["state"] == "up"]
        if ups:
            return True, f"ready: {len(ups)} of {len(snap['cameras'])} source(s) up"
        states = ", ".join(f"{c['id']} {c['state']}" for c in snap["cameras"][:10])
        return False, f"not ready: no source up ({states})"
