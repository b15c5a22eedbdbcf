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

Here: the binding, the exposure rule and the server (HttpServer, build_app: the route table). The handlers
are module-level functions on `app.state.server`: probes.py (no token), api.py (cameras, engine, alerts),
events.py (the event stream) and common.py (the token, JSON answers, request bodies).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from typing import Any

from streamer.errors import ConfigError


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


def token_problem(host: str, token: str | None) -> str | None:
    """The one rule on exposure: a host that is not loopback needs a token."""
    if token or is_loopback(host):
        return None
    return (f"http.token: http.host {host} is not a loopback address; set http.token (or "
            f"$STREAMER_HTTP_TOKEN) so that the API needs a Bearer token, or bind 127.0.0.1")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ConfigError naming the key (a taken port: `http.port`)."""
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
        key = "http.port" if getattr(e, "errno", None) in (errno.EADDRINUSE, errno.EACCES) else "http.host"
        raise ConfigError(f"{key}: cannot serve HTTP (metrics, API, status page) on {host}:{port}: "
                          f"{e.strerror or e} (set another http.port, or 0 to turn the server off)") from None
    return sock


class HttpServer:
    """Bound at construction (errors name the config key), serving after `start()`; `attach(fleet)`
    gives it the running pipeline (before that: /metrics and the probes; /readyz 503, /api 503)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        problem = token_problem(host, token)
        if problem:
            raise ConfigError(problem)
        self.host, self.token = host, token or None
        self.fleet: Any = None  # the running pipeline's Fleet, once attached
        self.hub: Any = None  # events.AlertHub, once attached
        self.redis: Any = None  # a client for /api/alerts and the evidence, once attached
        sock = bind(host, port)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.closing = threading.Event()  # open event streams end within events.STREAM_POLL_S once set

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/"

    def attach(self, fleet: Any) -> None:
        from streamer.outputs import alerts as alerts_mod
        from streamer.web.events import AlertHub

        pipe = fleet.pipe
        r = pipe.cfg.redis

        def client() -> Any:
            return alerts_mod.connect(pipe.redis_url, retries=1, timeout=5.0, ssl_ca_certs=r.ssl_ca_certs,
                                      ssl_certfile=r.ssl_certfile, ssl_keyfile=r.ssl_keyfile)

        self.redis = client()
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
    """The routes, each a module-level handler that reads the server (its fleet, token, Redis client and
    hub) from `request.app.state.server`; /api ones behind `common.guarded` (the token, the error answers)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from streamer.web import api, events, probes
    from streamer.web.common import guarded, not_found

    routes = [
        Route("/", probes.index),
        Route("/healthz", probes.healthz),
        Route("/readyz", probes.readyz),
        Route("/metrics", probes.metrics),
        Route("/api/cameras", guarded(api.cameras), methods=["GET", "POST"]),
        Route("/api/cameras/{cid}", guarded(api.camera), methods=["GET", "PATCH", "DELETE"]),
        Route("/api/cameras/{cid}/history", guarded(api.history)),
        Route("/api/engine", guarded(api.engine)),
        Route("/api/alerts", guarded(api.alerts)),
        Route("/api/alerts/{aid}/{name}", guarded(api.evidence_of)),
        Route("/api/events/stream", guarded(events.events)),
        Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        Mount("/static", StaticFiles(directory=str(probes.STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.server = srv
    return app
