"""What every endpoint shares: the token check, JSON answers through redaction, request bodies, and the
server and pipeline they serve (on `app.state.server`, the HttpServer; its `fleet` is None until attached)."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamer.errors import redact_text
from streamer.fleet import ApiError

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def scrub(obj: Any) -> Any:
    """Every string of a JSON answer through redact_text (the last guard: none should need it)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj


def jsonr(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(scrub(obj), status_code=status, headers={"Cache-Control": "no-store"})


def error(status: int, message: str, errors: list | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return jsonr(body, status)


def server_of(request: Request) -> Any:
    return request.app.state.server


def fleet_of(request: Request) -> Any:
    """The running pipeline's Fleet, or ApiError 503 while it starts."""
    fleet = server_of(request).fleet
    if fleet is None:
        raise ApiError(503, "starting: the pipeline is not running yet")
    return fleet


def authorised(request: Request) -> bool:
    token = server_of(request).token
    if not token:
        return True
    got = request.headers.get("authorization", "")
    return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())


def guarded(handler: Handler) -> Handler:
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


async def not_found(request: Request) -> Response:
    """Any other /api path: 404 (401 first without the token, so paths cannot be probed)."""
    if not authorised(request):
        return JSONResponse({"error": "unauthorised"}, status_code=401)
    return error(404, f"no endpoint {request.method} {request.url.path}")


def parse_body(raw: bytes) -> Any:
    """A request body, JSON or YAML, or an ApiError 422: not text, not JSON or YAML, aliases (`*a`: a
    few bytes that expand to gigabytes once validated), nesting too deep, or escapes that are not UTF-8."""

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


async def body_of(request: Request) -> Any:
    """The request's body, parsed; a 413 as soon as it is past MAX_BODY (its length header, or what was read):
    never more than that in memory."""
    too_big = ApiError(413, f"body over {MAX_BODY} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_big
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise too_big
    return parse_body(bytes(raw))
