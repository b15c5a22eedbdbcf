"""Alert delivery against a real Redis server that goes away and comes back."""

import json
import socket
import threading
import time

import jsonschema
import numpy as np
import pytest
import redis

from streamer.outputs import evidence
from streamer.outputs import metrics as m
from streamer.outputs.alerts import ModelInfo, connect, make_alert
from streamer.outputs.reader import last
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from tests.outputs.schema import ALERT_SCHEMA

MODEL = ModelInfo("fusion", "1", "onnxruntime")


def alert(i, camera="cam"):
    return make_alert(camera=camera, event="fight", state="start", score=0.9, start=float(i), end=i + 1.0,
                      wall_end=time.time(), latency_ms={"infer": 1.0}, model=MODEL)


def sink_for(url, spool_dir, **kw):
    client = connect(url, retries=1)
    client.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.5
    return AlertSink(client, url, stream="streamer:alerts", maxlen=1000, channel_prefix="streamer:alerts",
                     spool=Spool(spool_dir, kw.pop("max_alerts", 1000)), retry_every=0.2, **kw)


def wait_empty(sink, timeout=15):
    deadline = time.monotonic() + timeout
    while (len(sink.spool) or sink.pending) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not len(sink.spool) and not sink.pending


def wait_handled(sink, timeout=15):
    """Until the delivery thread has delivered or spooled everything submitted."""
    deadline = time.monotonic() + timeout
    while sink.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    return not sink.pending


def stream_ids(url):
    return [a["id"] for a in last(redis.Redis.from_url(url), "streamer:alerts", 1000)]


def test_alerts_validate_against_the_schema():
    jsonschema.validate(alert(0), ALERT_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**alert(0), "state": "open"}, ALERT_SCHEMA)


def test_redis_outage_every_alert_exactly_once_in_order(redis_server, tmp_path):
    sink = sink_for(redis_server.url, tmp_path / "spool")
    sent = [alert(i) for i in range(5)]
    for a in sent:
        assert sink.submit(a)
    assert wait_handled(sink)
    before = stream_ids(redis_server.url)  # the test server keeps no data across a restart
    redis_server.stop()
    more = [alert(i) for i in range(5, 12)]
    for a in more:
        assert sink.submit(a)  # accepted: spooled
    assert wait_handled(sink)
    assert len(sink.spool) == 7
    redis_server.start()
    assert wait_empty(sink), "spool was not replayed after Redis came back"
    sink.close()
    assert before + stream_ids(redis_server.url) == [a["id"] for a in sent + more]


def test_spool_full_counts_the_excess_and_a_restart_replays_the_rest(redis_server, tmp_path):
    sink = sink_for(redis_server.url, tmp_path / "spool", max_alerts=3)
    redis_server.stop()
    before = m.ALERTS_DROPPED.labels("cam", "spool_full")._value.get()
    results = [sink.submit(alert(i)) for i in range(5)]
    assert results == [True] * 5  # accepted: the delivery thread spools them
    assert wait_handled(sink)
    assert len(sink.spool) == 3
    assert m.ALERTS_DROPPED.labels("cam", "spool_full")._value.get() - before == 2
    sink.close()  # streamer stops with 3 alerts spooled
    spooled = [json.loads(line)["id"] for line in (tmp_path / "spool" / "alerts.jsonl").read_text().splitlines()]
    redis_server.start()
    restarted = sink_for(redis_server.url, tmp_path / "spool")
    assert wait_empty(restarted)
    restarted.close()
    assert stream_ids(redis_server.url) == spooled


def test_replay_skips_an_alert_already_delivered(redis_server, tmp_path):
    sink = sink_for(redis_server.url, tmp_path / "spool")
    a = alert(0)
    sink.submit(a)
    sink.close()
    assert stream_ids(redis_server.url) == [a["id"]]
    sink.spool.append(a)  # as if the reply to a delivered alert was lost
    again = sink_for(redis_server.url, tmp_path / "spool")
    assert wait_empty(again)
    again.close()
    assert stream_ids(redis_server.url) == [a["id"]]


