"""Alerts through a Redis server with an ACL user, and through one that speaks only TLS."""

import shutil
import subprocess
import time

import pytest
import redis

from streamer.outputs.alerts import connect
from streamer.outputs.reader import last
from streamer.outputs.sink import AlertSink
from streamer.outputs.spool import Spool
from tests.conftest import free_port
from tests.outputs.test_sink import alert

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def start(args, ready):
    proc = subprocess.Popen([REDIS, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ready()
            return proc
        except redis.RedisError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"redis-server did not start: {proc.stdout.read().decode()[-2000:]}")


def deliver_one(url, tmp_path, **tls):
    client = connect(url, **tls)
    sink = AlertSink(client, url, stream="streamer:alerts", maxlen=100, channel_prefix="streamer:alerts",
                     spool=Spool(tmp_path / "spool"))
    a = alert(0)
    assert sink.submit(a)
    sink.close()
    assert not len(sink.spool), "the alert was spooled: delivery failed"
    assert [x["id"] for x in last(client, "streamer:alerts", 10)] == [a["id"]]


def test_acl_user_and_password(tmp_path):
    port = free_port()
    url = f"redis://streamer:s3cret@127.0.0.1:{port}/0"
    proc = start(["--port", str(port), "--user", "default", "off", "--user", "streamer", "on", ">s3cret", "~streamer:*", "&*", "+@all"],
                 lambda: redis.Redis.from_url(url).ping())
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(f"redis://streamer:wrong@127.0.0.1:{port}/0").ping()
        deliver_one(url, tmp_path)
    finally:
        proc.terminate()
        proc.wait()


def test_tls(tmp_path):
    ca_key, ca, key, csr, crt = (tmp_path / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1")
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "1",
        "-extfile", str(ext))
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0"
    proc = start(["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(crt), "--tls-key-file", str(key),
                  "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"],
                 lambda: redis.Redis.from_url(url, ssl_ca_certs=str(ca)).ping())
    try:
        with pytest.raises(redis.ConnectionError):  # a plain client cannot talk to it
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
        deliver_one(url, tmp_path, ssl_ca_certs=str(ca))
    finally:
        proc.terminate()
        proc.wait()
