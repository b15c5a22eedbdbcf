from streamer.detect.events import EventTracker


def run(tr, scores, cam="c"):
    out = []
    for i, s in enumerate(scores):
        out += tr.update(cam, i * 0.5, i * 0.5 + 1.0, {"fight": s})
    return out


def test_one_start_and_one_end_per_event():
    tr = EventTracker({"fight": 0.5}, min_windows=2, cooldown=1.0)
    out = run(tr, [0.1, 0.9, 0.8, 0.95, 0.2, 0.2, 0.2, 0.1])
    assert [(t.state, t.start) for t in out] == [("start", 0.5), ("end", 0.5)]
    assert out[1].score == 0.95 and out[1].duration == 2.0  # from 0.5 to the end of the last window over threshold (2.5)


def test_single_spike_below_min_windows_is_ignored():
    tr = EventTracker({"fight": 0.5}, min_windows=2, cooldown=1.0)
    assert run(tr, [0.9, 0.1, 0.9, 0.1]) == []


def test_per_camera_threshold_overrides_default():
    tr = EventTracker({"fight": 0.5}, per_camera={"noisy": {"fight": 0.99}})
    assert run(tr, [0.9], cam="noisy") == []
    assert [t.state for t in run(tr, [0.9], cam="quiet")] == ["start"]


def test_close_all_ends_open_events():
    tr = EventTracker({"fight": 0.5})
    run(tr, [0.9])
    assert [t.state for t in tr.close_all("c")] == ["end"]
    assert tr.close_all() == []


def test_an_event_of_its_own_min_windows_per_camera():
    tr = EventTracker({"fight": 0.5}, min_windows=1, per_camera_windows={"c": {"fight": 3}})
    assert run(tr, [0.9, 0.9]) == []
    assert [t.state for t in run(tr, [0.9])] == ["start"]  # the third window over threshold
    assert [t.state for t in run(tr, [0.9], cam="other")] == ["start"]  # other cameras: the default


def test_a_camera_configured_defaulted_and_forgotten():
    tr = EventTracker({"fight": 0.5, "anomaly": 0.5}, min_windows=1)
    tr.configure("c", {"fight": 0.9}, {"fight": 3})
    assert tr.threshold("c", "fight") == 0.9 and tr.windows("c", "fight") == 3
    tr.default_threshold("c", "anomaly", 7.0)  # the anomaly model's: the camera sets none
    tr.default_threshold("c", "fight", 0.1)  # the camera's own stays
    assert tr.threshold("c", "anomaly") == 7.0 and tr.threshold("c", "fight") == 0.9
    tr.configure("c", {}, {})  # replaces what it had: the defaults again
    assert tr.threshold("c", "fight") == 0.5 and tr.threshold("c", "anomaly") == 0.5 and tr.windows("c", "fight") == 1
    tr.configure("c", {"fight": 0.9}, {})
    tr.forget("c")
    assert tr.threshold("c", "fight") == 0.5 and "c" not in tr.per_camera and "c" not in tr.per_camera_windows
