"""The /api endpoints on cameras, the engine and alerts: each reads the running Fleet (`fleet_of`) or the
server's Redis client (`server_of(request).redis`) and answers JSON through `jsonr` (redacted). The token
and the error answers are `common.guarded`'s, around each of them in the route table."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from streamer.fleet import ApiError
from streamer.outputs import evidence
from streamer.web.common import body_of, fleet_of, jsonr, server_of

ALERT_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
ALERT_SCAN = 10_000  # stream entries /api/alerts looks through for a filtered query
EVIDENCE = {"keyframe.jpg": ("keyframe", "image/jpeg"), "audio.wav": ("audio", "audio/wav")}


async def cameras(request: Request) -> Response:
    """GET: every camera's status; POST: a camera object as in the YAML, added and started (201)."""
    fleet = fleet_of(request)
    if request.method == "POST":
        payload = await body_of(request)
        return jsonr(await run_in_threadpool(fleet.add, payload), 201)
    snap = await run_in_threadpool(fleet.snapshot)
    return jsonr(snap["cameras"])


async def camera(request: Request) -> Response:
    """GET one camera's status; PATCH its thresholds and loudness (live) or anything else; DELETE stops it."""
    fleet = fleet_of(request)
    cid = request.path_params["cid"]
    if request.method == "DELETE":
        return jsonr(await run_in_threadpool(fleet.remove, cid))
    if request.method == "PATCH":
        payload = await body_of(request)
        return jsonr(await run_in_threadpool(fleet.patch, cid, payload))
    snap = await run_in_threadpool(fleet.snapshot)
    found = next((c for c in snap["cameras"] if c["id"] == cid), None)
    if found is None:
        raise ApiError(404, f"no camera {cid} running here")
    return jsonr(found)


async def history(request: Request) -> Response:
    fleet = fleet_of(request)
    raw = request.query_params.get("since")
    try:
        since = float(raw) if raw else None
    except ValueError:
        raise ApiError(422, "since: a wall-clock time in seconds", [{"path": "since", "msg": "a number", "got": raw}]) from None
    return jsonr(await run_in_threadpool(fleet.history, request.path_params["cid"], since))


async def engine(request: Request) -> Response:
    snap = await run_in_threadpool(fleet_of(request).snapshot)
    return jsonr(snap["engine"])


def find_alerts(redis: Any, stream: str, camera: str | None, event: str | None, limit: int) -> list[dict]:
    """The newest `limit` alerts of the stream with this camera and event, among its last ALERT_SCAN entries."""
    out: list[dict] = []
    last, scanned = "+", 0
    while len(out) < limit and scanned < ALERT_SCAN:
        rows = redis.xrevrange(stream, max=last if last == "+" else f"({last}", min="-", count=500)  # "(": after `last`
        if not rows:
            break
        for _entry_id, fields in rows:
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


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw or "50")
        if not 1 <= limit <= 1000:
            raise ValueError
    except ValueError:
        raise ApiError(422, "limit: a number from 1 to 1000", [{"path": "limit", "msg": "a number from 1 to 1000",
                                                               "got": raw}]) from None
    return limit


async def alerts(request: Request) -> Response:
    """?camera=&event=&limit=: recent alerts from the stream, newest first."""
    stream = fleet_of(request).pipe.cfg.redis.stream
    q = request.query_params
    limit = _limit(q.get("limit"))
    try:
        found = await run_in_threadpool(find_alerts, server_of(request).redis, stream, q.get("camera") or None,
                                        q.get("event") or None, limit)
    except Exception as e:  # Redis down
        raise ApiError(503, f"Redis: {e}") from None
    return jsonr(found)


async def evidence_of(request: Request) -> Response:
    """An alert's keyframe.jpg or audio.wav, from Redis while its evidence.ttl lasts."""
    fleet_of(request)
    alert_id, name = request.path_params["aid"], request.path_params["name"]
    if not ALERT_ID.match(alert_id) or name not in EVIDENCE:
        raise ApiError(404, "no such evidence")
    kind, media = EVIDENCE[name]
    key = evidence.keys("streamer:evidence", alert_id)[kind]
    try:
        data = await run_in_threadpool(server_of(request).redis.get, key)
    except Exception as e:
        raise ApiError(503, f"Redis: {e}") from None
    if data is None:
        raise ApiError(404, f"no {kind} for alert {alert_id} (none was stored, or its evidence.ttl passed)")
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})
