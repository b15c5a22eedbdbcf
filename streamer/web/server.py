"""The one HTTP server of a streamer process tree: metrics, probes, the API and the live status page.

Starlette (routing, requests, streaming responses) served by uvicorn on a thread of the main process,
with its own asyncio loop: the pipeline's threads never wait on it, and one loop holds any number of
open event streams without a thread each. The socket is bound before anything else starts, so a taken
port is a one-line error naming `http.port` and nothing is left behind.

    GET  /metrics                       every process's metrics (prometheus-client multiprocess registry)
    GET  /healthz                       200 while the process answers
    GET  /readyz                        200 when the engine runs and a source is up; else 503 and the reason
    GET  /                              the status page (static/index.html, plain HTML + JS)
    GET  /api/cameras                   [{id, url (redacted), state, windows, fps, latency_p99_ms, dropped, last_alert, ...}]
    POST /api/cameras                   a camera object as in the YAML: 201; 422 with key paths; 409 when it exists
    GET|PATCH|DELETE /api/cameras/{id}  one camera; PATCH {"thresholds": {...}, "loudness": {...}} live; DELETE stops it, frees its ring
    GET  /api/cameras/{id}/history?since=   its timeline: the last http.history_minutes of lanes (top classes,
                                        anomaly, sound level) and alerts (streamer/outputs/history.py)
    GET  /api/engine                    backend, device and why they were chosen, precision, batch, windows/s
    GET  /api/alerts?camera=&event=&limit=      recent alerts from the stream, newest first
    GET  /api/alerts/{id}/keyframe.jpg, /audio.wav   their evidence from Redis
    GET  /api/events/stream             Server-Sent Events: `alert` (each alert as published), `stats` (1 s) and
                                        `history` (1 s: each camera's timeline rows since the last one sent)

Security: loopback by default; with a token (http.token or $STREAMER_HTTP_TOKEN) every /api request
needs `Authorization: Bearer <token>` (401 otherwise); a host that is not loopback without a token is
refused at start (ConfigError naming http.token). Every JSON answer passes through the redaction of
streamer/errors.py, so no URL password or credential parameter leaves the process.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from streamer.errors import ConfigError, redact_text
from streamer.outputs import metrics as m

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ALERT_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
MAX_BODY = 64 * 1024
STATS_EVERY_S = 1.0
STREAM_POLL_S = 0.2  # how soon an open event stream notices that the server is closing
HEARTBEAT_S = 15.0
ALERT_SCAN = 10_000  # stream entries /api/alerts looks through for a filtered query


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def token_problem(host: str, token: str | None, section: str = "http") -> str | None:
    """The one rule on exposure: a host that is not loopback needs a token."""
    if token or is_loopback(host):
        return None
    return (f"http.token: {section}.host {host} is not a loopback address; set http.token (or "
            f"$STREAMER_HTTP_TOKEN) so that the API needs a Bearer token, or bind 127.0.0.1")


def bind(host: str, port: int, section: str = "http") -> socket.socket:
    """A listening socket on host:port, or a ConfigError naming the key (a taken port: `<section>.port`)."""
    sock = None
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        if sock is not None:
            sock.close()
        key = f"{section}.port" if getattr(e, "errno", None) in (errno.EADDRINUSE, errno.EACCES) else f"{section}.host"
        raise ConfigError(f"{key}: cannot serve HTTP (metrics, API, status page) on {host}:{port}: "
                          f"{e.strerror or e} (set another {section}.port, or 0 to turn the server off)") from None
    return sock


def parse_body(raw: bytes) -> Any:
    """A request body, JSON or YAML, or an ApiError 422: not text, not JSON or YAML, aliases (`*a`: a
    few bytes that expand to gigabytes once validated), nesting too deep, or escapes that are not UTF-8."""
    from streamer.fleet import ApiError

    def bad(msg: str) -> ApiError:
        return ApiError(422, f"(top level): {msg}", [{"path": "(top level)", "msg": msg}])

    try:
        text = raw.decode() or "null"
        try:
            data = json.loads(text)  # JSON first: YAML would read an escaped surrogate pair as two halves
        except ValueError:
            if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text)):
                raise bad("YAML aliases (*name) are not accepted") from None
            data = yaml.safe_load(text)
        json.dumps(data, ensure_ascii=False, default=str).encode()
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise bad(f"not JSON or YAML: {str(e).splitlines()[0]}") from None
    except UnicodeEncodeError:
        raise bad("a string that is not UTF-8 (a lone surrogate escape)") from None
    except RecursionError:
        raise bad("nested too deep") from None
    return data


def _scrub(obj: Any) -> Any:
    """Every string of a JSON answer through redact_text (the last guard: none should need it)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v) for v in obj]
    return obj


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
                        data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                        with self._lock:
                            subs = list(self._subs)
                        for loop, q in subs:
                            loop.call_soon_threadsafe(self._put, q, data)
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


