"""The one owner of the running figures: each camera's counts (windows, alerts, frames decoded, latency,
sound level) and the engine's (windows, calls), updated on the pipeline's thread as each window's
result and each alert is handled. From them: the Prometheus series the main process counts, the
summary line on stderr, the periodic records in `streamer:stats`, and /api/cameras and /api/engine
(streamer/fleet_status.py).

Every rate (frames/s, windows/s, the mean batch) is `Series.rates`: over the last RATE_SPAN_S s, or
since the camera (or the pipeline) started when that is more recent. Every latency percentile is over
each camera's last RECENT windows.

Frames decoded travel with the windows (`Window.frames`, each ingest process's running total). Three
figures only the ingest and engine processes know are read from their metrics by `process_counts`
(the one place the main process reads the metrics back), because they change when no window comes to
say so: whether a source is up, its reconnects, and dropped windows (a dropped window never reaches
the main process; one the engine failed on neither).
"""

from __future__ import annotations

import bisect
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.outputs import metrics as m

RATE_SPAN_S = 10.0  # every rate is over this span (or since the start, when younger)
RECENT = 200  # windows per camera whose latency the percentiles are over
RECENT_BATCHES = 64  # batch start times kept to tell a new batch from one already counted


class Series:
    """Running totals and their recent past: each total's rate over the last RATE_SPAN_S s.
    Written by one thread (`add`); `rates` may be read from any."""

    def __init__(self, names: tuple[str, ...], now: float | None = None, span: float = RATE_SPAN_S) -> None:
        self.names, self.span = names, span
        self.totals = dict.fromkeys(names, 0)
        start = time.monotonic() if now is None else now
        self._past: deque[tuple[float, tuple[int, ...]]] = deque([(start, (0,) * len(names))])  # (time, totals then)

    def add(self, now: float, **counts: int) -> None:
        for k, n in counts.items():
            self.totals[k] += n
        self._past.append((now, tuple(self.totals[k] for k in self.names)))
        while len(self._past) > 1 and self._past[1][0] <= now - self.span:  # the oldest still gives the totals at now - span
            self._past.popleft()

    def rates(self, now: float | None = None) -> dict[str, float]:
        """Each total's increase per second over the last `span` s (since the start when more recent)."""
        now = time.monotonic() if now is None else now
        past = list(self._past)  # copied before the totals are read: none of them is newer than the totals
        totals = dict(self.totals)
        i = bisect.bisect_right([t for t, _ in past], now - self.span) - 1
        t0, base = past[max(i, 0)]
        dt = self.span if i >= 0 else max(now - t0, 1e-9)
        return {k: max(totals[k] - b, 0) / dt for k, b in zip(self.names, base)}


def percentile_ms(latencies: Any, q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000, q)) if len(latencies) else 0.0


@dataclass
class CameraCounts:
    """One camera's figures (its windows judged, alerts, frames decoded, recent latencies, last level)."""

    series: Series = field(default_factory=lambda: Series(("windows", "frames")))
    alerts: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=RECENT))  # end to end, s
    level: tuple[float, float] | None = None  # the last window's (RMS, peak) dBFS; None: it had no audio
    ingest: dict[int, int] = field(default_factory=dict)  # ingest pid -> the frames it had decoded at its last window

    @property
    def windows(self) -> int:
        return self.series.totals["windows"]

    @property
    def frames(self) -> int:
        return self.series.totals["frames"]

    def new_frames(self, pid: int, frames: int) -> int:
        """Frames decoded since the last window, from a window's running total of its ingest process."""
        added = max(frames - self.ingest.get(pid, 0), 0)
        self.ingest[pid] = max(frames, self.ingest.get(pid, 0))
        if len(self.ingest) > 8:  # processes long replaced
            del self.ingest[next(iter(self.ingest))]
        return added


@dataclass
class ProcessCounts:
    """What only the ingest and engine processes know, summed over them, by camera."""

    up: dict[str, float] = field(default_factory=dict)  # the highest streamer_source_up
    reconnects: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)


_SUMMED = {"streamer_reconnects_total": "reconnects", "streamer_windows_dropped_total": "dropped"}


def process_counts() -> ProcessCounts:
    """Source up, reconnects and dropped windows, from the metrics every process writes (see the module's
    docstring for why these three are read back)."""
    c = ProcessCounts()
    for s in m.collect_samples():
        cam = s.labels.get("camera")
        if s.name in _SUMMED:
            by_cam = getattr(c, _SUMMED[s.name])
            by_cam[cam] = by_cam.get(cam, 0.0) + s.value
        elif s.name == "streamer_source_up":
            c.up[cam] = max(c.up.get(cam, 0.0), s.value)
    return c


