"""The status page's timeline: per camera, the last `http.history_minutes` of window results (every class
score, the anomaly score, the sound level) and of alerts, kept in the main process.

Bounded: a fixed array of rows per camera (one row a window: its wall-clock end, K class scores, anomaly,
RMS and peak level), overwritten in a ring, so memory is `rows * row_bytes` per camera whatever runs; and
the newest MAX_ALERTS alert documents. Written by the pipeline's thread, read by the HTTP server's.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_ALERTS = 50  # alert documents kept per camera for the timeline's markers
LANES = 3  # class lanes served: the classes with the highest scores over the kept history


class _Camera:
    def __init__(self, rows: int, classes: int) -> None:
        self.t = np.zeros(rows, np.float64)  # wall-clock end of the window, s
        self.scores = np.zeros((rows, classes), np.float32)
        self.anomaly = np.full(rows, np.nan, np.float32)  # NaN: no anomaly score for that window
        self.level = np.full((rows, 2), np.nan, np.float32)  # RMS, peak dBFS; NaN: the window had no audio
        self.n = 0  # rows ever written
        self.alerts: deque[dict[str, Any]] = deque(maxlen=MAX_ALERTS)

    @property
    def nbytes(self) -> int:
        return self.t.nbytes + self.scores.nbytes + self.anomaly.nbytes + self.level.nbytes

    def order(self) -> np.ndarray:
        """Indexes of the kept rows, oldest first."""
        rows = len(self.t)
        return np.arange(max(self.n - rows, 0), self.n) % rows


def _values(a: np.ndarray, digits: int) -> list[float | None]:
    return [None if math.isnan(v) else round(v, digits) for v in a.tolist()]


class History:
    def __init__(self, classes: Sequence[str], minutes: float, hop: float) -> None:
        self.classes = list(classes)
        self.minutes = minutes
        self.rows = int(math.ceil(minutes * 60 / hop))
        self._cams: dict[str, _Camera] = {}
        self._lock = threading.Lock()

    @property
    def row_bytes(self) -> int:
        return 8 + 4 * len(self.classes) + 4 + 8

    def add(self, camera: str, t: float, scores: np.ndarray, anomaly: float | None,
            level: tuple[float, float] | None) -> None:
        """One window's results; `t`: the wall-clock time of its end."""
        with self._lock:
            c = self._cams.get(camera) or self._cams.setdefault(camera, _Camera(self.rows, len(self.classes)))
            i = c.n % self.rows
            c.t[i], c.scores[i] = round(t, 3), scores  # to the ms, as served: a served time is a cursor (`since`)
            c.anomaly[i] = np.nan if anomaly is None else anomaly
            c.level[i] = (np.nan, np.nan) if level is None else level
            c.n += 1

    def alert(self, camera: str, doc: dict[str, Any]) -> None:
        with self._lock:
            c = self._cams.get(camera) or self._cams.setdefault(camera, _Camera(self.rows, len(self.classes)))
            c.alerts.append(doc)

    def drop(self, camera: str) -> None:
        with self._lock:
            self._cams.pop(camera, None)

    def nbytes(self, camera: str) -> int:
        c = self._cams.get(camera)
        return c.nbytes if c else 0

    def view(self, camera: str, since: float | None = None, alerts: bool = True) -> dict[str, Any]:
        """The camera's rows after wall-clock time `since` (all kept rows when None) as lanes: `t`, the
        LANES classes scoring highest over the whole kept history (so incremental views keep the same
        lanes until the ranking changes) and the classes of its kept alerts, `anomaly` (null when the
        camera has no anomaly score) and `level` (RMS dBFS; null where no audio)."""
        with self._lock:
            c = self._cams.get(camera)
            if c is None:
                return {"camera": camera, "minutes": self.minutes, "t": [], "lanes": {}, "anomaly": None,
                        "level": [], "peak": [], "alerts": []}
            idx = c.order()
            peaks = c.scores[idx].max(axis=0) if len(idx) else np.zeros(len(self.classes))
            top = [self.classes[k] for k in np.argsort(-peaks, kind="stable")[:LANES]]
            top += sorted({a["event"] for a in c.alerts if a["event"] in self.classes} - set(top))  # every alert on its lane
            if since is not None:
                idx = idx[c.t[idx] > since]
            anomaly = c.anomaly[idx]
            out = {
                "camera": camera,
                "minutes": self.minutes,
                "t": c.t[idx].tolist(),
                "lanes": {name: _values(c.scores[idx, self.classes.index(name)], 3) for name in top},
                "anomaly": None if np.isnan(c.anomaly[c.order()]).all() else _values(anomaly, 3),
                "level": _values(c.level[idx, 0], 1),
                "peak": _values(c.level[idx, 1], 1),
                "alerts": list(c.alerts) if alerts else [],
            }
            if alerts and len(idx):
                out["alerts"] = [a for a in c.alerts if a.get("_t", 0) >= c.t[idx[0]] - 1]
            return out