class HttpServer:
    """Bound at construction (errors name the config key), serving after `start()`; `attach(fleet)`
    gives it the running pipeline (before that: /metrics and the probes; /readyz 503, /api 503)."""

    def __init__(self, host: str, port: int, token: str | None = None, section: str = "http") -> None:
        problem = token_problem(host, token, section)
        if problem:
            raise ConfigError(problem)
        self.host, self.token, self.section = host, token or None, section
        self.fleet: Any = None
        self.hub: AlertHub | None = None
        self._redis: Any = None
        sock = bind(host, port, section)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.closing = threading.Event()  # open event streams end within STREAM_POLL_S once set

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/"

    def attach(self, fleet: Any) -> None:
        pipe = fleet.pipe
        from streamer.outputs import alerts as alerts_mod

        r = pipe.cfg.redis

        def client() -> Any:
            return alerts_mod.connect(pipe.redis_url, retries=1, timeout=5.0, ssl_ca_certs=r.ssl_ca_certs,
                                      ssl_certfile=r.ssl_certfile, ssl_keyfile=r.ssl_keyfile)

        self._redis = client()
        self.hub = AlertHub(client, f"{r.channel_prefix}:*")
        self.fleet = fleet

    def start(self) -> "HttpServer":
        import uvicorn

        config = uvicorn.Config(build_app(self), log_config=None, access_log=False, lifespan="off", http="h11",
                                ws="none", loop="asyncio", timeout_graceful_shutdown=1, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]},
                                        name="streamer:http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def begin_close(self) -> None:
        """Open event streams end (their clients reconnect to whatever runs next)."""
        self.closing.set()
        if self.hub is not None:
            self.hub.close()

    def close(self, timeout: float = 0.5) -> None:
        self.begin_close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(0.2)
        try:
            self.sock.close()
        except OSError:
            pass


