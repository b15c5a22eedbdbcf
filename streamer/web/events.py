"""GET /api/events/stream, Server-Sent Events (sse-starlette: the wire format, the keep-alive comment every
HEARTBEAT_S, the end of a stream when its client goes): `alert` (each alert as Redis publishes it, from one
subscription shared by every open stream: AlertHub), `stats` (every STATS_EVERY_S) and `history` (each
camera's timeline rows since the last sent, with the stats). A stream ends within STREAM_POLL_S once the
server begins to close (`HttpServer.closing`), so its client reconnects to whatever runs next."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from streamer.web.common import fleet_of, scrub, server_of

log = logging.getLogger(__name__)

STATS_EVERY_S = 1.0
STREAM_POLL_S = 0.2  # how soon an open event stream notices that the server is closing
HEARTBEAT_S = 15.0
RETRY_MS = 1000  # how soon a client reconnects
SEP = "\n"  # the page's reader splits events on a blank line of "\n" (sse-starlette's default is "\r\n")
Message = dict[str, Any]  # fields of one event (event, data, retry), encoded by sse-starlette with SEP


class AlertHub:
    """One pub/sub subscription (`<channel_prefix>:*`) shared by every open event stream: a thread reads
    it and hands each alert to the streams' queues on their loop. Redis away: retried every second."""

    def __init__(self, client_factory: Any, pattern: str) -> None:
        self.client_factory, self.pattern = client_factory, pattern
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.subscribed = threading.Event()

    def add(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs.add((loop, q))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="streamer:http:alerts", daemon=True)
                self._thread.start()

    def remove(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs.discard((loop, q))

    @staticmethod
    def _put(q: asyncio.Queue, data: str) -> None:
        try:
            q.put_nowait(data)
        except asyncio.QueueFull:  # a client that does not read: it misses alerts, nobody waits
            pass

    def _hand_out(self, data: Any) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            loop.call_soon_threadsafe(self._put, q, text)

    def _run(self) -> None:
        while not self._closed.is_set():
            ps = None
            try:
                ps = self.client_factory().pubsub(ignore_subscribe_messages=True)
                ps.psubscribe(self.pattern)
                self.subscribed.set()
                while not self._closed.is_set():
                    msg = ps.get_message(timeout=1.0)
                    if msg and msg["type"] == "pmessage":
                        self._hand_out(msg["data"])
            except Exception as e:  # Redis down or restarted: try again shortly
                self.subscribed.clear()
                log.debug("alert subscription: %s", e)
                self._closed.wait(1.0)
            finally:
                if ps is not None:
                    try:
                        ps.close()
                    except Exception:
                        pass

    def close(self) -> None:
        self._closed.set()


class _Stream:
    """One client's events: its queue of alerts from the hub, and the time each camera's rows were sent up to."""

    def __init__(self, fleet: Any, closing: threading.Event) -> None:
        self.fleet, self.closing = fleet, closing
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self.since = {c.id: time.time() for c in fleet.pipe.cfg.cameras}  # rows before the stream opened: GET .../history

    async def stats(self) -> Message:
        snap = await run_in_threadpool(self.fleet.snapshot)
        return {"event": "stats", "data": json.dumps(scrub(snap))}

    async def rows(self) -> Message:
        found = await run_in_threadpool(self.fleet.histories, self.since)
        self.since.update({cid: view["t"][-1] for cid, view in found.items()})
        return {"event": "history", "data": json.dumps(scrub(found))}

    async def alert(self, timeout: float) -> Message | None:
        """The next alert within `timeout` s, or None (none came, or a message that is not JSON)."""
        try:
            data = await asyncio.wait_for(self.queue.get(), timeout)
            return {"event": "alert", "data": json.dumps(scrub(json.loads(data)))}
        except (asyncio.TimeoutError, ValueError):
            return None

    async def events(self) -> AsyncIterator[Message]:
        loop = asyncio.get_running_loop()
        yield {"retry": RETRY_MS}
        yield await self.stats()
        next_stats = loop.time() + STATS_EVERY_S
        while not self.closing.is_set():
            alert = await self.alert(max(min(next_stats - loop.time(), STREAM_POLL_S), 0))
            if alert is not None:
                yield alert
            elif loop.time() >= next_stats and not self.closing.is_set():
                yield await self.stats()
                yield await self.rows()
                next_stats = loop.time() + STATS_EVERY_S


async def events(request: Request) -> Response:
    """The event stream of one client (behind `common.guarded`: the token)."""
    server = server_of(request)
    stream = _Stream(fleet_of(request), server.closing)
    loop = asyncio.get_running_loop()

    async def body() -> AsyncIterator[Message]:  # subscribed only while a body is sent (never for a HEAD)
        server.hub.add(loop, stream.queue)
        try:
            async for event in stream.events():
                yield event
        finally:
            server.hub.remove(loop, stream.queue)

    return EventSourceResponse(body(), ping=HEARTBEAT_S, sep=SEP, headers={"Cache-Control": "no-cache"})
