"""Three replicas (`streamer run` processes with shard indexes 0, 1, 2) on one real redis-server share
six file cameras: each camera's alerts come from exactly the replica the plan gives it, and
`streamer stats` shows all six with their replica."""

import json
import os
import subprocess
import sys

import redis
import yaml

from streamer import shard
from streamer.outputs.reader import last
from tests.media import make_clip

REPLICAS = 3


def six_cameras():
    """Two cameras per replica (ids picked by the plan, so that no replica is idle)."""
    picked: dict[int, list[str]] = {i: [] for i in range(REPLICAS)}
    n = 0
    while any(len(v) < 2 for v in picked.values()):
        cid = f"cam-{n}"
        if len(picked[shard.owner(cid, REPLICAS)]) < 2:
            picked[shard.owner(cid, REPLICAS)].append(cid)
        n += 1
    return sorted(c for v in picked.values() for c in v)


def test_three_replicas_split_six_cameras(redis_server, tmp_path):
    clip = make_clip(tmp_path / "cam.mp4", seconds=3, fps=10, size=(160, 120), flash_at=[1.0], click_at=[1.0])
    ids = six_cameras()
    cfg = {
        "cameras": [{"id": c, "url": str(clip), "realtime": False} for c in ids],
        "shard": {"replicas": REPLICAS},
        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool"), "stats_interval": 1},
        "http": {"port": 0},
        "engine": {"threads": 1},
        "anomaly": {"enabled": False},
        "detect": {"thresholds": {"fight": 0.0}},  # every window over threshold: each camera opens and closes an event
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    procs = []
    for i in range(REPLICAS):
        env = {**os.environ, "HOME": str(tmp_path / f"home{i}"), "STREAMER_SHARD_INDEX": str(i)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("STREAMER_REDIS_URL", None)
        procs.append(subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(path), "--print-alerts", "--summary-every", "0"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=100)
            assert p.returncode == 0, err[-3000:]
            outs.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    plan = shard.plan(ids, REPLICAS)
    for i, alerts in enumerate(outs):
        assert {a["camera"] for a in alerts} == {c for c in ids if plan[c] == i}, f"replica {i}"
    printed = [a for alerts in outs for a in alerts]
    stored = last(redis.Redis.from_url(redis_server.url), "streamer:alerts", 10_000)
    assert sorted(a["id"] for a in stored) == sorted(a["id"] for a in printed)
    assert {(a["camera"], a["state"]) for a in stored} == {(c, s) for c in ids for s in ("start", "end")}

    r = subprocess.run([sys.executable, "-m", "streamer.cli", "stats", "--redis", redis_server.url, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert {c: rec["replica"] for c, rec in stats.items()} == plan
    assert all(rec["windows"] >= 4 and rec["alerts"] == 2 for rec in stats.values()), stats


def test_a_replica_without_cameras_stays_up_and_ready(redis_server, tmp_path, free_port):
    """More replicas than its share: the replica idles (a pod that exited would be restarted in a loop)."""
    import time
    import urllib.request

    clip = make_clip(tmp_path / "cam.mp4", seconds=2, fps=10, size=(160, 120))
    cam = "cam-0"
    idle = next(i for i in range(5) if i != shard.owner(cam, 5))
    port = free_port()
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": cam, "url": str(clip)}], "shard": {"replicas": 5, "index": idle},
                                    "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")},
                                    "http": {"port": port}, "anomaly": {"enabled": False}}))
    env = {**os.environ, "HOME": str(tmp_path)}
    for k in ("PROMETHEUS_MULTIPROC_DIR", "STREAMER_REDIS_URL", "STREAMER_SHARD_INDEX"):
        env.pop(k, None)
    p = subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(path), "--duration", "6", "--print-alerts"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ready = None
    deadline = time.monotonic() + 30
    while ready is None and time.monotonic() < deadline and p.poll() is None:
        try:
            ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status
        except OSError:
            time.sleep(0.2)
    out, err = p.communicate(timeout=60)
    assert ready == 200, err[-3000:]
    assert p.returncode == 0 and out == "", err[-3000:]
    assert f"shard {idle} of 5: no cameras hash to this replica" in err
    assert redis.Redis.from_url(redis_server.url).xlen("streamer:alerts") == 0
