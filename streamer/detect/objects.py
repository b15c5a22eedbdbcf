"""Moving objects of a static camera and what they do: the features the normality model compares.

Per sampled frame (grey, at most HEIGHT rows), against the previous sampled frame: the pixels that
changed more than the noise does (frame difference, cleaned by morphology) grouped into connected
components; each component large enough is an object. Its motion comes from dense optical flow (OpenCV
DIS, ultrafast preset, at half size) inside it. An object is described by where it is, how big it is,
how fast and in which direction it moves, and how much of its box moved:

    x, y          box centre, fraction of the frame width / height
    w, h          box size, fraction of the frame height
    vx, vy        mean velocity inside the object, frame heights per second
    speed, p90    median and 90th-percentile speed inside the object, frame heights per second
    fill          changed pixels / box area

Velocities are divided by the time between the two frames, so they do not depend on the frame rate or
on which frames the windows sampled. Runs in the ingest process, on the frames the windows sample.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from streamer.detect.normality import FEATURES  # defined there: the main process compares them without cv2

HEIGHT = 120  # rows objects are found at (smaller frames are used as they are): chosen over 240 by the label-free checks, at a quarter of the cost
MIN_DIFF = 8  # grey levels: a pixel changed when its difference is above this and above NOISE_K noise
NOISE_K = 5.0
MIN_AREA = 0.0008  # fraction of the frame: smaller components are noise
MAX_GAP_S = 0.5  # frames further apart than this give no flow (a gap in the stream)
OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))  # removes specks
CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))  # joins the parts of one body
LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


def detect_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the frames objects are found in: at most HEIGHT rows, even sizes."""
    h = min(HEIGHT, height)
    w = max(2, int(round(width * h / max(height, 1) / 2)) * 2)
    return w, max(2, h // 2 * 2)


class ObjectFinder:
    """Feed frames in time order; `add` returns the objects of each frame, float32 [n, len(FEATURES)]."""

    def __init__(self) -> None:
        cv2.setNumThreads(1)  # one ingest process per camera: no thread pool of its own
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._prev: tuple[float, np.ndarray] | None = None
        self._sws = None

    def add_frame(self, t: float, frame) -> np.ndarray:
        """A decoded av.VideoFrame at source time t (s)."""
        w, h = detect_size(frame.width, frame.height)
        if (w, h) == (frame.width, frame.height) and frame.format.name in LUMA_FIRST:
            plane = frame.planes[0]  # the luma plane is the grey picture
            grey = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, :w].copy()
        else:  # swscale's area average: 0.3 ms from 1080p
            from av.video.reformatter import VideoReformatter

            if self._sws is None:
                self._sws = VideoReformatter()
            grey = self._sws.reformat(frame, width=w, height=h, format="gray", interpolation="AREA").to_ndarray()
        return self.add(t, grey)

    def add(self, t: float, grey: np.ndarray) -> np.ndarray:
        """A grey frame (uint8 [H, W]) at source time t (s)."""
        grey = np.ascontiguousarray(grey)
        prev, self._prev = self._prev, (t, grey)
        if prev is None or not 0 < t - prev[0] <= MAX_GAP_S or prev[1].shape != grey.shape:
            return np.zeros((0, len(FEATURES)), np.float32)
        return objects(changed(prev[1], grey), lambda: self.flow(prev[1], grey, t - prev[0]))

    def flow(self, a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        """Dense flow from a to b in frame heights per second: at half size (the ultrafast preset works
        on blocks anyway), back to full size."""
        h, w = a.shape
        half = [cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for g in (a, b)]
        flow = cv2.resize(self._flow.calc(half[0], half[1], None), (w, h), interpolation=cv2.INTER_LINEAR)
        return flow * (2.0 / (dt * h))


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 mask of the pixels that changed between two grey frames more than the noise does."""
    d = cv2.absdiff(cv2.GaussianBlur(a, (3, 3), 0), cv2.GaussianBlur(b, (3, 3), 0))
    cum = np.cumsum(cv2.calcHist([d], [0], None, [256], [0, 256]).ravel())
    noise = 1.4826 * float(np.searchsorted(cum, cum[-1] / 2))  # the median: most of the picture does not change
    mask = (d > max(MIN_DIFF, NOISE_K * noise)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, OPEN)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, CLOSE)


def objects(mask: np.ndarray, motion: Callable[[], np.ndarray]) -> np.ndarray:
    """Objects of a change mask [H, W] -> float32 [n, len(FEATURES)]. `motion()` gives the flow [H, W, 2] in
    heights per second; it is only computed when something moved."""
    h, w = mask.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= MIN_AREA * h * w)
    keep = keep[keep > 0]  # 0: the background
    if not len(keep):
        return np.zeros((0, len(FEATURES)), np.float32)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    f = motion()[ys, xs]
    speed = np.sqrt(f[:, 0] ** 2 + f[:, 1] ** 2)
    count = np.bincount(lab, minlength=n)[keep]
    vx, vy = (np.bincount(lab, f[:, i], minlength=n)[keep] / count for i in (0, 1))
    # per-object speed quantiles: pixels sorted by object, then by speed
    ranked = speed[np.lexsort((speed, lab))]
    first = np.cumsum(np.bincount(lab, minlength=n)) - np.bincount(lab, minlength=n)
    p50, p90 = (ranked[first[keep] + ((count - 1) * q).astype(np.int64)] for q in (0.5, 0.9))
    x0, y0, bw, bh, area = (stats[keep, i] for i in range(5))
    return np.c_[(x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / h, bh / h, vx, vy, p50, p90, area / (bw * bh)].astype(np.float32)
