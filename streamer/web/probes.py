"""The endpoints without a token: /healthz, /readyz, /metrics and the status page itself (it holds no data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from streamer.outputs import metrics as m
from streamer.web.common import server_of

STATIC = Path(__file__).resolve().parent / "static"


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok\n")


def _ready(fleet: Any) -> tuple[bool, str]:
    if fleet is None:
        return (True, "ready") if m.READY.is_set() else (False, "not ready: starting (engine loading, Redis client)")
    return fleet.readiness()


async def readyz(request: Request) -> Response:
    ok, why = await run_in_threadpool(_ready, server_of(request).fleet)
    return PlainTextResponse(why + "\n", status_code=200 if ok else 503)


def _metrics() -> bytes:
    return m.collect(generate_latest)


async def metrics(_request: Request) -> Response:
    return Response(await run_in_threadpool(_metrics), media_type=CONTENT_TYPE_LATEST)


async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
