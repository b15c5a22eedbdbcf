"""Reading alerts back: live (pub/sub), from the stream (last N, from an id), or as a consumer group member."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import redis


def _decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    return json.loads(fields[b"json"])


def last(client: redis.Redis, stream: str, count: int) -> list[dict[str, Any]]:
    """The newest `count` alerts, oldest first."""
    return [_decode(f) for _id, f in reversed(client.xrevrange(stream, count=count))]


def since(client: redis.Redis, stream: str, from_id: str, count: int) -> list[dict[str, Any]]:
    """Alerts after a stream entry id (e.g. `1700000000000-0`, or `0` for all), oldest first."""
    return [_decode(f) for _id, f in client.xrange(stream, min=f"({from_id}" if from_id not in ("0", "-") else "-", count=count)]


def follow(client: redis.Redis, prefix: str, camera: str | None, duration: float | None = None) -> Iterator[dict[str, Any]]:
    """Live alerts from pub/sub (`<prefix>:<camera>`, all cameras when camera is None)."""
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe(f"{prefix}:{camera or '*'}")
    deadline = time.monotonic() + duration if duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.5)
            if msg and msg["type"] == "pmessage":
                yield json.loads(msg["data"])
    finally:
        ps.close()


def group(
    client: redis.Redis, stream: str, name: str, consumer: str, *, count: int = 100, block_ms: int = 1000,
    duration: float | None = None, claim_idle: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Read as a member of a consumer group (created at the stream's start if missing); each alert is
    acknowledged after the caller has taken it (asks for the next one). Pending entries of this consumer
    are delivered first. With `claim_idle` (seconds), entries another consumer has held unacknowledged
    for longer than that (it died, or hangs) are taken over with XAUTOCLAIM and delivered too, so every
    alert is handled at least once; a consumer that dies mid-alert has it handled again elsewhere, so
    handlers deduplicate by the alert's id."""
    try:
        client.xgroup_create(stream, name, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    deadline = time.monotonic() + duration if duration else None
    cursor = "0"  # first our own pending entries, then new ones (">")
    claim_from, next_claim = "0-0", time.monotonic()
    while deadline is None or time.monotonic() < deadline:
        if claim_idle is not None and time.monotonic() >= next_claim:
            reply = client.xautoclaim(stream, name, consumer, min_idle_time=int(claim_idle * 1000), start_id=claim_from, count=count)
            claim_from, entries = reply[0], reply[1]  # Redis 7 adds the ids it dropped as deleted: nothing to do
            if claim_from in (b"0-0", "0-0"):  # the whole pending list scanned: look again in a while
                claim_from, next_claim = "0-0", time.monotonic() + min(claim_idle, 5.0)
        else:
            rows = client.xreadgroup(name, consumer, {stream: cursor}, count=count, block=block_ms)
            entries = rows[0][1] if rows else []
            if cursor == "0" and not entries:
                cursor = ">"
                continue
        for entry_id, fields in entries:
            if fields:  # an entry trimmed from the stream (MAXLEN) while pending has no fields left
                yield _decode(fields)
            client.xack(stream, name, entry_id)


def latest_stats(client: redis.Redis, stream: str, scan: int = 10_000) -> dict[str, dict[str, Any]]:
    """The newest stats record of each camera, whichever replica wrote it (the whole fleet: every replica
    writes its cameras' records to the same stream, capped at 10000 entries)."""
    out: dict[str, dict[str, Any]] = {}
    for _id, fields in client.xrevrange(stream, count=scan):
        rec = json.loads(fields[b"json"])
        out.setdefault(rec["camera"], rec)
    return dict(sorted(out.items()))
