"""Delivery of alerts to Redis, on its own thread: nothing accepted is lost, nothing is delivered twice,
and the caller (the detection thread) never waits on the network.

`submit()` puts the alert on a bounded queue and returns; its evidence may come unencoded (a callable
that makes the file: the JPEG and the WAV are made on the delivery thread, or when spooled). When the queue is full (Redis answers too
slowly for the alert rate) the alert goes straight to the on-disk spool instead. The delivery thread
sends each alert in one Lua script (atomic): XADD to the stream (MAXLEN ~), a marker key
`<stream>:sent:<id>` (SENT_TTL_S), evidence keys SET with a TTL, PUBLISH on `<prefix>:<camera>`, and
nothing when the marker is already there. redis-py's retry policy absorbs short blips, and the marker
makes its retry of a call whose reply was lost after the write a no-op (no alert twice); when Redis stays
unreachable (or does not answer within the socket timeout) the alert goes to the spool, and so does
every later alert until the spool has been replayed, so order is kept (the spool replays by the
order alerts were accepted). The same thread replays the spool when Redis answers again; alerts
already in the stream (a reply lost after the write) have their marker and are not sent again.

`close(timeout)`: the queue is delivered while Redis answers, for at most `timeout` s; whatever is
left (the queue, an alert in flight to a Redis that does not answer) is written to the spool, so a
stop never waits on the network for long and loses nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import redis

from streamer.errors import ConfigError, redact
from streamer.outputs import metrics as m
from streamer.outputs.spool import Spool

log = logging.getLogger(__name__)

SENT_TTL_S = 86400  # how long a delivered alert's marker stays: a spool replayed within a day never resends it
# (a marker takes ~155 bytes of Redis memory; the alert's evidence, kept as long by default, ~40 kB)

# KEYS: stream, sent marker, evidence keys; ARGV: maxlen, marker ttl, channel, doc, id, camera, event,
# evidence ttl, evidence bytes (one per evidence key). Nothing is written when the marker is there.
DELIVER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[5], 'camera', ARGV[6], 'event', ARGV[7], 'json', ARGV[4])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 6], 'EX', ARGV[8]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


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
        queue_size: int = 1000,
        journal: str | None = None,
    ) -> None:
        self.client = client
        self.url = redact(url)
        self.stream = stream
        self.maxlen = maxlen
        self.channel_prefix = channel_prefix
        self.spool = spool
        self.evidence_ttl = evidence_ttl
        self.retry_every = retry_every
        self._deliver = client.register_script(DELIVER)  # EVALSHA; loaded again after a Redis restart
        self._q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        self._inflight: dict[str, Any] | None = None
        self._closing = threading.Event()  # deliver what is queued, then end
        self._abandoned = threading.Event()  # no more network: everything goes to the spool
        self._down_logged = False
        self._next_replay = 0.0
        self.delivered = 0
        # redis.journal: one JSON line per accepted alert, appended (and flushed) as it is accepted
        try:
            self._journal = open(Path(journal).expanduser(), "a", buffering=1) if journal else None  # noqa: SIM115
        except OSError as e:
            raise ConfigError(f"redis.journal: cannot append to {journal!r}: {e.strerror or e.__class__.__name__}") from None
        self._thread = threading.Thread(target=self._run, name="streamer:delivery", daemon=True)
        self._thread.start()
        if len(spool):
            log.info("spool holds %d undelivered alert(s); replaying when %s answers", len(spool), self.url)

    def channel(self, camera: str) -> str:
        return f"{self.channel_prefix}:{camera}"

    @property
    def pending(self) -> int:
        """Alerts accepted and not yet delivered or spooled."""
        return self._q.qsize() + (self._inflight is not None)

    def _seq(self) -> int:
        with self._seq_lock:
            self._last_seq = max(self._last_seq + 1, time.time_ns())
            return self._last_seq

    def submit(self, alert: dict[str, Any], evidence: Mapping[str, bytes | Callable[[], bytes]] | None = None) -> bool:
        """Accept an alert for delivery, with its evidence files (key -> bytes, or a callable that makes them);
        never waits on the network. False only when it had to be spooled and the spool is full (the alert is
        dropped, counted)."""
        item = {**alert, "_seq": self._seq()}
        if self._journal is not None:
            self._journal.write(json.dumps({"id": alert["id"], "camera": alert["camera"], "event": alert["event"],
                                            "state": alert["state"], "time": alert.get("time")}) + "\n")
        if evidence:
            item["_files"] = dict(evidence)  # encoded by _encode, on the delivery thread
        if not self._abandoned.is_set():
            try:
                self._q.put_nowait(item)
                return True
            except queue.Full:
                log.warning("alert queue full (%d): Redis %s is slow; spooling", self._q.maxsize, self.url)
        return self._spool(item)

    @staticmethod
    def _encode(item: dict[str, Any]) -> None:
        """The item's evidence files made (a file that cannot be is left out, logged) and kept as base64 in
        `_evidence`, as the spool stores them. `_files` goes only once `_evidence` is there: abandon() may
        copy the item from another thread meanwhile."""
        files = item.get("_files")
        if not files:
            return
        out = {}
        for key, file in files.items():
            try:
                out[key] = base64.b64encode(file() if callable(file) else file).decode()
            except Exception as e:  # e.g. an image the JPEG encoder refused (cv2.error): the alert still goes
                log.error("alert %s: evidence %s not stored: %s", item.get("id"), key, e)
        item["_evidence"] = out
        item.pop("_files", None)

    def _spool(self, item: dict[str, Any]) -> bool:
        self._encode(item)
        ok = self.spool.append(item)
        m.SPOOLED.set(len(self.spool))
        if not ok:
            m.ALERTS_DROPPED.labels(item["camera"], "spool_full").inc()
            log.error("spool full (%d alerts): alert %s dropped", self.spool.max_alerts, item["id"])
        return ok

    def sent_key(self, alert_id: str) -> str:
        """The marker that an alert is in the stream (kept SENT_TTL_S): what makes a resend a no-op."""
        return f"{self.stream}:sent:{alert_id}"

    def _send(self, alert: dict[str, Any]) -> None:
        """One alert into Redis, atomically (a Lua script); nothing when its marker says it is there already.
        redis-py retries a call whose reply was lost (Redis restarted or timed out after the write): the
        marker turns that second write into nothing."""
        self._encode(alert)
        evidence = alert.get("_evidence") or {}
        doc = json.dumps({k: v for k, v in alert.items() if not k.startswith("_")}, separators=(",", ":"))
        keys = [self.stream, self.sent_key(alert["id"]), *evidence]
        args = [self.maxlen, SENT_TTL_S, self.channel(alert["camera"]), doc, alert["id"], alert["camera"],
                alert["event"], self.evidence_ttl, *(base64.b64decode(b64) for b64 in evidence.values())]
        self._deliver(keys=keys, args=args, client=self.client)

    def _replay(self) -> int:
        def deliver(alert: dict[str, Any]) -> None:  # one already in the stream has its marker: not sent again
            if self._abandoned.is_set():
                raise redis.RedisError("stopping: the rest stays in the spool")
            self._send(alert)

        try:
            return self.spool.replay(deliver)
        finally:
            m.SPOOLED.set(len(self.spool))

    def _run(self) -> None:
        while not self._abandoned.is_set():
            if len(self.spool) and not self._closing.is_set() and time.monotonic() >= self._next_replay:
                try:
                    n = self._replay()
                    log.info("Redis %s is back: replayed %d spooled alert(s)", self.url, n)
                    self._down_logged = False
                except redis.RedisError:
                    self._next_replay = time.monotonic() + self.retry_every  # still down
            try:
                item = self._q.get(timeout=0.05 if self._closing.is_set() else 0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if len(self.spool) or self._abandoned.is_set():
                self._spool(item)  # behind the spooled ones
                continue
            self._inflight = item
            try:
                self._send(item)
                self.delivered += 1
            except redis.RedisError as e:
                if not self._down_logged:
                    log.warning("Redis %s unreachable (%s): spooling alerts to %s", self.url, e, self.spool.path)
                    self._down_logged = True
                self._spool(item)
                self._next_replay = time.monotonic() + self.retry_every
            finally:
                self._inflight = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to `timeout` s for the queue and the spool to be delivered; True when both are empty."""
        self._next_replay = 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.pending or len(self.spool)) and self._thread.is_alive():
            time.sleep(0.02)
        return not (self.pending or len(self.spool))

    def close(self, timeout: float = 1.0) -> None:
        """Deliver what is queued while Redis answers, for at most `timeout` s; spool the rest."""
        self._closing.set()
        self._thread.join(timeout)
        self.abandon()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def abandon(self) -> int:
        """No more network: the alert in flight (if any) and the queue go to the spool. Returns how many.
        (An alert in flight may also have reached Redis; the replay recognises it by id.)"""
        self._abandoned.set()
        n = 0
        inflight = self._inflight
        if inflight is not None:
            self._spool(dict(inflight))  # a copy: the delivery thread may still be encoding it
            n += 1
        while True:
            try:
                self._spool(self._q.get_nowait())
                n += 1
            except queue.Empty:
                break
        if n:
            log.info("%d undelivered alert(s) written to the spool %s", n, self.spool.path)
        return n
