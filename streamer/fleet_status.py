"""The fleet's status as /api/cameras, /api/engine, /healthz/ready and the page show it: each camera's
process and source state, its rates and last results, and the engine's.

Every figure comes from the pipeline's figures (streamer/outputs/stats.py: rates over its
RATE_SPAN_S, latency over each camera's last RECENT windows), and the source states and dropped
windows from `process_counts`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from streamer.alerting import CameraStatus
from streamer.config import CameraConfig
from streamer.errors import redact
from streamer.outputs.stats import ProcessCounts, percentile_ms, process_counts

TOP_SCORES = 3  # class scores per camera on the page


def source_state(st: CameraStatus, now: ProcessCounts, cid: str) -> str:
    """up | reconnecting | starting | down (its process ended or was given up on)."""
    if st.process in ("ended", "failed"):
        return "down"
    if now.up.get(cid, 0.0) >= 1:
        return "up"
    if now.reconnects.get(cid, 0.0) > 0 or st.windows:
        return "reconnecting"
    return "starting"


def camera_row(cam: CameraConfig, st: CameraStatus, now: ProcessCounts) -> dict[str, Any]:
    """A camera as /api/cameras shows it."""
    cid = cam.id
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
        "fps": round(st.fps, 2),
        "latency_p99_ms": round(percentile_ms(st.latencies, 99), 1) if st.latencies else None,
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
        counts = process_counts()
        cameras = [camera_row(cam, pipe.camera_status(cam.id), counts) for cam in list(pipe.cfg.cameras)]
        return {"_t": now, "time": time.time(), "replica": pipe.cfg.shard.index or 0, "replicas": pipe.cfg.shard.replicas,
                "cameras": cameras, "engine": self._engine(now)}

    def _engine(self, now: float) -> dict[str, Any]:
        pipe, engine = self.pipe, self.pipe.engine
        rates = pipe.stats.engine.rates(now)
        return {
            "backend": getattr(engine, "backend", None),
            "device": getattr(engine, "device", None),
            "chosen_because": getattr(engine, "chosen_because", None),
            "precision": getattr(engine, "precision", None),
            "max_batch": getattr(engine, "max_batch", None),
            "batch_mean": round(rates["windows"] / rates["calls"], 2) if rates["calls"] > 0 else None,
            "windows_per_s": round(rates["windows"], 2),
            "windows": pipe.stats.windows,
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
