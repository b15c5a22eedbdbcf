"""The review timeline on a running pipeline with its HTTP server: loudness changed live through the API and
through the config file (what SIGHUP runs), /api/cameras/{id}/history, and the status page's lanes in a real
headless Chromium (a looping clap clip with audio; a street without audio whose normality is learned)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.browser import Chromium
from tests.media import make_clip, make_street
from tests.test_http import TOKEN, get_json, request, serving, wait_until

HOP = 0.5
CONFIG = """\
cameras:
  - id: yard
    url: {yard}
    loop: true
  - id: street   # no audio: no level
    url: {street}
    loop: true
redis: {{url: '{redis}', spool_dir: '{spool}'}}
detect: {{cooldown: 1.0}}
anomaly: {{dir: '{normality}', learn_minutes: 0.09}}   # 11 windows, then anomaly scores
engine: {{backend: onnxruntime-cpu}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    yard = make_clip(d / "yard.mp4", seconds=6, clap_at=[2.0])
    street = make_street(d / "street.mp4", seconds=8)
    config = CONFIG.replace("{yard}", str(yard)).replace("{street}", str(street)).replace("{normality}", str(d / "normality"))
    ends: dict[str, float] = {}
    with serving(d, config, lambda r: ends.__setitem__(r.window.camera, r.window.end)) as served:
        wait_until(lambda: served.pipe.running and len(ends) == 2, 30, "windows from both cameras")
        served.ends = ends
        yield served


def loud_alert(served, state: str, after: str = "") -> dict | None:
    found = get_json(f"{served.base}/api/alerts?camera=yard&event=loud&limit=5")
    return next((a for a in found if a["state"] == state and a["id"] > after), None)


def test_loudness_changes_live_through_the_api_and_the_file_without_a_restart(served):
    base = served.base
    pid = get_json(f"{base}/api/cameras/yard")["pid"]
    assert get_json(f"{base}/api/cameras/yard")["loudness"] is None  # off by default
    before = served.ends["yard"]
    t0 = time.monotonic()
    status, _h, body = request(f"{base}/api/cameras/yard", "PATCH", {"loudness": {"threshold_dbfs": -60}})  # every window
    after = served.ends["yard"]
    assert status == 200 and json.loads(body)["restarted"] is False, body
    start = wait_until(lambda: loud_alert(served, "start"), 5, "a loud start after the PATCH")
    applied = time.monotonic() - t0
    assert before < start["end"] <= after + HOP  # the first window judged after the change opened it
    assert start["level"]["rms_dbfs"] >= -60 and len(start["top"]) == 5 and set(start["evidence"]) == {"keyframe", "audio"}
    cam = get_json(f"{base}/api/cameras/yard")
    assert cam["pid"] == pid and cam["loudness"] == {"threshold_dbfs": -60.0, "min_windows": 1}
    assert cam["level"]["rms_dbfs"] < 0 and get_json(f"{base}/api/cameras/street")["level"] is None
    assert yaml.safe_load(served.path.read_text())["cameras"][0]["loudness"] == {"threshold_dbfs": -60.0, "min_windows": 1}

    # the file edited, then what SIGHUP runs: the change applies live too, and the event ends by its cooldown
    served.path.write_text(served.path.read_text().replace("threshold_dbfs: -60.0", "threshold_dbfs: -5.0"))
    done = served.fleet.reload()
    assert done["changed"] == ["yard"] and served.pipe.tracker.threshold("yard", "loud") == -5.0
    end = wait_until(lambda: loud_alert(served, "end", start["id"]), 5, "the loud event ending after the SIGHUP change")
    assert "reason" not in end and get_json(f"{base}/api/cameras/yard")["pid"] == pid
    print(f"\nloudness PATCH: start alert {applied:.2f} s after the request, window end {start['end'] - after:+.1f} s from the newest window at the change")

    status, _h, body = request(f"{base}/api/cameras/yard", "PATCH", {"loudness": {"threshold_dbfs": 3}})
    assert status == 422 and json.loads(body)["errors"][0]["path"] == "loudness.threshold_dbfs"
    assert request(f"{base}/api/cameras/nope/history")[0] == 404
    assert request(f"{base}/api/cameras/yard/history?since=soon")[0] == 422
    status, _h, body = request(f"{base}/api/cameras/yard", "PATCH", {"loudness": None})
    assert status == 200 and "loudness" not in yaml.safe_load(served.path.read_text())["cameras"][0]


def test_history_api_serves_lanes_with_alerts(served):
    h = get_json(f"{served.base}/api/cameras/yard/history")
    assert h["minutes"] == 10 and len(h["t"]) >= 3 and h["t"] == sorted(h["t"])
    assert "loud" not in h["lanes"] and len(h["lanes"]) >= 3 and all(len(v) == len(h["t"]) for v in h["lanes"].values())
    assert all(v is not None and v < -30 for v in h["level"]) and max(h["peak"]) > max(h["level"]), h["level"]
    assert {a["event"] for a in h["alerts"]} >= {"loud"} and all("_t" not in a for a in h["alerts"])
    street = get_json(f"{served.base}/api/cameras/street/history")
    assert set(street["level"]) == {None}  # no audio: null
    newer = get_json(f"{served.base}/api/cameras/yard/history?since={h['t'][-1]}")
    assert all(t > h["t"][-1] for t in newer["t"])


def test_timeline_in_headless_chromium_moves_and_marks_a_new_alert_on_its_lane_within_2s(served, tmp_path):
    subscriber = served.client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("streamer:alerts:yard")
    wait_until(lambda: served.pipe.history.view("street")["anomaly"], 20, "the street's normality learned")
    with Chromium(tmp_path, height=1100) as browser:
        browser.navigate(f"{served.base}/#token={TOKEN}")
        browser.wait_for("document.getElementById('conn').textContent === 'live'", timeout=15)
        lane = "document.querySelector('[data-timeline=\"{}\"] [data-lane=\"{}\"] path').getAttribute('d')"
        browser.wait_for(f"{lane.format('yard', 'level')}.length > 100 && {lane.format('street', 'anomaly')}.length > 20", timeout=10)
        lanes = browser.eval("[...document.querySelectorAll('[data-timeline=\"yard\"] .lane')].map(g => g.dataset.lane)")
        assert len(lanes) >= 5 and lanes[-2:] == ["anomaly", "level"], lanes
        assert browser.eval(lane.format("street", "level")) == ""  # no audio: no level trace
        last_t = float(browser.eval("document.querySelector('[data-timeline=\"yard\"] svg').dataset.lastT"))
        browser.wait_for(f"Number(document.querySelector('[data-timeline=\"yard\"] svg').dataset.lastT) > {last_t}", timeout=3)

        status, _h, _b = request(f"{served.base}/api/cameras/yard", "PATCH", {"loudness": {"threshold_dbfs": -60}})
        assert status == 200
        msg, deadline = None, time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            m = subscriber.get_message(timeout=0.5)
            msg = m if m and json.loads(m["data"])["event"] == "loud" else None
        assert msg is not None, "no loud alert"
        t_published = time.monotonic()
        alert = json.loads(msg["data"])
        mark = f"document.querySelector('[data-timeline=\"yard\"] circle[data-alert-id=\"{alert['id']}\"]')"
        browser.wait_for(f"{mark} && {mark}.dataset.lane === 'level'", timeout=2.0)
        on_page = time.monotonic() - t_published
        browser.eval(f"{mark}.dispatchEvent(new MouseEvent('click', {{bubbles: true}}))")
        browser.wait_for("document.querySelector('#review img').dataset.loaded === '1' && "
                         "document.querySelector('#review audio').dataset.loaded === '1'", timeout=5)
        assert alert["id"] == browser.eval("document.getElementById('review').dataset.alertId")
        browser.eval("document.getElementById('review').scrollIntoView()")
        shot = browser.screenshot(tmp_path / "timeline.png")
        print(f"\ntimeline screenshot: {shot} (alert marked {on_page * 1000:.0f} ms after it was published)")
    subscriber.close()
    request(f"{served.base}/api/cameras/yard", "PATCH", {"loudness": None})
