"""The HTTP server on a running pipeline (real redis-server, generated clips, the default model on ONNX
Runtime): the API with its token, hot add and remove of cameras, the config file written back, the
status page in a real headless Chromium, and SIGHUP in `streamer run`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.config import CameraConfig, load_config
from streamer.errors import ConfigError
from streamer.fleet import Fleet
from streamer.pipeline import Pipeline
from streamer.web.server import HttpServer
from tests.browser import Chromium
from tests.conftest import RedisServer, free_port

TOKEN = "t0ken-for-the-tests"
CLS = load_spec(DEFAULT_MODEL).classes[-1]  # any class will do: threshold 0 = every window over it, 2 = none
HOP = 0.5


def request(url: str, method: str = "GET", body: object = None, token: str | None = TOKEN, timeout: float = 20):
    """(status, headers, body bytes); HTTP errors are answers too."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, **kw):
    status, _h, body = request(url, **kw)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def wait_until(fn, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


CONFIG = """\
# written by tests/test_http.py: comments and key order must survive API changes
cameras:
  - id: a          # stays all along
    url: {clip}
    loop: true
  - id: b
    url: {clip}
    loop: true
redis:
  url: {redis}
  spool_dir: {spool}
detect:
  thresholds: {{{cls}: 2.0}}   # never over: events are opened on purpose
anomaly: {{enabled: false}}
engine: {{backend: onnxruntime-cpu}}   # the same on a GPU host
http: {{media_roots: [{media}]}}   # the API may add the generated clips as cameras
"""


@contextmanager
def serving(d: Path, config: str, on_window: Any = None) -> Iterator[SimpleNamespace]:
    """A pipeline on its own thread with its HTTP server (token) on a free port, from `config` (a format
    string of the YAML, given `redis` and `spool`) written to d/streamer.yaml, against a redis-server of its
    own; the children's metrics in d/metrics (read by the status)."""
    old_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    (d / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d / "metrics")
    rs = RedisServer(d / "redis").start()
    path = d / "streamer.yaml"
    path.write_text(config.format(redis=rs.url, spool=d / "spool"))
    cfg = load_config(path)
    pipe = Pipeline(cfg, on_window=on_window)
    srv = HttpServer("127.0.0.1", 0, TOKEN).start()
    fleet = Fleet(pipe, path, cfg)
    srv.attach(fleet)
    thread = threading.Thread(target=pipe.run, name="test:pipeline", daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(base=f"http://127.0.0.1:{srv.port}", pipe=pipe, fleet=fleet, srv=srv, path=path, redis=rs,
                              client=rs.client(), dir=d)
    finally:
        pipe.stop()
        thread.join(timeout=10)
        pipe.close()
        srv.close()
        rs.stop()
        if old_env is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old_env


@pytest.fixture(scope="module")
def live(tmp_path_factory, media_dir):
    """Cameras a and b running, with the HTTP server."""
    timeline: dict[str, list[float]] = {}
    config = CONFIG.replace("{clip}", str(media_dir / "h264_aac.mp4")).replace("{cls}", CLS).replace("{media}", str(media_dir))
    with serving(tmp_path_factory.mktemp("http"), config,
                 lambda r: timeline.setdefault(r.window.camera, []).append(r.window.start)) as live:
        wait_until(lambda: live.pipe.running and all(c["state"] == "up" and c["windows"] > 0
                                                     for c in get_json(f"{live.base}/api/cameras")), 30, "cameras a and b up")
        live.timeline, live.media = timeline, media_dir
        yield live


def test_probes_metrics_page_and_token(live):
    assert request(f"{live.base}/healthz", token=None)[0] == 200
    status, _h, body = request(f"{live.base}/readyz", token=None)
    assert status == 200 and body.startswith(b"ready"), body
    status, _h, body = request(f"{live.base}/metrics", token=None)
    assert status == 200 and b'streamer_frames_decoded_total{camera="a"}' in body  # the ingest processes' metrics
    status, _h, body = request(f"{live.base}/", token=None)  # the page itself needs no token (it holds no data)
    assert status == 200 and b"/static/app.js" in body
    assert request(f"{live.base}/static/app.js", token=None)[0] == 200
    for token in (None, "wrong", TOKEN + "x"):
        status, headers, body = request(f"{live.base}/api/cameras", token=token)
        assert status == 401, (token, status)
        assert "Bearer" in headers.get("www-authenticate", "")
    assert request(f"{live.base}/api/alerts", token="wrong")[0] == 401
    assert request(f"{live.base}/api/events/stream", token=None)[0] == 401
    cams = get_json(f"{live.base}/api/cameras")
    assert [c["id"] for c in cams] == ["a", "b"]
    for c in cams:
        assert {"id", "url", "state", "windows", "fps", "latency_p99_ms", "dropped", "last_alert"} <= set(c)
        assert c["state"] == "up" and c["windows"] > 0 and c["fps"] > 0 and c["dropped"] == 0
        assert c["top_scores"] and all(0 <= s["score"] <= 1 for s in c["top_scores"])
    engine = get_json(f"{live.base}/api/engine")
    assert engine["backend"] == "onnxruntime" and engine["alive"] and engine["max_batch"] >= 1
    assert engine["device"] == "cpu" and engine["chosen_because"] == "engine.backend is onnxruntime-cpu"


def test_bad_payloads_are_422_naming_the_key_and_change_nothing(live):
    before = live.path.read_bytes()
    clip = str(live.media / "h264_aac.mp4")
    outside = live.dir / "outside.mp4"  # a real clip, not under http.media_roots
    outside.write_bytes(Path(clip).read_bytes())
    pids = {c["id"]: c["pid"] for c in get_json(f"{live.base}/api/cameras")}
    cases = [
        ({"id": "evil", "url": "/etc/shadow"}, "url"),
        ({"id": "evil", "url": "file:///etc/passwd"}, "url"),
        ({"id": "evil", "url": str(outside)}, "url"),
        ({"id": "evil", "url": "rtsp://h/x", "detect_url": "/dev/zero"}, "detect_url"),
        ({"id": "evil", "url": "concat:/etc/passwd|/etc/shadow"}, "url"),
        ({"id": "evil", "url": clip, "normality": "/etc/passwd"}, "normality"),  # a model read from anywhere
        ({"id": "x", "url": clip, "stall_timeout": -1}, "stall_timeout"),
        ({"id": "x", "url": clip, "bogus": 1}, "bogus"),
        ({"id": "x", "url": "/nonexistent/clip.mp4"}, "url"),
        ({"id": "x y", "url": clip}, "id"),
        ({"url": clip}, "id"),
        ({"id": "x", "url": clip, "thresholds": {"no_such_class": 0.5}}, "thresholds.no_such_class"),
        (["not", "an", "object"], "(top level)"),
    ]
    for payload, key in cases:
        status, _h, body = request(f"{live.base}/api/cameras", "POST", payload)
        assert status == 422, (payload, status, body)
        doc = json.loads(body)
        assert key in [e["path"] for e in doc["errors"]], (payload, doc)
        assert key in doc["error"]
    for raw in (b"{not: [valid", b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]", b"[" * 5000 + b"]" * 5000, b'{"id": "\\ud800"}'):
        status, _h, body = request(f"{live.base}/api/cameras", "POST", raw)  # bad YAML, aliases, too deep, not UTF-8
        assert status == 422 and json.loads(body)["errors"][0]["path"] == "(top level)", (raw[:40], body)
    status, _h, body = request(f"{live.base}/api/cameras", "POST", {"id": "a", "url": clip})
    assert status == 409, body
    status, _h, body = request(f"{live.base}/api/cameras/a", "PATCH", {"thresholds": {CLS: "high"}})
    assert status == 422 and json.loads(body)["errors"][0]["path"] == f"thresholds.{CLS}"
    status, _h, body = request(f"{live.base}/api/cameras/a", "PATCH", {"url": str(outside)})
    assert status == 422 and json.loads(body)["errors"][0]["path"] == "url", body
    assert request(f"{live.base}/api/cameras/nope", "DELETE")[0] == 404
    assert request(f"{live.base}/api/alerts?limit=0")[0] == 422
    assert live.path.read_bytes() == before
    assert [c.id for c in live.pipe.cfg.cameras] == ["a", "b"]
    assert {c["id"]: c["pid"] for c in get_json(f"{live.base}/api/cameras")} == pids  # nothing started or restarted


def test_a_body_over_the_limit_is_413_before_it_is_read_whole(live):
    """By its length header, and, sent chunked without one, as soon as what was read passes the limit: a
    client streaming a huge body gets its 413 and the server never holds more than the limit."""
    from streamer.web.common import MAX_BODY

    status, _h, body = request(f"{live.base}/api/cameras", "POST", b"{" + b" " * MAX_BODY + b"}")
    assert status == 413 and b"body over" in body
    host, port = live.base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:  # chunked, no length header
        sock.sendall(f"POST /api/cameras HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".encode())
        piece = b" " * 16384
        for _ in range(MAX_BODY // len(piece) + 2):  # past the limit, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = sock.recv(4096)  # the old code waited for the body's end: this timed out
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert get_json(f"{live.base}/api/cameras")  # still serving


def test_credentials_never_in_responses(live, free_port):
    """A camera whose URL carries a password and a token (nothing listens there: it keeps reconnecting)."""
    url = f"rtsp://viewer:hunter2pw@127.0.0.1:{free_port()}/live?token=abc123tok&channel=1"
    status, _h, body = request(f"{live.base}/api/cameras", "POST", {"id": "locked", "url": url, "open_timeout": 1})
    assert status == 201, body
    try:
        def locked():
            return next(c for c in get_json(f"{live.base}/api/cameras") if c["id"] == "locked")

        wait_until(lambda: locked()["state"] == "reconnecting", 15, "the unreachable camera reconnecting")
        texts = [request(f"{live.base}{p}")[2] for p in ("/api/cameras", "/api/cameras/locked", "/api/engine")]
        texts.append(request(f"{live.base}/readyz", token=None)[2])
        status, _h, bad = request(f"{live.base}/api/cameras", "POST", {"id": "other", "url": url.replace("rtsp:", "ftp:")})
        assert status == 422
        texts.append(bad)
        for text in texts:
            assert b"hunter2pw" not in text and b"abc123tok" not in text, text[:400]
        assert locked()["url"] == f"rtsp://viewer:***@127.0.0.1:{url.split(':')[3].split('/')[0]}/live?token=***&channel=1"
        assert request(f"{live.base}/readyz", token=None)[0] == 200  # a and b are up
    finally:
        assert request(f"{live.base}/api/cameras/locked", "DELETE")[0] == 200


def test_a_camera_added_through_the_api_alerts_while_the_others_keep_their_timeline(live):
    base = live.base
    pids = {c["id"]: c["pid"] for c in get_json(f"{base}/api/cameras")}
    engine_pid = live.pipe.engine.proc.pid
    clip = str(live.media / "h264_aac.mp4")
    t_add = time.monotonic()
    status, _h, body = request(f"{base}/api/cameras", "POST", {"id": "c", "url": clip, "loop": True, "thresholds": {CLS: 0.0}})
    assert status == 201, body
    added = json.loads(body)
    assert added["persisted"] and added["running"]
    text = live.path.read_text()
    assert text.startswith("# written by tests/test_http.py") and "# stays all along" in text  # the file's comments kept
    assert [c.id for c in load_config(live.path).cameras] == ["a", "b", "c"]

    def start_alert():
        found = get_json(f"{base}/api/alerts?camera=c&event={CLS}&limit=5")
        return next((a for a in found if a["state"] == "start"), None)

    alert = wait_until(start_alert, 20, "a start alert from the added camera")
    assert alert["camera"] == "c" and set(alert["evidence"]) == {"keyframe", "audio"}
    status, headers, jpg = request(f"{base}/api/alerts/{alert['id']}/keyframe.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpg[:2] == b"\xff\xd8"
    status, headers, wav = request(f"{base}/api/alerts/{alert['id']}/audio.wav")
    assert status == 200 and wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    other = alert["id"][:-1] + ("1" if alert["id"].endswith("0") else "0")  # an id no alert has
    assert request(f"{base}/api/alerts/{other}/keyframe.jpg")[0] == 404
    wait_until(lambda: len(live.timeline.get("c", [])) >= 3, 15, "windows from the added camera")
    cam_c = get_json(f"{base}/api/cameras/c")
    assert cam_c["state"] == "up" and cam_c["windows"] >= 3 and cam_c["last_alert"]["id"]

    ring = live.pipe.rings["c"].shm.name
    assert Path("/dev/shm", ring).exists()
    status, _h, body = request(f"{base}/api/cameras/c", "DELETE")
    assert status == 200, body
    removed = json.loads(body)
    assert removed["ring"] == ring and removed["exitcode"] is not None and removed["persisted"]
    assert not Path("/dev/shm", ring).exists()  # its ring is gone
    with pytest.raises(ProcessLookupError):
        os.kill(added["pid"], 0)  # its process too
    assert [c["id"] for c in get_json(f"{base}/api/cameras")] == ["a", "b"]
    assert [c.id for c in load_config(live.path).cameras] == ["a", "b"]
    end = wait_until(lambda: next((a for a in get_json(f"{base}/api/alerts?camera=c&limit=5") if a["state"] == "end"), None),
                     5, "the removed camera's open event ended")
    assert end["reason"] == "stop" and end["id"] > alert["id"]
    n_c = len(live.timeline["c"])
    time.sleep(1.5)
    assert len(live.timeline["c"]) == n_c  # it stopped

    # nothing else restarted, and a and b have no gap in their windows over all this
    assert {c["id"]: c["pid"] for c in get_json(f"{base}/api/cameras")} == pids
    assert live.pipe.engine.proc.pid == engine_pid
    for cid in ("a", "b"):
        starts = live.timeline[cid]
        gaps = [(x, y) for x, y in zip(starts, starts[1:]) if abs(y - x - HOP) > 1e-6]
        assert not gaps, (cid, gaps[:5])
        span = (time.monotonic() - t_add) / HOP
        assert len(starts) > span * 0.8  # windows kept coming while c came and went


def test_status_page_in_headless_chromium_shows_cameras_and_a_new_alert_within_2s(live, tmp_path):
    subscriber = live.client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("streamer:alerts:b")
    with Chromium(tmp_path) as browser:
        browser.navigate(f"{live.base}/#token={TOKEN}")
        cameras = [c["id"] for c in get_json(f"{live.base}/api/cameras")]
        browser.wait_for("document.getElementById('conn').textContent === 'live'", timeout=15)
        shown = browser.wait_for(
            f"(() => {{ const ids = [...document.querySelectorAll('#cameras .card')].map(c => c.dataset.camera);"
            f" return ids.length === {len(cameras)} && ids; }})()", timeout=10)
        assert shown == cameras
        browser.wait_for("document.querySelector('[data-camera=\"a\"] .state').textContent === 'up' && "
                         "document.querySelectorAll('[data-camera=\"a\"] .scores li').length > 0", timeout=5)
        assert "#token" not in browser.eval("location.href")  # not left in the address bar
        # an event opens on b while the page is open (its threshold lowered live): the alert is on the page within 2 s
        status, _h, body = request(f"{live.base}/api/cameras/b", "PATCH", {"thresholds": {CLS: 0.0}})
        assert status == 200 and json.loads(body)["restarted"] is False, body
        msg = None
        deadline = time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            msg = subscriber.get_message(timeout=0.5)
        assert msg is not None, "no alert from b"
        t_published = time.monotonic()
        alert = json.loads(msg["data"])
        assert alert["camera"] == "b" and alert["state"] == "start"
        browser.wait_for(f"!!document.getElementById('alert-{alert['id']}')", timeout=2.0)
        on_page = time.monotonic() - t_published
        text = browser.eval(f"document.getElementById('alert-{alert['id']}').textContent")
        assert CLS in text and "b" in text
        browser.wait_for(f"document.querySelector('#alert-{alert['id']} img').dataset.loaded === '1'", timeout=5)
        browser.wait_for("document.querySelector('[data-camera=\"b\"] .last-alert').textContent.includes('start')", timeout=5)
        shot = browser.screenshot(tmp_path / "status-page.png")
        assert shot.stat().st_size > 10_000
        print(f"\nstatus page screenshot: {shot} (alert on the page {on_page * 1000:.0f} ms after it was published)")
    subscriber.close()
    assert load_config(live.path).cameras[1].thresholds == {CLS: 0.0}  # PATCH written to the file
    status, _h, _b = request(f"{live.base}/api/cameras/b", "PATCH", {"thresholds": {}})
    assert status == 200 and "thresholds" not in [k for k in live.path.read_text().split("- id: b")[1].split("redis:")[0].split()]


def sse_blocks(resp: Any, seconds: float) -> list[dict[str, str]]:
    """The event-stream blocks read for `seconds` (or to its end: then the last is {"end": ""}), each as
    {field: value} (a comment as "comment")."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            return blocks + [{"end": ""}]
        assert not line.endswith(b"\r\n"), line  # the page splits events on "\n\n"
        text = line.decode().rstrip("\n")
        if not text:
            blocks.append(block)
            block = {}
            continue
        key, _, value = text.partition(":")
        block["comment" if not key else key] = value.strip()
    return blocks


def test_the_event_stream_paces_its_events_passes_alerts_redacted_and_ends_when_the_server_closes(live, monkeypatch):
    """/api/events/stream on a second server over the same fleet: retry, stats at once, then stats and
    history every second, a keep-alive comment every HEARTBEAT_S (0.5 s here), each published alert
    (credentials redacted, messages that are not JSON skipped); a client that goes leaves the alert hub;
    and the end within 1 s of begin_close."""
    from streamer.web import events

    monkeypatch.setattr(events, "HEARTBEAT_S", 0.5)
    srv = HttpServer("127.0.0.1", 0, TOKEN).start()
    srv.attach(live.fleet)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/api/events/stream",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"] == "no-cache"
            first = sse_blocks(resp, 3.2)
            wait_until(srv.hub.subscribed.is_set, 5, "the alert subscription")
            live.client.publish("streamer:alerts:a", b"not json")
            live.client.publish("streamer:alerts:a", json.dumps({"id": "sse-test", "camera": "a",
                                                                 "note": "rtsp://u:hunter2pw@h/x"}))
            more = sse_blocks(resp, 1.5)
            with urllib.request.urlopen(req, timeout=10) as other:
                assert sse_blocks(other, 0.5)[0] == {"retry": "1000"}
                assert len(srv.hub._subs) == 2
            for _ in range(3):  # HEADs (an uptime check): headers, and no subscription left behind
                head = urllib.request.Request(req.full_url, headers=dict(req.headers), method="HEAD")
                with urllib.request.urlopen(head, timeout=10) as h:
                    assert h.status == 200
            wait_until(lambda: len(srv.hub._subs) == 1, 5, "a stream whose client went leaving the alert hub")
            srv.begin_close()
            t_close = time.monotonic()
            rest = sse_blocks(resp, 5)
            ended = time.monotonic() - t_close
    finally:
        srv.close()
    assert first[0] == {"retry": "1000"} and first[1]["event"] == "stats", first[:2]
    stats = [b for b in first if b.get("event") == "stats"]
    assert 3 <= len(stats) <= 5, [b.get("event", b) for b in first]  # at once, then one a second
    assert [c["id"] for c in json.loads(stats[-1]["data"])["cameras"]] == ["a", "b"]
    rows = [json.loads(b["data"]) for b in first if b.get("event") == "history"]
    assert len(rows) >= 2 and any("a" in r and r["a"]["t"] for r in rows), rows
    assert sum("comment" in b for b in first) >= 3  # the keep-alive
    alerts = [b["data"] for b in more if b.get("event") == "alert"]  # the pipeline's own alerts too
    mine = [a for a in alerts if json.loads(a)["id"] == "sse-test"]
    assert len(mine) == 1 and "rtsp://u:***@h/x" in mine[0] and "hunter2pw" not in mine[0], more
    assert rest and rest[-1] == {"end": ""} and ended < 1.0, (rest, ended)


def test_a_public_host_without_a_token_refuses_to_start(tmp_path, media_dir):
    with pytest.raises(ConfigError, match=r"^http\.token: "):
        HttpServer("0.0.0.0", 0)
    HttpServer("0.0.0.0", 0, token="x").close()  # with one it binds
    cfg = tmp_path / "public.yaml"
    cfg.write_text(f"cameras: [{{id: a, url: {media_dir / 'h264_aac.mp4'}}}]\nhttp: {{host: 0.0.0.0, port: {free_port()}}}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("STREAMER_HTTP_TOKEN", "PROMETHEUS_MULTIPROC_DIR")}
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "run", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1 and ": http.token: " in lines[0], r.stderr


def test_sighup_after_editing_the_file_adds_and_removes_cameras(tmp_path, media_dir, redis_server):
    port = free_port()
    clip = media_dir / "h264_aac.mp4"
    path = tmp_path / "fleet.yaml"

    def write(cams: dict[str, dict]) -> None:
        lines = ["cameras:"] + [f"  - {{id: {cid}, url: {clip}, loop: true{''.join(f', {k}: {v}' for k, v in extra.items())}}}"
                                for cid, extra in cams.items()]
        lines += [f"redis: {{url: '{redis_server.url}', spool_dir: '{tmp_path / 'spool'}'}}",
                  f"http: {{port: {port}}}", "anomaly: {enabled: false}"]
        path.write_text("\n".join(lines) + "\n")

    write({"x": {}, "y": {}})
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["STREAMER_HTTP_TOKEN"] = TOKEN
    err = tmp_path / "stderr.log"
    with open(err, "w") as errf:
        proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(path), "--summary-every", "0"],
                                stdout=subprocess.DEVNULL, stderr=errf, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        def cams():
            try:
                return {c["id"]: c for c in get_json(f"{base}/api/cameras", timeout=5)}
            except (OSError, AssertionError):
                return {}

        wait_until(lambda: set(cams()) == {"x", "y"} and all(c["state"] == "up" for c in cams().values()), 40,
                   f"x and y up ({err.read_text()[-1500:]})")
        assert re.search(rf"status page http://127\.0\.0\.1:{port}/ ", err.read_text())  # the URL is printed at start
        assert request(f"{base}/api/cameras", token=None)[0] == 401  # $STREAMER_HTTP_TOKEN applies
        x_pid = cams()["x"]["pid"]
        write({"x": {"thresholds": f"{{{CLS}: 0.25}}"}, "z": {}})
        proc.send_signal(signal.SIGHUP)
        now = wait_until(lambda: (c := cams()) and set(c) == {"x", "z"} and c["z"]["windows"] > 0 and c, 20,
                         f"x and z after SIGHUP ({err.read_text()[-1500:]})")
        assert now["x"]["pid"] == x_pid and now["x"]["thresholds"] == {CLS: 0.25}  # x changed live, not restarted
        assert "SIGHUP" in err.read_text() and proc.poll() is None
        write({"x": {}, "z": {}, "y": {}})
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: set(cams()) == {"x", "y", "z"}, 20, "y back after the second SIGHUP")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
    assert rc == 0, err.read_text()[-2000:]


# ---- fuzzing the camera endpoints (hypothesis; last in this module: it may restart its own camera) ----
from hypothesis import event, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.fuzz import CAMERA, FUZZ, URLS, VALUES  # noqa: E402

IDS = st.sampled_from(["a", "fz", "fz2", "x y", "", "../etc"]) | st.text(max_size=8)
FIELDS = st.sampled_from(sorted(CameraConfig.model_fields))
PLAUSIBLE = st.sampled_from([True, False, 0, 1, 0.5, -1, 1e9, None, "none", "cuda", "mic:1", "rtsp://127.0.0.1:1/y",
                             {CLS: 0.5}, {CLS: "high"}, {"no_such_class": 1}, {}])
EXTRAS = st.dictionaries(FIELDS, PLAUSIBLE | VALUES, max_size=3) | CAMERA
CAMERAS = st.builds(lambda extra, cid, url: {**extra, "id": cid, "url": url}, EXTRAS, IDS,
                    st.sampled_from([*URLS, "rtsp://127.0.0.1:1/x"]))
BODIES = st.binary(max_size=80) | (VALUES | CAMERA | CAMERAS).map(lambda v: json.dumps(v).encode())
PATCHES = st.one_of(BODIES, st.dictionaries(FIELDS.filter(lambda k: k != "id"), PLAUSIBLE, min_size=1, max_size=2)
                    .map(lambda v: json.dumps(v).encode()))


def _answered(status: int, body: bytes, what) -> dict:
    event(f"HTTP {status}")
    assert 200 <= status < 500, (status, what, body[:300])
    doc = json.loads(body)
    assert status < 300 or (isinstance(doc.get("error"), str) and "\n" not in doc["error"]), (what, doc)
    return doc


@FUZZ
@given(body=BODIES, patch=PATCHES, patching=st.booleans())
def test_random_camera_bodies_are_answered_4xx_never_500(live, body, patch, patching):
    """POST /api/cameras and PATCH /api/cameras/fz with random bodies: a 4xx with one error line, or (a
    valid camera) 2xx, removed again; never a 500; the other cameras are untouched."""
    if patching:
        if "fz" not in {c.id for c in live.pipe.cfg.cameras}:
            status, _h, got = request(f"{live.base}/api/cameras", "POST", {"id": "fz", "url": "rtsp://127.0.0.1:1/x", "open_timeout": 1})
            assert status == 201, got
        status, _h, got = request(f"{live.base}/api/cameras/fz", "PATCH", patch)
        _answered(status, got, patch)
        return
    status, _h, got = request(f"{live.base}/api/cameras", "POST", body)
    doc = _answered(status, got, body)
    if status == 201:
        assert request(f"{live.base}/api/cameras/{doc['id']}", "DELETE")[0] == 200


def test_alerts_are_paged_newest_first_each_once_even_when_a_page_boundary_is_trimmed(redis_server):
    """find_alerts reads the stream 500 entries a page; the next page starts after the last entry read,
    even when that entry was trimmed meanwhile (the old code dropped the next page's first row)."""
    from streamer.web.api import find_alerts

    client = redis_server.client()
    ids = [client.xadd("alerts", {"camera": "cam1", "event": "glass", "json": json.dumps({"n": n})})
           for n in range(1200)]

    class TrimsBetweenPages(type(client)):  # a real client; the boundary entry goes after the first page
        pages = 0

        def xrevrange(self, *args, **kwargs):
            if self.pages == 1:
                self.xdel("alerts", ids[1200 - 500])
            self.pages += 1
            return super().xrevrange(*args, **kwargs)

    trimming = TrimsBetweenPages(connection_pool=client.connection_pool)
    got = [a["n"] for a in find_alerts(trimming, "alerts", "cam1", "glass", 1000)]
    assert got == list(range(1199, 1199 - 1000, -1))
    assert [a["n"] for a in find_alerts(client, "alerts", "cam2", None, 10)] == []