@dataclass
class Stats:
    """The figures of every camera here and of the engine; written on the pipeline's thread alone."""

    replica: int = 0  # the shard index, so that a fleet's records say which replica runs each camera
    started: float = field(default_factory=time.monotonic)
    cams: dict[str, CameraCounts] = field(default_factory=dict)
    alerts: int = 0
    engine: Series = field(init=False)  # every window judged, every engine call
    _batches: deque = field(default_factory=lambda: deque(maxlen=RECENT_BATCHES))

    def __post_init__(self) -> None:
        self.engine = Series(("windows", "calls"), self.started)

    def camera(self, cid: str) -> CameraCounts:
        """A camera's figures, made when it starts (its rates are since then until RATE_SPAN_S have passed)."""
        if cid not in self.cams:
            self.cams[cid] = CameraCounts()
        return self.cams[cid]

    def drop(self, cid: str) -> None:
        """A removed camera's figures go (the engine's totals keep its windows)."""
        self.cams.pop(cid, None)

    def window(self, camera: str, latency_s: float, level: tuple[float, float] | None = None,
               frames: tuple[int, int] = (0, 0), batch: float | None = None) -> None:
        """A window judged: its end-to-end latency, sound level, `frames` (its ingest pid, the frames that
        process had decoded) and `batch` (when its engine call started: the same for a batch's windows)."""
        now = time.monotonic()
        c = self.camera(camera)
        c.series.add(now, windows=1, frames=c.new_frames(*frames))
        c.latencies.append(latency_s)
        c.level = level
        new_call = batch is not None and batch not in self._batches
        if new_call:
            self._batches.append(batch)
        self.engine.add(now, windows=1, calls=int(new_call))
        m.E2E_LATENCY.labels(camera).observe(latency_s)
        m.SOUND_LEVEL.labels(camera, "rms").set(level[0] if level else float("nan"))
        m.SOUND_LEVEL.labels(camera, "peak").set(level[1] if level else float("nan"))
        if level is not None:
            m.SOUND_LEVEL_RMS.labels(camera).observe(level[0])

    def alert(self, camera: str, event: str) -> None:
        self.camera(camera).alerts += 1
        self.alerts += 1
        m.ALERTS.labels(camera, event).inc()

    @property
    def windows(self) -> int:
        """Windows judged since the start, every camera's (removed ones' too)."""
        return self.engine.totals["windows"]

    def summary(self) -> str:
        el = time.monotonic() - self.started
        lat = [x for c in list(self.cams.values()) for x in list(c.latencies)]  # copies: the pipeline's thread appends
        dropped = sum(process_counts().dropped.values())
        rate = self.engine.rates()["windows"]
        return (
            f"[streamer] {el:6.1f} s  cameras {len(self.cams)}  windows {self.windows} ({rate:.1f}/s)  "
            f"dropped {int(dropped)}  alerts {self.alerts}  latency p50 {percentile_ms(lat, 50):.0f} ms p99 {percentile_ms(lat, 99):.0f} ms"
        )

    def records(self) -> list[dict[str, Any]]:
        """One record per camera: rates over the last RATE_SPAN_S s, latency over its last RECENT windows."""
        dropped = process_counts().dropped
        out = []
        for cam, c in sorted(list(self.cams.items())):
            rates, lat = c.series.rates(), list(c.latencies)
            out.append({
                "camera": cam,
                "replica": self.replica,
                "time": time.time(),
                "fps": round(rates["frames"], 2),
                "windows_per_s": round(rates["windows"], 3),
                "windows": c.windows,
                "frames_decoded": c.frames,
                "dropped_windows": int(dropped.get(cam, 0)),
                "alerts": c.alerts,
                "latency_p50_ms": round(percentile_ms(lat, 50), 2),
                "latency_p99_ms": round(percentile_ms(lat, 99), 2),
                "level_rms_dbfs": c.level[0] if c.level else None,
                "level_peak_dbfs": c.level[1] if c.level else None,
            })
        return out


def publish(client: Any, stream: str, records: list[dict[str, Any]], maxlen: int = 10_000) -> None:
    pipe = client.pipeline(transaction=False)
    for r in records:
        pipe.xadd(stream, {"camera": r["camera"], "json": json.dumps(r, separators=(",", ":"))}, maxlen=maxlen, approximate=True)
    pipe.execute()
