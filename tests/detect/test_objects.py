"""Moving objects in real decoded frames (tests/media.py make_street): where they are and how fast."""

from __future__ import annotations

import av
import numpy as np

from streamer.detect.objects import FEATURES, ObjectFinder, detect_size
from tests.media import make_street

X, Y, SPEED = FEATURES.index("x"), FEATURES.index("y"), FEATURES.index("speed")


def found(path, step: int = 1) -> list[np.ndarray]:
    finder = ObjectFinder()
    with av.open(str(path)) as c:
        return [finder.add_frame(float(f.time), f) for i, f in enumerate(c.decode(video=0)) if i % step == 0]


def test_walkers_move_at_walking_pace_and_the_fast_one_faster(tmp_path):
    walk = found(make_street(tmp_path / "walk.mp4", seconds=3, walkers=2, seed=1))
    assert len(walk[0]) == 0  # the first frame has nothing to compare with
    rows = np.concatenate(walk[1:])
    assert len(rows) >= 20 and 0.4 <= np.median(rows[:, Y]) <= 0.8  # on the street's band
    assert 0.05 <= np.median(rows[:, SPEED]) <= 0.15  # 0.1 picture heights per second
    # the same walkers sampled at a third of the frame rate: the same speed (divided by the time between frames)
    slow = np.concatenate(found(tmp_path / "walk.mp4", step=3)[1:])
    assert abs(np.median(slow[:, SPEED]) - np.median(rows[:, SPEED])) < 0.03
    fast = np.concatenate(found(make_street(tmp_path / "fast.mp4", seconds=3, walkers=0, fast_at=(0.0, 3.0)))[1:])
    assert len(fast) >= 10 and np.median(fast[:, SPEED]) > 3 * np.median(rows[:, SPEED])


def test_detect_size_caps_the_rows():
    assert detect_size(1920, 1080) == (214, 120)
    assert detect_size(360, 240) == (180, 120)
    assert detect_size(160, 96) == (160, 96)
