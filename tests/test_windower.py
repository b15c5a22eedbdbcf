"""The windower on synthetic timestamped inputs: sampling, alignment, masks, stalls, flush."""

import numpy as np
import pytest

from streamer.ingest.windower import Geometry, Windower

GEO = Geometry(frames=4, height=2, width=2, seconds=1.0, hop=0.5, sample_rate=100)


def frame_of(t):
    return np.full((2, 2, 3), int(t * 10) % 256, np.uint8)  # the "frame" is its own RGB image


def make(**kw):
    w = Windower("cam", GEO, lambda f: f, **{"has_video": True, "has_audio": True, **kw})
    return w


def feed(w, seconds, fps=10, audio=True):
    out = []
    for i in range(int(seconds * fps)):
        t = i / fps
        w.add_video(t, frame_of(t))
        if audio:
            w.add_audio(t, np.full(100 // fps, t / 10, np.float32))  # full scale is 1
        out += list(w.ready())
    return out


def test_windows_start_on_the_hop_and_sample_nearest_frames():
    ws = feed(make(), 3.0)
    assert [w.start for w in ws] == [0.0, 0.5, 1.0, 1.5, 2.0]
    # sample times 0.125, 0.375, 0.625, 0.875 -> nearest frames at 0.1, 0.4, 0.6, 0.9 (ties go to the later)
    assert [int(v[0, 0, 0]) for v in ws[0].video] == [1, 4, 6, 9]
    assert ws[1].video[0, 0, 0, 0] == 6  # 0.625
    assert all(w.video_mask == 1 and w.audio_mask == 1 for w in ws)


def test_audio_is_placed_by_timestamp():
    ws = feed(make(), 2.0)
    w = ws[1]  # [0.5, 1.5)
    assert w.audio.shape == (100,)
    assert w.audio[0] == pytest.approx(0.05) and w.audio[-1] == pytest.approx(0.14)


def test_audio_gap_is_silence_and_keeps_alignment():
    w = make(has_video=False)
    w.add_audio(0.0, np.ones(50, np.float32))
    w.add_audio(1.0, np.ones(150, np.float32))  # 0.5 s gap
    ws = list(w.ready())
    assert ws[0].audio[:50].sum() == 50 and ws[0].audio[50:].sum() == 0
    assert ws[2].start == 1.0 and ws[2].audio.sum() == 100


def test_frames_converted_once_each():
    w = make()
    feed(w, 5.0)
    # 4 samples per window, windows overlap by half: each new hop needs 2 new sample times
    assert w.frames_converted <= 2 * 10 + 4


def test_stalled_audio_does_not_hold_video_back():
    w = make()
    w.add_audio(0.0, np.zeros(10, np.float32))
    ws = feed(w, 4.0, audio=False)
    assert ws, "video windows must flow while audio is stalled"
    assert ws[-1].audio_mask == 0 and ws[-1].video_mask == 1


def test_video_only_source_has_audio_mask_zero():
    ws = feed(make(has_audio=False), 2.0, audio=False)
    assert ws and all(w.audio_mask == 0 and not w.audio.any() for w in ws)


def test_flush_pads_a_short_clip_to_one_window():
    w = make()
    for i in range(4):  # 0.4 s of content
        w.add_video(i / 10, frame_of(i / 10))
        w.add_audio(i / 10, np.ones(10, np.float32))
    assert list(w.ready()) == []
    ws = list(w.flush())
    assert len(ws) == 1 and ws[0].video_mask == 1 and ws[0].audio_mask == 1
    assert ws[0].audio[:40].all() and not ws[0].audio[40:].any()


def test_out_of_order_frame_is_ignored():
    w = make(has_audio=False)
    w.add_video(0.0, frame_of(0.0))
    w.add_video(0.2, frame_of(0.2))
    w.add_video(0.1, frame_of(0.1))  # late duplicate
    assert w._video_t == 0.2


def test_needs_a_modality():
    with pytest.raises(ValueError, match="video or audio"):
        Windower("cam", GEO, lambda f: f, has_video=False, has_audio=False)


def test_audio_past_full_scale_is_clipped():
    w = make(has_video=False)
    w.add_audio(0.0, np.full(100, 1.5, np.float32))
    w.add_audio(1.0, np.full(100, -2.0, np.float32))
    ws = list(w.ready())
    assert ws[0].audio.max() == 1.0 and ws[-1].audio.min() == -1.0


def test_wants_only_frames_near_a_sample_time():
    w = make()  # 1 s windows, hop 0.5, 4 frames: sample times 0.125, 0.375, 0.625, 0.875, ...
    assert w.wants(0.125, 0.01) and w.wants(0.38, 0.01) and w.wants(1.62, 0.01)
    assert not w.wants(0.25, 0.05) and not w.wants(0.5, 0.1)
    list(feed(w, 2.0))  # windows before 1.0 emitted: their sample times are wanted no more
    assert not w.wants(0.125, 0.01)


def test_each_window_carries_its_sound_level_and_none_without_audio():
    w = make(has_video=False)
    w.add_audio(0.0, np.full(100, 0.1, np.float32))  # -20 dBFS
    w.add_audio(1.0, np.zeros(150, np.float32))
    w.add_audio(2.5, np.concatenate([np.full(25, 0.5, np.float32), np.zeros(75, np.float32)]))
    ws = list(w.ready())
    assert [(x.rms_dbfs, x.peak_dbfs) for x in ws[:2]] == [(-20.0, -20.0), (-23.01, -20.0)]  # half of it at 0.1
    assert (ws[3].rms_dbfs, ws[3].peak_dbfs) == (-120.0, -120.0)  # digital silence: the floor, a number
    assert (ws[5].rms_dbfs, ws[5].peak_dbfs) == (-12.04, -6.02)
    video_only = feed(make(has_audio=False), 2.0, audio=False)
    assert video_only and all(x.rms_dbfs is None and x.peak_dbfs is None for x in video_only)
