"""Engine feeds as live cameras send them, for the engine benchmarks.

`CameraFeeds(windows, batch)`: each call of `next()` is one batch of `batch` cameras, camera j showing the
clip's windows from offset j * len(windows) / batch on, one window further per batch. A camera's consecutive
windows therefore share frames as a live stream's do (the engine computes a shared pose frame once), and
every frame carries its camera, its lap through the clip and its CameraFeeds in one pixel, so no batch
repeats content the engine saw before from another camera, an earlier lap or another run (which its pose
cache would not compute again).
"""

from __future__ import annotations

import numpy as np

from engines.feed import windows_feed
from engines.spec import INPUT_VIDEO


class CameraFeeds:
    made = 0  # instances so far: each marks its frames with its own number

    def __init__(self, windows: list, batch: int) -> None:
        self.windows, self.batch, self.step = windows, batch, 0
        CameraFeeds.made += 1
        self.number = CameraFeeds.made % 256

    def next(self) -> dict[str, np.ndarray]:
        n = len(self.windows)
        at = [self.step + j * n // self.batch for j in range(self.batch)]
        feed = windows_feed([self.windows[i % n] for i in at])
        video = feed[INPUT_VIDEO]
        for j, i in enumerate(at):
            video[j, :, 0, 0, :] = (j, (i // n) % 256, self.number)  # camera, lap and feeds, in the top-left pixel
        self.step += 1
        return feed
