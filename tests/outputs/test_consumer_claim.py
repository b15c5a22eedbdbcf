"""Two `streamer alerts --group` consumers on a real Redis; one is SIGKILLed while it holds alerts
it was delivered but has not acknowledged; the other takes them over (XAUTOCLAIM) and every alert is
handled and acknowledged exactly once between them."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import redis

from tests.outputs.test_sink import alert

STREAM, GROUP = "streamer:alerts", "ops"
N = 400


def consumer(url, name, stdout, *extra):
    return subprocess.Popen([sys.executable, "-m", "streamer.cli", "alerts", "--redis", url, "--group", GROUP, "--consumer", name,
                             "--claim-idle", "1", *extra], stdout=stdout, stderr=subprocess.PIPE)


def ids(text):
    """Ids of the complete lines (a consumer killed mid-write leaves a partial last line)."""
    return [json.loads(line)["id"] for line in text.split("\n")[:-1]]


def test_a_killed_consumers_pending_alerts_are_claimed_by_the_other(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    sent = [alert(i, camera=f"cam{i % 4}") for i in range(N)]
    for a in sent:
        client.xadd(STREAM, {"id": a["id"], "camera": a["camera"], "event": a["event"], "json": json.dumps(a)})

    # Consumer a writes into a 4 KB pipe nobody reads: it blocks a few alerts into its first batch of
    # 100 (a slow handler), holding the rest of the batch delivered but unacknowledged.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    a = consumer(redis_server.url, "a", write_end)
    os.close(write_end)
    held, stable_since = None, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now_held = client.xpending(STREAM, GROUP)["pending"] if client.exists(STREAM) and _has_group(client) else 0
        if now_held and now_held == held:
            if time.monotonic() - stable_since >= 1.5:
                break
        else:
            held, stable_since = now_held, time.monotonic()
        time.sleep(0.1)
    assert held and a.poll() is None, f"consumer a never blocked holding alerts (pending {held}, exit {a.poll()})"
    held_ids = {e["message_id"].decode() for e in client.xpending_range(STREAM, GROUP, "-", "+", N, consumername="a")}
    a.kill()  # SIGKILL: no chance to acknowledge anything more
    a.wait(timeout=10)
    assert a.returncode == -signal.SIGKILL
    with os.fdopen(read_end, "rb") as f:
        handled_a = ids(f.read().decode())
    a.stderr.close()
    assert 0 < len(handled_a) < N and len(held_ids) == held

    out = open(redis_server.dir / "b.out", "w+")
    b = consumer(redis_server.url, "b", out, "--duration", "6")
    _, err = b.communicate(timeout=60)
    assert b.returncode == 0, err.decode()[-2000:]
    out.seek(0)
    handled_b = ids(out.read())

    assert len(handled_b) == len(set(handled_b)), "consumer b handled an alert twice"
    assert not set(handled_a) & set(handled_b), "an alert a had acknowledged was handed to b"
    assert sorted(handled_a + handled_b) == sorted(x["id"] for x in sent)  # every alert handled once
    entry_ids = {eid.decode(): f[b"id"].decode() for eid, f in client.xrange(STREAM)}
    assert {entry_ids[e] for e in held_ids} <= set(handled_b)  # what a held when it died, b claimed
    assert client.xpending(STREAM, GROUP)["pending"] == 0  # and acknowledged: nothing left pending
    consumers = {c["name"].decode(): c["pending"] for c in client.xinfo_consumers(STREAM, GROUP)}
    assert consumers == {"a": 0, "b": 0}


def _has_group(client):
    try:
        return any(g["name"] == GROUP.encode() for g in client.xinfo_groups(STREAM))
    except redis.ResponseError:
        return False
