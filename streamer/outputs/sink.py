"""Delivery of alerts to Redis: nothing accepted is lost, nothing is delivered twice.

Each alert (with its evidence) goes out in one MULTI/EXEC: evidence keys SET with a TTL, XADD to the
stream (MAXLEN ~), PUBLISH on `<prefix>:<camera>`. redis-py's retry policy absorbs short blips; when
Redis stays unreachable the alert goes to the on-disk spool, and so does every later alert until the
spool has been replayed, so order is kept. A background thread replays the spool when Redis is back;
alerts already in the stream (a reply lost after the write) are recognised by id and skipped.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

import redis

from streamer.errors import redact
from streamer.outputs import metrics as m
from streamer.outputs.spool import Spool

log = logging.getLogger(__name__)


class AlertSink:
    def __init__(
        self,
        client: redis.Redis,
        url: str,
        *,
        stream: str,
        maxlen: int,
        channel_prefix: str,
        spool: Spool,
        evidence_ttl: int = 86400,
        retry_every: float = 1.0,
    ) -> None:
        self.client = client
        self.url = redact(url)
        self.stream = stream
        self.maxlen = maxlen
        self.channel_prefix = channel_prefix
        self.spool = spool
        self.evidence_ttl = evidence_ttl
        self.retry_every = retry_every
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="streamer:spool", daemon=True)
        self._flusher.start()
        if len(spool):
            log.info("spool holds %d undelivered alert(s); replaying when %s answers", len(spool), self.url)
            self._wake.set()

    def channel(self, camera: str) -> str:
        return f"{self.channel_prefix}:{camera}"

    def submit(self, alert: dict[str, Any], evidence: dict[str, bytes] | None = None) -> bool:
        """Deliver now, or spool. False only when the spool is full and the alert was dropped (counted)."""
        if evidence:
            alert = {**alert, "_evidence": {k: base64.b64encode(v).decode() for k, v in evidence.items()}}
        with self._lock:
            if not len(self.spool):
                try:
                    self._send(alert)
                    return True
                except redis.RedisError as e:
                    log.warning("Redis %s unreachable (%s): spooling alerts to %s", self.url, e, self.spool.path)
            ok = self.spool.append(alert)
            m.SPOOLED.set(len(self.spool))
        if not ok:
            m.ALERTS_DROPPED.labels(alert["camera"], "spool_full").inc()
            log.error("spool full (%d alerts): alert %s dropped", self.spool.max_alerts, alert["id"])
        self._wake.set()
        return ok

    def _send(self, alert: dict[str, Any]) -> None:
        evidence = alert.pop("_evidence", None) if "_evidence" in alert else None
        doc = json.dumps(alert, separators=(",", ":"))
        pipe = self.client.pipeline(transaction=True)
        for key, b64 in (evidence or {}).items():
            pipe.set(key, base64.b64decode(b64), ex=self.evidence_ttl)
        pipe.xadd(self.stream, {"id": alert["id"], "camera": alert["camera"], "event": alert["event"], "json": doc},
                  maxlen=self.maxlen, approximate=True)
        pipe.publish(self.channel(alert["camera"]), doc)
        try:
            pipe.execute()
        except redis.RedisError:
            if evidence is not None:
                alert["_evidence"] = evidence
            raise

    def _replay(self) -> int:
        recent = self.client.xrevrange(self.stream, count=len(self.spool) + 16)
        delivered = {fields.get(b"id", b"").decode() for _id, fields in recent}

        def deliver(alert: dict[str, Any]) -> None:
            if alert["id"] not in delivered:
                self._send(alert)

        try:
            return self.spool.replay(deliver)
        finally:
            m.SPOOLED.set(len(self.spool))

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.retry_every)
            self._wake.clear()
            if not len(self.spool):
                continue
            with self._lock:
                try:
                    n = self._replay()
                    log.info("Redis %s is back: replayed %d spooled alert(s)", self.url, n)
                except redis.RedisError:
                    pass  # still down: try again in retry_every
            if len(self.spool):
                self._closed.wait(self.retry_every)

    def flush(self, timeout: float = 5.0) -> bool:
        """Try to empty the spool now; True when it is empty."""
        with self._lock:
            if len(self.spool):
                try:
                    self._replay()
                except redis.RedisError:
                    pass
            return not len(self.spool)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._flusher.join(timeout=2)
