"""Per-camera figures: the summary line on stderr and the periodic records in `streamer:stats`."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.outputs import metrics as m


@dataclass
class _Cam:
    windows: int = 0
    alerts: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=2000))
    last_windows: int = 0
    last_frames: float = 0.0
    level: tuple[float, float] | None = None  # the last window's (RMS, peak) dBFS; None: it had no audio


def _pct(values: Any, q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if len(values) else 0.0


def _by_camera(name: str) -> dict[str, float]:
    """Sum a counter over every process, by its camera label."""
    out: dict[str, float] = {}
    for s in m.collect_samples():
        if s.name == name:
            out[s.labels["camera"]] = out.get(s.labels["camera"], 0.0) + s.value
    return out


@dataclass
class Stats:
    replica: int = 0  # the shard index, so that a fleet's records say which replica runs each camera
    started: float = field(default_factory=time.monotonic)
    cams: dict[str, _Cam] = field(default_factory=dict)
    _last_record: float = field(default_factory=time.monotonic)

    def window(self, camera: str, latency_s: float, level: tuple[float, float] | None = None) -> None:
        c = self.cams.setdefault(camera, _Cam())
        c.windows += 1
        c.latencies.append(latency_s)
        c.level = level

    def alert(self, camera: str) -> None:
        self.cams.setdefault(camera, _Cam()).alerts += 1

    @property
    def windows(self) -> int:
        return sum(c.windows for c in self.cams.values())

    @property
    def alerts(self) -> int:
        return sum(c.alerts for c in self.cams.values())

    def summary(self) -> str:
        el = time.monotonic() - self.started
        lat = [x for c in list(self.cams.values()) for x in list(c.latencies)]  # copies: the detection thread appends
        dropped = sum(_by_camera("streamer_windows_dropped_total").values())
        return (
            f"[streamer] {el:6.1f} s  cameras {len(self.cams)}  windows {self.windows} ({self.windows / max(el, 1e-9):.1f}/s)  "
            f"dropped {int(dropped)}  alerts {self.alerts}  latency p50 {_pct(lat, 50):.0f} ms p99 {_pct(lat, 99):.0f} ms"
        )

    def records(self) -> list[dict[str, Any]]:
        """One record per camera since the last call: rates over the interval, latency over recent windows."""
        now = time.monotonic()
        dt = max(now - self._last_record, 1e-9)
        self._last_record = now
        frames = _by_camera("streamer_frames_decoded_total")
        dropped = _by_camera("streamer_windows_dropped_total")
        out = []
        for cam, c in sorted(list(self.cams.items())):
            out.append({
                "camera": cam,
                "replica": self.replica,
                "time": time.time(),
                "fps": round((frames.get(cam, 0.0) - c.last_frames) / dt, 2),
                "windows_per_s": round((c.windows - c.last_windows) / dt, 3),
                "windows": c.windows,
                "frames_decoded": int(frames.get(cam, 0)),
                "dropped_windows": int(dropped.get(cam, 0)),
                "alerts": c.alerts,
                "latency_p50_ms": round(_pct(list(c.latencies), 50), 2),
                "latency_p99_ms": round(_pct(list(c.latencies), 99), 2),
                "level_rms_dbfs": c.level[0] if c.level else None,
                "level_peak_dbfs": c.level[1] if c.level else None,
            })
            c.last_windows, c.last_frames = c.windows, frames.get(cam, 0.0)
        return out


def publish(client: Any, stream: str, records: list[dict[str, Any]], maxlen: int = 10_000) -> None:
    pipe = client.pipeline(transaction=False)
    for r in records:
        pipe.xadd(stream, {"camera": r["camera"], "json": json.dumps(r, separators=(",", ":"))}, maxlen=maxlen, approximate=True)
    pipe.execute()
