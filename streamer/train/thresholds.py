"""Per-class thresholds as false alerts per camera-hour on normal footage, counted the way the live
event tracker counts them (streamer/detect/events.py): `min_windows` consecutive windows at or over the
threshold open an event, `cooldown` seconds under it close it."""

from __future__ import annotations

import numpy as np

from streamer.train.data import HOP_SECONDS

MIN_WINDOWS = 1  # the live defaults (detect.min_windows, detect.cooldown)
COOLDOWN = 2.0
FLOOR = 0.5  # never alert below the classifier's own decision boundary
CEILING = 0.999999


def count_events(scores: np.ndarray, thr: float, min_windows: int = MIN_WINDOWS, cooldown: float = COOLDOWN,
                 hop: float = HOP_SECONDS) -> int:
    """Events the tracker opens on one clip's window scores (time order)."""
    events, run, below, open_ = 0, 0, 0.0, False
    for s in scores:
        if s >= thr:
            run += 1
            below = 0.0
            if not open_ and run >= min_windows:
                open_, events = True, events + 1
        else:
            run = 0
            if open_:
                below += hop
                if below >= cooldown:
                    open_ = False
    return events


def footage_hours(clips: list[np.ndarray], window_seconds: float = 1.0, hop: float = HOP_SECONDS) -> float:
    return sum((len(c) - 1) * hop + window_seconds for c in clips if len(c)) / 3600.0


def alerts_per_hour(clips: list[np.ndarray], thr: float) -> float:
    hours = footage_hours(clips)
    return sum(count_events(c, thr) for c in clips) / hours if hours else 0.0


def threshold_for_rate(clips: list[np.ndarray], per_hour: float, floor: float = FLOOR) -> float:
    """The lowest threshold (>= floor) at which `clips` (normal footage, one score array per clip) give
    at most `per_hour` false alerts per hour; found by bisection on the sorted window scores."""
    if not clips or footage_hours(clips) == 0:
        return floor
    cand = np.unique(np.concatenate(clips))
    cand = np.unique(np.clip(np.concatenate([cand, np.nextafter(cand, 2.0)]), floor, CEILING))
    lo, hi = 0, len(cand) - 1
    if alerts_per_hour(clips, float(cand[hi])) > per_hour:
        return float(cand[hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if alerts_per_hour(clips, float(cand[mid])) <= per_hour:
            hi = mid
        else:
            lo = mid + 1
    return float(cand[lo])


def clip_recall(clips: list[np.ndarray], thr: float) -> float:
    """Share of positive clips with at least one event at `thr`."""
    return float(np.mean([count_events(c, thr) > 0 for c in clips])) if clips else float("nan")
