"""The source timeline (streamer/ingest/timeline.py): rebasing, frames without timestamps, discontinuities,
pacing. Decoded media through the whole reader is covered in tests/test_ingest.py."""

from __future__ import annotations

import threading
import time

import pytest

from streamer.ingest.timeline import MAX_BACKWARD_S, MAX_GAP_S, Timeline


def test_rebased_to_the_first_timestamp_plus_the_offset():
    tl = Timeline("cam", offset=100.0)
    assert tl.peek(5.0) is None  # nothing placed yet
    assert tl.place("video", 5.0, 0.04) == pytest.approx(100.0)
    assert tl.place("audio", 5.02, 0.02) == pytest.approx(100.02)
    assert tl.place("video", 5.04, 0.04) == pytest.approx(100.04)
    assert tl.peek(6.0) == pytest.approx(101.0)


def test_a_frame_without_timestamp_continues_from_the_last_of_its_kind():
    tl = Timeline("cam")
    tl.place("video", 1.0, 0.04)
    assert tl.place("video", None, 0.04) == pytest.approx(0.04)
    assert tl.place("video", None, 0.04) == pytest.approx(0.08)
    assert tl.place("audio", None, 0.02) == pytest.approx(0.0)  # no audio yet: the first timestamp


@pytest.mark.parametrize("jump", [MAX_GAP_S + 5.0, -(MAX_BACKWARD_S + 2.0)])
def test_a_jump_beyond_the_limits_continues_the_timeline_one_step_on(jump):
    tl = Timeline("cam")
    tl.place("video", 0.0, 0.04)
    tl.place("video", 0.04, 0.04)
    assert tl.place("video", 0.04 + jump, 0.04) == pytest.approx(0.08)
    assert tl.place("video", 0.08 + jump, 0.04) == pytest.approx(0.12)  # later frames follow the new clock
    assert tl.discontinuities == 1


def test_a_shorter_gap_stays_a_gap():
    tl = Timeline("cam")
    tl.place("video", 0.0, 0.04)
    assert tl.place("video", 3.0, 0.04) == pytest.approx(3.0)
    assert tl.discontinuities == 0


def test_a_paced_timeline_waits_until_each_time_is_due():
    t0 = time.monotonic()
    tl = Timeline("cam", wall0=t0, realtime=True)
    tl.pace(0.3)
    assert time.monotonic() - t0 >= 0.3
    free = Timeline("cam", wall0=t0 + 60, realtime=False)
    t1 = time.monotonic()
    free.pace(0.3)  # not paced: no wait however early
    assert time.monotonic() - t1 < 30  # paced, it would wait ~60 s


def test_pacing_stops_at_once_when_told_to():
    stop = threading.Event()
    tl = Timeline("cam", wall0=time.monotonic(), realtime=True, stop=stop)
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    assert tl.pace(60.0) is False  # would wait 60 s
    assert time.monotonic() - t0 < 5
    assert tl.pace(0.0) is False


def test_audio_back_after_a_long_silence_beside_video_is_a_gap_not_a_jump():
    """A camera that sends no audio for 15 s while its video goes on: the audio resumes where it belongs,
    and neither stream's timing is moved (a shared correction made each kind undo the other's, frame after frame)."""
    tl = Timeline("cam")
    tl.place("audio", 0.0, 0.02)
    t = 0.0
    while t < 20.0:
        tl.place("video", t, 0.04)
        t += 0.04
    assert tl.place("audio", 15.0, 0.02) == pytest.approx(15.0)
    assert tl.place("video", 20.0, 0.04) == pytest.approx(20.0)
    assert tl.place("audio", 15.02, 0.02) == pytest.approx(15.02)
    assert tl.discontinuities == 0


def test_one_kinds_clock_reset_moves_only_that_kind():
    tl = Timeline("cam")
    for i in range(50):
        tl.place("video", i * 0.04, 0.04)
        tl.place("audio", i * 0.04, 0.04)
    assert tl.place("audio", 0.0, 0.04) == pytest.approx(2.0)  # audio's clock went back 2 s: continued one step on
    assert tl.place("video", 2.0, 0.04) == pytest.approx(2.0)  # video untouched
    assert tl.place("audio", 0.04, 0.04) == pytest.approx(2.04)
    assert tl.place("video", 2.04, 0.04) == pytest.approx(2.04)
    assert tl.discontinuities == 1
