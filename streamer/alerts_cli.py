"""`streamer alerts` and `streamer stats`: read what a running streamer wrote to Redis."""

from __future__ import annotations

import argparse
import json
import sys

TABLE = "{time:24}  {camera:12}  {event:16}  {state:5}  {score:>6}  {level:>9}  {e2e:>8}  {id:36}  {top}"


def _print_alert(alert: dict, fmt: str) -> None:
    """One alert as JSON or as a table row (schema version 1 documents have no level or top scores: `-`)."""
    if fmt == "json":
        print(json.dumps(alert), flush=True)
        return
    e2e = alert.get("latency_ms", {}).get("end_to_end")
    level = alert.get("level")
    top = ", ".join(f"{s['class']} {s['score']:.2f}" for s in alert.get("top") or []) or "-"
    print(TABLE.format(time=alert["time"], camera=alert["camera"], event=alert["event"], state=alert["state"],
                       score=f"{alert['score']:.3f}", level=f"{level['rms_dbfs']:.1f} dB" if level else "-",
                       e2e=f"{e2e:.0f} ms" if e2e is not None else "-", id=alert["id"], top=top), flush=True)


def cmd_alerts(args: argparse.Namespace) -> int:
    import redis

    from streamer.errors import redact
    from streamer.outputs import reader
    from streamer.outputs.alerts import connect, default_url

    if args.claim_idle is not None and (not args.group or args.claim_idle < 0):
        print("--claim-idle: needs --group and a number of seconds >= 0", file=sys.stderr)
        return 2
    url = args.redis or default_url()
    client = connect(url)
    if args.format == "table":
        print(TABLE.format(time="time", camera="camera", event="event", state="state", score="score", level="level",
                           e2e="e2e", id="id", top="top scores"))
    try:
        if args.follow:
            alerts = reader.follow(client, args.channel_prefix, args.camera, args.duration)
        elif args.group:
            alerts = reader.group(client, args.stream, args.group, args.consumer, duration=args.duration, claim_idle=args.claim_idle)
        elif args.since is not None:
            alerts = iter(reader.since(client, args.stream, args.since, args.last))
        else:
            alerts = iter(reader.last(client, args.stream, args.last))
        for alert in alerts:
            if (args.camera and alert["camera"] != args.camera) or (args.event and alert["event"] != args.event):
                continue
            _print_alert(alert, args.format)
    except redis.ConnectionError as e:
        print(f"cannot reach Redis at {redact(url)}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import redis

    from streamer.errors import redact
    from streamer.outputs import reader
    from streamer.outputs.alerts import connect, default_url

    url = args.redis or default_url()
    try:
        stats = reader.latest_stats(connect(url), args.stream)
    except redis.ConnectionError as e:
        print(f"cannot reach Redis at {redact(url)}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats))
        return 0
    cols = ("replica", "fps", "windows_per_s", "latency_p50_ms", "latency_p99_ms", "dropped_windows", "alerts")
    print(f"{'camera':16}" + "".join(f"{c:>16}" for c in cols))
    for cam, rec in stats.items():
        print(f"{cam:16}" + "".join(f"{rec.get(c, '-'):>16}" for c in cols))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `alerts` and `stats` to the `streamer` subcommands."""
    s = sub.add_parser("alerts", help="print alerts from Redis (the stream by default)")
    s.add_argument("--redis", default=None, help="Redis URL (default: $STREAMER_REDIS_URL, a running demo, or localhost)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--follow", action="store_true", help="follow live alerts (pub/sub)")
    how.add_argument("--since", default=None, metavar="ID", help="read the stream after this entry id (0 = from the start)")
    how.add_argument("--group", default=None, help="read as a member of this consumer group, acknowledging each alert")
    s.add_argument("--consumer", default="cli", help="consumer name within --group")
    s.add_argument("--claim-idle", type=float, default=None, metavar="S",
                   help="with --group: also take over alerts other consumers left unacknowledged for more than S seconds (XAUTOCLAIM)")
    s.add_argument("--last", type=int, default=100, help="how many alerts to read from the stream")
    s.add_argument("--camera", default=None, help="only this camera")
    s.add_argument("--event", default=None, help="only this event")
    s.add_argument("--format", choices=("json", "table"), default="json")
    s.add_argument("--stream", default="streamer:alerts")
    s.add_argument("--channel-prefix", default="streamer:alerts")
    s.add_argument("--duration", type=float, default=None, help="with --follow or --group: stop after N seconds")
    s.set_defaults(fn=cmd_alerts)

    s = sub.add_parser("stats", help="per-camera figures from the stats stream")
    s.add_argument("--redis", default=None, help="Redis URL (default as for alerts)")
    s.add_argument("--stream", default="streamer:stats")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_stats)
