"""The status's rules that need no running pipeline: a camera's source state, and the interval its
rates are over (the rest is read through the HTTP API in tests/test_http.py)."""

from __future__ import annotations

from streamer.alerting import CameraStatus
from streamer.fleet_status import MIN_INTERVAL_S, Counts, FleetStatus, source_state


def status(process: str = "running", windows: int = 0) -> CameraStatus:
    return CameraStatus(process=process, pid=1, windows=windows, alerts=0, latencies=[], scores={}, last_alert=None,
                        level=None, loudness=None)


def test_a_source_is_down_up_reconnecting_or_starting():
    up = Counts(up={"c": 1.0})
    assert source_state(status("ended"), up, "c") == "down"  # its process ended, whatever the gauge says
    assert source_state(status("failed"), up, "c") == "down"
    assert source_state(status(), up, "c") == "up"
    assert source_state(status(), Counts(reconnects={"c": 1.0}), "c") == "reconnecting"
    assert source_state(status(windows=3), Counts(), "c") == "reconnecting"  # it delivered, and is not up now
    assert source_state(status(), Counts(), "c") == "starting"


def test_rates_are_over_the_interval_since_the_last_snapshot_at_least_half_a_second_old():
    fs = FleetStatus(pipe=None)
    fs.started = 100.0
    first = Counts(windows=10)
    assert fs._base(102.0, first) == (2.0, Counts())  # the first: since the start
    dt, base = fs._base(102.0 + MIN_INTERVAL_S / 2, Counts(windows=11))
    assert (dt, base) == (2.0 + MIN_INTERVAL_S / 2, Counts())  # too soon after it: since the start again
    assert fs._base(103.0, Counts(windows=12)) == (1.0, first)  # since the first (the one too soon was not kept)