class ReplyDropper:
    """A TCP proxy in front of a real redis-server that loses one reply: the first one to a request carrying
    `marker` (and not a NOSCRIPT answer), after Redis executed it, by closing the client's connection."""

    def __init__(self, redis_port: int, marker: bytes) -> None:
        self.redis_port, self.marker, self.dropped = redis_port, marker, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.redis_port))
        asked = threading.Event()  # a request carrying the marker went to Redis on this connection

        def upstream() -> None:
            while data := client.recv(65536):
                if self.marker in data:
                    asked.set()
                server.sendall(data)

        threading.Thread(target=upstream, daemon=True).start()
        with client, server:
            try:
                while reply := server.recv(65536):
                    if asked.is_set() and not self.dropped and not reply.startswith(b"-NOSCRIPT"):
                        self.dropped += 1
                        client.shutdown(socket.SHUT_RDWR)  # executed by Redis; the reply never reaches the client
                        return
                    asked.clear()
                    client.sendall(reply)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def test_a_reply_lost_after_the_write_does_not_deliver_the_alert_twice(redis_server, tmp_path):
    """redis-py retries a call whose connection broke before the reply came: the alert was already stored,
    and the retry must not store it again (the 1.3-minute soak found one such duplicate at a Redis restart)."""
    a = alert(0)
    proxy = ReplyDropper(redis_server.port, a["id"].encode())
    sink = sink_for(proxy.url, tmp_path / "spool")
    try:
        assert sink.submit(a)
        assert wait_empty(sink)
        b = alert(1)
        assert sink.submit(b)
        assert wait_empty(sink)
    finally:
        sink.close()
        proxy.close()
    assert proxy.dropped == 1  # the case happened
    assert stream_ids(redis_server.url) == [a["id"], b["id"]]
    assert len(sink.spool) == 0


def test_evidence_is_stored_with_a_ttl_and_survives_the_spool(redis_server, tmp_path):
    sink = sink_for(redis_server.url, tmp_path / "spool", evidence_ttl=60)
    redis_server.stop()
    a = alert(0)
    keys = evidence.keys("streamer:evidence", a["id"])
    a["evidence"] = keys
    rgb = np.zeros((90, 160, 3), np.uint8)
    rgb[:, :80] = 255
    files = {keys["keyframe"]: evidence.jpeg(rgb), keys["audio"]: evidence.wav(np.zeros(16000, np.float32), 16000)}
    assert sink.submit(a, files)
    redis_server.start()
    assert wait_empty(sink)
    sink.close()
    client = redis.Redis.from_url(redis_server.url)
    jpg = client.get(keys["keyframe"])
    assert jpg[:2] == b"\xff\xd8" and len(jpg) < 20_000
    assert client.get(keys["audio"])[:4] == b"RIFF"
    assert 0 < client.ttl(keys["keyframe"]) <= 60
    assert "_evidence" not in last(client, "streamer:alerts", 1)[0]


def test_evidence_is_encoded_on_the_delivery_thread(redis_server, tmp_path):
    """The detection thread hands the sink the evidence unencoded; the JPEG and WAV are made on the
    delivery thread. A file that cannot be made is left out; the alert still goes."""
    import threading
    from functools import partial

    sink = sink_for(redis_server.url, tmp_path / "spool")
    a = alert(0)
    keys = evidence.keys("streamer:evidence", a["id"])
    threads = []

    def made(encode, *args):
        threads.append(threading.current_thread().name)
        return encode(*args)

    files = {keys["keyframe"]: partial(made, evidence.jpeg, np.zeros((90, 160, 3), np.uint8)),
             keys["audio"]: partial(made, evidence.wav, np.zeros(16000, np.float32), 16000),
             "streamer:evidence:broken:jpg": partial(evidence.jpeg, np.zeros((0, 0, 3), np.uint8))}
    assert sink.submit(a, files)
    assert wait_empty(sink)
    sink.close()
    assert threads == ["streamer:delivery"] * 2
    client = redis.Redis.from_url(redis_server.url)
    assert client.get(keys["keyframe"])[:2] == b"\xff\xd8" and client.get(keys["audio"])[:4] == b"RIFF"
    assert client.get("streamer:evidence:broken:jpg") is None
    assert last(client, "streamer:alerts", 1)[0]["id"] == a["id"]


