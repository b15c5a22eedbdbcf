"""The main stream beside a substream (streamer/ingest/mainstream.py) on its own `Timeline`: keyframe and
audio times as the detect stream would place them. Real files, real decoding."""

import math
import time

import numpy as np
import pytest

from streamer.ingest.mainstream import MainStream
from streamer.ingest.opening import SourceOptions
from tests.media import write_av_with_jump, write_video_with_pts

RATE = 16000


def _read(path, want_audio=False):
    """The whole main stream read as fast as it decodes (the detect stream already at its end)."""
    main = MainStream(str(path), SourceOptions(), RATE, want_audio=want_audio, offset=0.0, wall0=time.monotonic(),
                      max_width=0, paced=False, camera="c")
    main.wait_for(math.inf)
    main.close()
    assert main.error is None
    return main


def test_a_long_keyframe_interval_is_not_a_jump(tmp_path):
    """12 s between keyframes (more than the timeline's MAX_GAP_S): each keyframe keeps its own time."""
    path = write_video_with_pts(tmp_path / "gop.mp4", list(range(5 * 30)), fps=5, gop=60)
    main = _read(path)
    assert [kt for kt, _ in main.keyframes] == pytest.approx([0.0, 12.0, 24.0])
    assert [float(rgb.mean()) for _, rgb in main.keyframes] == pytest.approx([0, 60, 120], abs=3)  # frames 0, 60, 120
    assert main.timeline.discontinuities == 0
    assert main.progress == pytest.approx(29.8)


def test_timestamps_that_jump_are_rebased_like_the_detect_streams(tmp_path):
    """Video and audio jump 60 s forward at 2 s: both continue where they were, as on the detect stream."""
    path = write_av_with_jump(tmp_path / "jump.mkv", seconds=4, jump_at=2.0, jump_s=60.0)
    main = _read(path, want_audio=True)
    assert main.timeline.discontinuities == 1
    assert [kt for kt, _ in main.keyframes] == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)
    assert [float(rgb.mean()) for _, rgb in main.keyframes] == pytest.approx([0, 100, 200, 50], abs=3)  # frames 0, 25, 50, 75
    audio = main.drain_audio()
    ts = np.array([t for t, _ in audio])
    ends = ts + np.array([len(pcm) for _, pcm in audio]) / RATE
    np.testing.assert_allclose(ts[1:], ends[:-1], atol=2e-3)  # contiguous: no 60 s hole
    assert ts[0] == pytest.approx(0.0, abs=1e-3) and ends[-1] == pytest.approx(4.0, abs=0.01)