def build_app(srv: HttpServer) -> Any:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client import multiprocess as prom_mp
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from streamer.fleet import ApiError

    def registry() -> Any:
        import os

        reg = CollectorRegistry()
        if os.environ.get(m.MULTIPROC_ENV):
            prom_mp.MultiProcessCollector(reg)
            return reg
        from prometheus_client import REGISTRY

        return REGISTRY

    def jsonr(obj: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(_scrub(obj), status_code=status, headers={"Cache-Control": "no-store"})

    def error(status: int, message: str, errors: list | None = None) -> JSONResponse:
        body: dict[str, Any] = {"error": message}
        if errors:
            body["errors"] = errors
        return jsonr(body, status)

    def fleet() -> Any:
        if srv.fleet is None:
            raise ApiError(503, "starting: the pipeline is not running yet")
        return srv.fleet

    def authorised(request: Request) -> bool:
        if not srv.token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {srv.token}".encode())

    def api(handler: Any) -> Any:
        """/api/*: the token, ApiError -> its status, anything else -> 500 with one redacted line."""

        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"error": "unauthorised: send Authorization: Bearer <http.token>"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="streamer"'})
            try:
                return await handler(request)
            except ApiError as e:
                return jsonr(e.body(), e.status)
            except Exception as e:
                log.exception("HTTP %s %s", request.method, request.url.path)
                return error(500, f"{type(e).__name__}: {e}")

        return endpoint

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"body over {MAX_BODY} bytes")
        return parse_body(raw)

    # ---- plain endpoints ----------------------------------------------------------------------
    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def _ready() -> tuple[bool, str]:
        if srv.fleet is None:
            return (True, "ready") if m.READY.is_set() else (False, "not ready: starting (engine loading, Redis client)")
        return srv.fleet.readiness()

    async def readyz(_request: Request) -> Response:
        ok, why = await run_in_threadpool(_ready)
        return PlainTextResponse(why + "\n", status_code=200 if ok else 503)

    def _metrics() -> bytes:
        return generate_latest(registry())

    async def metrics(_request: Request) -> Response:
        return Response(await run_in_threadpool(_metrics), media_type=CONTENT_TYPE_LATEST)

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # ---- /api ----------------------------------------------------------------------------------
    async def cameras(request: Request) -> Response:
        f = fleet()
        if request.method == "POST":
            payload = await body_of(request)
            out = await run_in_threadpool(f.add, payload)
            return jsonr(out, 201)
        snap = await run_in_threadpool(f.snapshot)
        return jsonr(snap["cameras"])

    async def camera(request: Request) -> Response:
        f = fleet()
        cid = request.path_params["cid"]
        if request.method == "DELETE":
            return jsonr(await run_in_threadpool(f.remove, cid))
        if request.method == "PATCH":
            payload = await body_of(request)
            return jsonr(await run_in_threadpool(f.patch, cid, payload))
        snap = await run_in_threadpool(f.snapshot)
        found = next((c for c in snap["cameras"] if c["id"] == cid), None)
        if found is None:
            raise ApiError(404, f"no camera {cid} running here")
        return jsonr(found)

    async def history(request: Request) -> Response:
        f = fleet()
        raw = request.query_params.get("since")
        try:
            since = float(raw) if raw else None
        except ValueError:
            raise ApiError(422, "since: a wall-clock time in seconds", [{"path": "since", "msg": "a number", "got": raw}]) from None
        return jsonr(await run_in_threadpool(f.history, request.path_params["cid"], since))

    async def engine(_request: Request) -> Response:
        snap = await run_in_threadpool(fleet().snapshot)
        return jsonr(snap["engine"])

    def _alerts(camera: str | None, event: str | None, limit: int) -> list[dict]:
        stream = srv.fleet.pipe.cfg.redis.stream
        out: list[dict] = []
        last, scanned = "+", 0
        while len(out) < limit and scanned < ALERT_SCAN:
            rows = srv._redis.xrevrange(stream, max=last, min="-", count=500)
            if last != "+":
                rows = rows[1:]  # the entry `last` itself came back again
            if not rows:
                break
            for entry_id, fields in rows:
                scanned += 1
                if camera and fields.get(b"camera", b"").decode() != camera:
                    continue
                if event and fields.get(b"event", b"").decode() != event:
                    continue
                out.append(json.loads(fields[b"json"]))
                if len(out) >= limit:
                    break
            last = rows[-1][0].decode() if isinstance(rows[-1][0], bytes) else rows[-1][0]
        return out

    async def alerts(request: Request) -> Response:
        fleet()
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            raise ApiError(422, "limit: a number from 1 to 1000", [{"path": "limit", "msg": "a number from 1 to 1000",
                                                                   "got": q.get("limit")}]) from None
        try:
            found = await run_in_threadpool(_alerts, q.get("camera") or None, q.get("event") or None, limit)
        except Exception as e:  # Redis down
            raise ApiError(503, f"Redis: {e}") from None
        return jsonr(found)

    def _evidence(alert_id: str, kind: str) -> bytes | None:
        from streamer.outputs import evidence

        return srv._redis.get(evidence.keys("streamer:evidence", alert_id)[kind])

    async def evidence_of(request: Request) -> Response:
        fleet()
        alert_id, name = request.path_params["aid"], request.path_params["name"]
        kinds = {"keyframe.jpg": ("keyframe", "image/jpeg"), "audio.wav": ("audio", "audio/wav")}
        if not ALERT_ID.match(alert_id) or name not in kinds:
            raise ApiError(404, "no such evidence")
        kind, media = kinds[name]
        try:
            data = await run_in_threadpool(_evidence, alert_id, kind)
        except Exception as e:
            raise ApiError(503, f"Redis: {e}") from None
        if data is None:
            raise ApiError(404, f"no {kind} for alert {alert_id} (none was stored, or its evidence.ttl passed)")
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    async def events(request: Request) -> Response:
        f = fleet()
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        assert srv.hub is not None
        srv.hub.add(loop, q)

        def sse(event: str, data: str) -> str:
            return f"event: {event}\ndata: {data}\n\n"

        since = {c.id: time.time() for c in f.pipe.cfg.cameras}  # rows before the stream opened: GET .../history

        async def rows() -> str:
            found = await run_in_threadpool(f.histories, since)
            since.update({cid: view["t"][-1] for cid, view in found.items()})
            return sse("history", json.dumps(_scrub(found)))

        async def stream() -> Any:
            try:
                yield "retry: 1000\n\n"
                snap = await run_in_threadpool(f.snapshot)
                yield sse("stats", json.dumps(_scrub(snap)))
                next_stats, next_beat = loop.time() + STATS_EVERY_S, loop.time() + HEARTBEAT_S
                while not srv.closing.is_set():
                    wait = max(min(next_stats, next_beat, loop.time() + STREAM_POLL_S) - loop.time(), 0)
                    try:
                        data = await asyncio.wait_for(q.get(), wait)
                        yield sse("alert", json.dumps(_scrub(json.loads(data))))
                        continue
                    except asyncio.TimeoutError:
                        if srv.closing.is_set():
                            return
                    except ValueError:
                        continue  # not JSON: not an alert of ours
                    if loop.time() >= next_stats:
                        snap = await run_in_threadpool(f.snapshot)
                        yield sse("stats", json.dumps(_scrub(snap)))
                        yield await rows()
                        next_stats = loop.time() + STATS_EVERY_S
                    if loop.time() >= next_beat:
                        yield ": keep-alive\n\n"
                        next_beat = loop.time() + HEARTBEAT_S
            finally:
                assert srv.hub is not None
                srv.hub.remove(loop, q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def not_found(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        return error(404, f"no endpoint {request.method} {request.url.path}")

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/cameras", api(cameras), methods=["GET", "POST"]),
        Route("/api/cameras/{cid}", api(camera), methods=["GET", "PATCH", "DELETE"]),
        Route("/api/cameras/{cid}/history", api(history)),
        Route("/api/engine", api(engine)),
        Route("/api/alerts", api(alerts)),
        Route("/api/alerts/{aid}/{name}", api(evidence_of)),
        Route("/api/events/stream", api(events)),
        Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes)