def test_live_subscribers_get_each_alert(redis_server, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("streamer:alerts:lobby")
    time.sleep(0.2)
    sink = sink_for(redis_server.url, tmp_path / "spool")
    a = alert(0, camera="lobby")
    sink.submit(a)
    sink.close()
    msg = None
    deadline = time.monotonic() + 5
    while msg is None and time.monotonic() < deadline:
        msg = ps.get_message(timeout=0.5)
    assert msg is not None and json.loads(msg["data"])["id"] == a["id"]


def test_submit_never_waits_on_a_redis_that_does_not_answer(redis_server, tmp_path):
    """Redis SIGSTOPped (connections accepted, nothing answered): submit returns at once; the delivery
    thread's call times out and the alerts wait in the spool, then go out in order once Redis answers."""
    import os
    import signal

    net_timeout = 2.0  # one call waiting on the hung Redis takes this long
    client = connect(redis_server.url, retries=0, timeout=net_timeout)
    sink = AlertSink(client, redis_server.url, stream="streamer:alerts", maxlen=1000, channel_prefix="streamer:alerts",
                     spool=Spool(tmp_path / "spool"), retry_every=0.2, queue_size=4)
    first = alert(0)
    sink.submit(first)
    assert wait_handled(sink)
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        more = [alert(i) for i in range(1, 30)]
        t0 = time.monotonic()
        for a in more:
            assert sink.submit(a)
        took = time.monotonic() - t0
        # waiting on the network even once would take net_timeout; the margin is for a loaded machine
        assert took < net_timeout / 2, f"29 submits took {took:.2f} s: they waited on the network"
        assert wait_handled(sink, timeout=10)
        assert len(sink.spool) == len(more)  # the queue (4) spilled to the spool, the in-flight one too
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    assert wait_empty(sink)
    sink.close()
    assert stream_ids(redis_server.url) == [a["id"] for a in [first, *more]]  # in order, once each


def test_close_spools_what_a_hung_redis_did_not_take(redis_server, tmp_path):
    import os
    import signal

    client = connect(redis_server.url, retries=0, timeout=5)
    sink = AlertSink(client, redis_server.url, stream="streamer:alerts", maxlen=1000, channel_prefix="streamer:alerts",
                     spool=Spool(tmp_path / "spool"), retry_every=0.2)
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        sent = [alert(i) for i in range(3)]
        for a in sent:
            sink.submit(a)
        time.sleep(0.3)  # the first is in flight, waiting for a reply that does not come
        t0 = time.monotonic()
        sink.close(timeout=0.5)
        assert time.monotonic() - t0 < 1.0
        assert [json.loads(line)["id"] for line in (tmp_path / "spool" / "alerts.jsonl").read_text().splitlines()] == \
            [a["id"] for a in sent]
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)


def test_the_journal_lists_every_accepted_alert_delivered_or_spooled(redis_server, tmp_path):
    journal = tmp_path / "journal.jsonl"
    sink = sink_for(redis_server.url, tmp_path / "spool", journal=str(journal))
    sent = [alert(i) for i in range(3)]
    for a in sent[:2]:
        assert sink.submit(a)
    assert wait_handled(sink)
    redis_server.stop()
    assert sink.submit(sent[2])  # spooled: accepted all the same
    assert wait_handled(sink)
    sink.close(timeout=0.2)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [x["id"] for x in lines] == [a["id"] for a in sent]
    assert set(lines[0]) == {"id", "camera", "event", "state", "time"}


def test_a_journal_that_cannot_be_opened_is_an_error_naming_the_key(redis_server, tmp_path):
    from streamer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^redis.journal: cannot append to .*/nodir/j.jsonl"):
        sink_for(redis_server.url, tmp_path / "spool", journal=str(tmp_path / "nodir" / "j.jsonl"))
