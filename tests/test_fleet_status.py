"""The status's rules that need no running pipeline: a camera's source state, and the span its rates
are over (the rest is read through the HTTP API in tests/test_http.py)."""

from __future__ import annotations

import pytest

from streamer.alerting import CameraStatus
from streamer.fleet_status import source_state
from streamer.outputs.stats import RATE_SPAN_S, ProcessCounts, Series, Stats


def status(process: str = "running", windows: int = 0) -> CameraStatus:
    return CameraStatus(process=process, pid=1, windows=windows, alerts=0, latencies=[], scores={}, last_alert=None,
                        level=None, loudness=None)


def test_a_source_is_down_up_reconnecting_or_starting():
    up = ProcessCounts(up={"c": 1.0})
    assert source_state(status("ended"), up, "c") == "down"  # its process ended, whatever the gauge says
    assert source_state(status("failed"), up, "c") == "down"
    assert source_state(status(), up, "c") == "up"
    assert source_state(status(), ProcessCounts(reconnects={"c": 1.0}), "c") == "reconnecting"
    assert source_state(status(windows=3), ProcessCounts(), "c") == "reconnecting"  # it delivered, and is not up now
    assert source_state(status(), ProcessCounts(), "c") == "starting"


def test_rates_are_over_the_last_span_or_since_the_start_when_younger():
    s = Series(("windows",), now=100.0)
    for i in range(1, 5):  # 2 a second
        s.add(100.0 + i / 2, windows=1)
    assert s.rates(102.0)["windows"] == pytest.approx(2.0)  # younger than the span: since the start
    for i in range(5, 40):  # 4 a second from 102.5 s to 119.5 s
        s.add(100.0 + i / 2, windows=2)
    assert s.rates(119.5)["windows"] == pytest.approx(4.0)  # over the last RATE_SPAN_S alone
    assert s.rates(119.5 + RATE_SPAN_S / 2)["windows"] == pytest.approx(2.0)  # nothing new for half the span: half the rate
    assert s.rates(119.5 + RATE_SPAN_S)["windows"] == 0.0  # nothing for a whole span: none


def test_frames_come_with_the_windows_and_batches_from_their_start_times():
    st = Stats()
    st.camera("c")
    st.window("c", 0.01, frames=(11, 16), batch=1.0)
    st.window("c", 0.01, frames=(11, 32), batch=1.0)  # the same engine call
    st.window("c", 0.01, frames=(12, 8), batch=2.0)  # a respawned ingest process counts from 0
    st.window("c", 0.01, frames=(11, 30), batch=2.0)  # a late window of the old process adds nothing
    c = st.cams["c"]
    assert (c.windows, c.frames, st.windows, st.engine.totals["calls"]) == (4, 40, 4, 2)
    rates = st.engine.rates()
    assert rates["windows"] / rates["calls"] == pytest.approx(2.0)  # the mean batch
    st.alert("c", "fight")
    assert (c.alerts, st.alerts) == (1, 1)
    st.drop("c")
    assert "c" not in st.cams and st.windows == 4  # the engine's totals keep a removed camera's windows
