"""Scores to events: per camera and class, hysteresis over consecutive windows and a cooldown."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamer.detect.anomaly import EVENT as ANOMALY


def known_classes(cfg: Any, classes: Iterable[str]) -> set[str]:
    """What a threshold may name: the model's `classes`, and `anomaly` while anomaly is enabled in `cfg`."""
    return set(classes) | ({ANOMALY} if cfg.anomaly.enabled else set())


def threshold_errors(cfg: Any, classes: Iterable[str]) -> list[str]:
    """One line per threshold in `cfg` (a streamer.config.Config: detect.thresholds and each camera's)
    for a class it may not name (`known_classes`): what `streamer check` and the pipeline's start refuse."""
    known = known_classes(cfg, classes)
    named = sorted(known)
    where = [("detect.thresholds", cfg.detect.thresholds)]
    where += [(f"cameras[{i}].thresholds ({c.id})", c.thresholds) for i, c in enumerate(cfg.cameras)]
    return [f"{key}.{name}: unknown class; the model has {named}" for key, values in where
            for name in sorted(set(values) - known)]


@dataclass
class Transition:
    camera: str
    event: str
    state: str  # "start" | "end"
    score: float  # the window's score at start; the peak at end
    start: float  # event start on the source clock
    end: float  # window end (start) or event end (end)
    duration: float = 0.0
    reason: str | None = None  # end only, when not the cooldown: "source_end", "engine_restart", "stop"


@dataclass
class _Track:
    above: int = 0  # consecutive windows over threshold
    first_above: float = 0.0  # start of the first of them
    open: bool = False
    start: float = 0.0
    last_above: float = 0.0  # end of the last window over threshold
    peak: float = 0.0


@dataclass
class EventTracker:
    thresholds: dict[str, float]  # class -> threshold (defaults)
    min_windows: int = 1
    cooldown: float = 2.0
    per_camera: dict[str, dict[str, float]] = field(default_factory=dict)
    per_camera_windows: dict[str, dict[str, int]] = field(default_factory=dict)  # camera -> event -> its own min_windows
    _tracks: dict[tuple[str, str], _Track] = field(default_factory=dict)

    def threshold(self, camera: str, event: str) -> float:
        return self.per_camera.get(camera, {}).get(event, self.thresholds.get(event, 0.5))

    def windows(self, camera: str, event: str) -> int:
        return self.per_camera_windows.get(camera, {}).get(event, self.min_windows)

    def configure(self, camera: str, thresholds: dict[str, float], windows: dict[str, int]) -> None:
        """A camera's own thresholds and min_windows (event -> value, over the defaults), replacing what it had."""
        self.per_camera[camera] = dict(thresholds)
        self.per_camera_windows[camera] = dict(windows)

    def default_threshold(self, camera: str, event: str, value: float) -> None:
        """`value` as the camera's threshold for `event`, unless the camera sets its own."""
        self.per_camera.setdefault(camera, {}).setdefault(event, value)

    def forget(self, camera: str) -> None:
        """A removed camera's own settings."""
        self.per_camera.pop(camera, None)
        self.per_camera_windows.pop(camera, None)

    def update(self, camera: str, start: float, end: float, scores: dict[str, float]) -> list[Transition]:
        out: list[Transition] = []
        for event, score in scores.items():
            tr = self._tracks.setdefault((camera, event), _Track())
            if score >= self.threshold(camera, event):
                if tr.above == 0:
                    tr.first_above = start
                tr.above += 1
                tr.last_above = end
                if tr.open:
                    tr.peak = max(tr.peak, score)
                elif tr.above >= self.windows(camera, event):
                    tr.open, tr.start, tr.peak = True, tr.first_above, score
                    out.append(Transition(camera, event, "start", score, tr.start, end))
            else:
                tr.above = 0
                if tr.open and end - tr.last_above >= self.cooldown:
                    tr.open = False
                    out.append(Transition(camera, event, "end", tr.peak, tr.start, tr.last_above, tr.last_above - tr.start))
        return out

    def close_all(self, camera: str | None = None, reason: str | None = None) -> list[Transition]:
        """End every open event (a source that ended, an engine restart, or shutdown); `reason` says which."""
        out = []
        for (cam, event), tr in self._tracks.items():
            if tr.open and (camera is None or cam == camera):
                tr.open, tr.above = False, 0
                out.append(Transition(cam, event, "end", tr.peak, tr.start, tr.last_above, tr.last_above - tr.start, reason))
        return out
