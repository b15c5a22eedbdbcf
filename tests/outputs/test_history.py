"""The timeline's per-camera history: bounded rows in a ring, lanes of the top classes, null where no audio."""

import numpy as np

from streamer.outputs.history import History

CLASSES = ["a", "b", "c", "d", "e"]


def scores(**kw):
    return np.array([kw.get(c, 0.0) for c in CLASSES], np.float32)


def test_rows_are_bounded_and_served_oldest_first():
    h = History(CLASSES, minutes=0.1, hop=0.5)  # 12 rows
    for i in range(30):
        h.add("cam", 1000.0 + i / 2, scores(a=i / 100), None, (-30.0 - i, -10.0))
    before = h.nbytes("cam")
    assert h.rows == 12 and before == 12 * h.row_bytes
    for i in range(30, 300):
        h.add("cam", 1000.0 + i / 2, scores(a=0.1), None, (-30.0, -10.0))
    assert h.nbytes("cam") == before  # a ring: memory stays flat however long it runs
    v = h.view("cam")
    assert v["t"] == [1000.0 + i / 2 for i in range(288, 300)]
    assert v["level"] == [-30.0] * 12 and v["anomaly"] is None


def test_lanes_are_the_top_classes_and_every_alerted_class_and_no_audio_is_null():
    h = History(CLASSES, minutes=1, hop=0.5)
    h.add("cam", 10.0, scores(a=0.2, b=0.9, c=0.5, d=0.4), 3.0, None)
    h.add("cam", 10.5, scores(a=0.3, b=0.1, c=0.5, d=0.1), None, (-42.25, -20.0))
    h.alert("cam", {"id": "x", "event": "e", "state": "start", "_t": 10.5})
    v = h.view("cam")
    assert list(v["lanes"]) == ["b", "c", "d", "e"]  # three by their highest score, and the alerted class
    assert v["lanes"]["b"] == [0.9, 0.1] and v["anomaly"] == [3.0, None]
    assert v["level"] == [None, -42.2] and v["peak"] == [None, -20.0]  # no audio: null, never -inf
    assert [a["id"] for a in v["alerts"]] == ["x"]
    later = h.view("cam", since=10.0, alerts=False)
    assert later["t"] == [10.5] and later["alerts"] == [] and list(later["lanes"]) == list(v["lanes"])
    assert h.view("other")["t"] == []


def test_a_served_time_is_a_cursor_that_skips_its_own_row():
    h = History(CLASSES, minutes=1, hop=0.5)
    for t in (1796412986.8064, 1796412987.2981):  # times finer than the ms served
        h.add("cam", t, scores(), None, None)
    first = h.view("cam")["t"][0]
    assert h.view("cam", since=first)["t"] == [1796412987.298]
