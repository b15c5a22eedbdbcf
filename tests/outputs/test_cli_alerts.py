"""`streamer alerts` and `streamer stats` against a real Redis."""

import json
import subprocess
import sys

import redis

from streamer.outputs import stats
from streamer.outputs.alerts import connect
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from tests.outputs.test_sink import alert


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "streamer.cli", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fill(url, tmp_path):
    sink = AlertSink(connect(url), url, stream="streamer:alerts", maxlen=100, channel_prefix="streamer:alerts",
                     spool=Spool(tmp_path / "spool"))
    sent = [alert(i, camera=cam) for i, cam in enumerate(["a", "b", "a"])]
    sent[1].update(event="glass_break", top=[{"class": "glass_break", "score": 0.97}, {"class": "shatter", "score": 0.4}],
                   level={"rms_dbfs": -12.34, "peak_dbfs": -1.5})
    for a in sent:
        sink.submit(a)
    sink.close()
    return sent


def test_last_and_filters(redis_server, tmp_path):
    sent = fill(redis_server.url, tmp_path)
    lines = cli("alerts", "--redis", redis_server.url).splitlines()
    assert [json.loads(x)["id"] for x in lines] == [a["id"] for a in sent]
    lines = cli("alerts", "--redis", redis_server.url, "--camera", "a").splitlines()
    assert [json.loads(x)["camera"] for x in lines] == ["a", "a"]
    table = cli("alerts", "--redis", redis_server.url, "--event", "glass_break", "--format", "table").splitlines()
    assert table[0].split()[:3] == ["time", "camera", "event"] and len(table) == 2 and "glass_break" in table[1]
    assert table[1].endswith("glass_break 0.97, shatter 0.40") and " -12.3 dB " in table[1]  # the window's top scores, its level
    old = {k: v for k, v in sent[0].items() if k not in ("top", "level")} | {"schema_version": 1}  # written before v2
    redis.Redis.from_url(redis_server.url).xadd("streamer:alerts", {"json": json.dumps(old)})
    row = cli("alerts", "--redis", redis_server.url, "--last", "1", "--format", "table").splitlines()[1]
    assert row.endswith(f"{old['id']}  -")


def test_since_an_id(redis_server, tmp_path):
    sent = fill(redis_server.url, tmp_path)
    first = redis.Redis.from_url(redis_server.url).xrange("streamer:alerts", count=1)[0][0].decode()
    lines = cli("alerts", "--redis", redis_server.url, "--since", first).splitlines()
    assert [json.loads(x)["id"] for x in lines] == [a["id"] for a in sent[1:]]


def test_consumer_group_reads_each_alert_once_and_acks(redis_server, tmp_path):
    sent = fill(redis_server.url, tmp_path)
    out = cli("alerts", "--redis", redis_server.url, "--group", "ops", "--consumer", "c1", "--duration", "2").splitlines()
    assert [json.loads(x)["id"] for x in out] == [a["id"] for a in sent]
    client = redis.Redis.from_url(redis_server.url)
    assert client.xpending("streamer:alerts", "ops")["pending"] == 0
    again = cli("alerts", "--redis", redis_server.url, "--group", "ops", "--consumer", "c1", "--duration", "1")
    assert again.strip() == ""  # the group has consumed them


def test_stats_shows_the_newest_record_per_camera(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    stats.publish(client, "streamer:stats", [{"camera": "a", "fps": 25.0, "latency_p99_ms": 40.0}])
    stats.publish(client, "streamer:stats", [{"camera": "a", "fps": 24.0, "latency_p99_ms": 41.0},
                                             {"camera": "b", "fps": 10.0, "latency_p99_ms": 30.0}])
    got = json.loads(cli("stats", "--redis", redis_server.url, "--json"))
    assert got["a"]["fps"] == 24.0 and got["b"]["fps"] == 10.0
    table = cli("stats", "--redis", redis_server.url)
    assert table.splitlines()[0].startswith("camera") and len(table.splitlines()) == 3


def test_unreachable_redis_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "alerts", "--redis", "redis://u:secret@127.0.0.1:1/0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot reach Redis at redis://u:***@127.0.0.1:1/0" in r.stderr and "secret" not in r.stderr
