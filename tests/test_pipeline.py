"""End to end: sources (file and RTSP) -> windows -> default model on ONNX Runtime -> alerts in a real Redis."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import jsonschema
import redis

from streamer.config import parse_config
from streamer.outputs.reader import last as read_stream
from streamer.pipeline import Pipeline
from tests.conftest import free_port
from tests.outputs.schema import ALERT_SCHEMA

ALERT_KEYS = {"schema_version", "id", "camera", "event", "state", "score", "start", "end", "time", "latency_ms", "model"}


def test_file_and_rtsp_cameras_alert_into_redis(redis_server, rtsp_server, media_dir, tmp_path):
    aac = rtsp_server(media_dir / "h264_aac.mp4")
    opus = rtsp_server(media_dir / "h264_opus.mkv")
    cfg = parse_config({
        "cameras": [
            {"id": "file", "url": str(media_dir / "h264_aac.mp4"), "realtime": False},
            {"id": "rtsp-aac", "url": aac.url},
            {"id": "rtsp-opus", "url": opus.url},
        ],
        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")},
        "http": {"port": 0},
        "detect": {"thresholds": {"fight": 0.0}},  # every window is over threshold: one start alert per camera
        "engine": {"backend": "onnxruntime-cpu"},  # the same on a GPU host
    })
    client = redis.Redis.from_url(redis_server.url)
    live = client.pubsub(ignore_subscribe_messages=True)
    live.psubscribe("streamer:alerts:*")
    seen = []
    pipe = Pipeline(cfg, on_alert=seen.append)
    try:
        pipe.run(duration=12)
    finally:
        pipe.close()
    alerts = read_stream(client, "streamer:alerts", 1000)
    starts = {a["camera"] for a in alerts if a["event"] == "fight" and a["state"] == "start"}
    assert starts == {"file", "rtsp-aac", "rtsp-opus"}
    assert [a["id"] for a in alerts] == [a["id"] for a in seen]  # every accepted alert is in the stream, in order
    for a in alerts:
        jsonschema.validate(a, ALERT_SCHEMA)
        assert a["model"]["backend"] == "onnxruntime"
    start = next(a for a in alerts if a["state"] == "start")
    assert {"decode", "queue", "infer", "end_to_end"} <= set(start["latency_ms"])
    published = []
    deadline = time.monotonic() + 3
    while len(published) < len(alerts) and time.monotonic() < deadline:
        msg = live.get_message(timeout=0.2)  # None for the subscribe confirmation too
        if msg and msg["type"] == "pmessage":
            published.append(json.loads(msg["data"]))
    assert [a["id"] for a in published] == [a["id"] for a in alerts]
    assert pipe.stats.windows >= 15  # the file alone gives 15


def test_demo_exits_by_itself_and_serves_metrics(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "demo", "--duration", "12", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    body = {}

    def scrape():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "streamer_frames_decoded_total{" not in body.get("text", ""):
            time.sleep(0.5)
            try:  # the ingest process's series appear once it has started
                body["text"] = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                pass

    threading.Thread(target=scrape, daemon=True).start()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-2000:]
    assert "windows" in err and "latency p50" in err
    assert 'streamer_frames_decoded_total{camera="demo"}' in body.get("text", ""), "metrics endpoint did not answer"
    alerts = [json.loads(line) for line in out.splitlines()]
    starts = [a for a in alerts if a["event"] == "fight" and a["state"] == "start"]
    assert starts, "the demo's fight raised no alert at the demo's default settings"
    assert all(a["end"] > 4.0 for a in starts), "a fight alert from a window inside the clip's quiet part (its first 4 s)"
    for alert in alerts:  # not empty: a fight start is among them
        jsonschema.validate(alert, ALERT_SCHEMA)
        assert alert["camera"] == "demo" and ALERT_KEYS <= set(alert)
