"""`streamer` command line: check, run, demo, alerts, stats, probe, engine, eval, learn-normal, train."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CLIP = ASSETS / "demo.mp4"


def _setup_logging(verbose: bool) -> None:
    from streamer.errors import install_log_redaction

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()  # no URL password or credential query parameter in any log line


STOP_BUDGET_S = 3.0  # SIGINT/SIGTERM to exit, at the most


class _Stopper:
    """SIGINT and SIGTERM (to the main pid alone or to the whole group): the first asks the pipeline to
    stop (its own deadlines keep that well under STOP_BUDGET_S; during start-up it raises Stopped,
    which unwinds the start). If the stop is still going shortly before STOP_BUDGET_S, or on a second
    signal: the hard stop, which writes every undelivered alert to the spool, SIGKILLs the children and
    exits."""

    def __init__(self) -> None:
        self.pipe = None
        self.signalled: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, _frame: object) -> None:
        import threading

        from streamer.errors import Stopped

        name = signal.Signals(signum).name
        if self.signalled is not None:
            self.hard(f"second {name}")
            return
        self.signalled = name
        os.write(2, f"[streamer] {name}: stopping\n".encode())  # not print(): a handler may interrupt a print
        timer = threading.Timer(STOP_BUDGET_S - 0.5, self.hard, args=("the stop took too long",))
        timer.daemon = True
        timer.start()
        if self.pipe is None:
            raise Stopped(name)  # still starting: unwind the start-up (it cleans up after itself)
        self.pipe.stop()

    def hard(self, why: str) -> None:
        from streamer import procs
        from streamer.outputs import metrics

        os.write(2, f"[streamer] {why}: undelivered alerts to the spool, children killed\n".encode())
        try:
            if self.pipe is not None and self.pipe.sink is not None:
                self.pipe.sink.abandon()
        except Exception:
            pass
        procs.kill_children(wait=0.3)
        try:
            if self.pipe is not None:
                self.pipe._close_rings()
        except Exception:
            pass
        metrics.cleanup()
        os._exit(0)


def cmd_check(args: argparse.Namespace) -> int:
    from streamer import startup
    from streamer.config import load_config
    from streamer.errors import ConfigError

    try:
        cfg = load_config(args.file)
        startup.check(cfg, args.file)  # every rule `streamer run` applies before it starts
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(cfg.cameras)} camera(s))")
    return 0


def _run(cfg, duration: float | None, print_alerts: bool, summary_every: float, path: str | None = None) -> int:
    from streamer.errors import Stopped

    stopper = _Stopper()
    stopper.install()
    hup: list[int] = []
    signal.signal(signal.SIGHUP, lambda *_: hup.append(1))  # while starting: applied once the pipeline runs
    try:
        server, pipe = _start(cfg, print_alerts)
    except Stopped:
        print("[streamer] stopped while starting", file=sys.stderr)
        return 0
    stopper.pipe = pipe
    _serve(cfg, pipe, server, path, hup)
    try:
        if not stopper.signalled:
            pipe.run(duration=duration, summary_every=summary_every, summary=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        _close(pipe, server)
    if stopper.signalled:
        print(f"[streamer] stopped ({stopper.signalled})", file=sys.stderr)
    return 0


def _start(cfg, print_alerts: bool):
    """The HTTP server (first: a port that is taken, or a public host without a token, fails before anything
    is started) and the pipeline. On any failure, Stopped included, what was started is closed."""
    from streamer.config import http_settings
    from streamer.outputs import metrics
    from streamer.pipeline import Pipeline
    from streamer.web.server import HttpServer

    def on_alert(alert: dict) -> None:
        if print_alerts:
            print(json.dumps(alert), flush=True)

    server = None
    try:
        http = http_settings(cfg)
        if http.port:
            server = HttpServer(http.host, http.port, http.token).start()
            print(f"[streamer] status page {server.url} (API {server.url}api/, metrics {server.url}metrics"
                  f"{', Bearer token required on /api' if http.token else ''})", file=sys.stderr, flush=True)
        return server, Pipeline(cfg, on_alert=on_alert)
    except BaseException:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if server is not None:
            server.close()
        metrics.cleanup()
        raise


def _serve(cfg, pipe, server, path: str | None, hup: list[int]) -> None:
    """The pipeline is built: the API and page get the fleet, SIGHUP reloads the file (a SIGHUP that came
    while starting is applied now), /readyz says ready, and the banner says where alerts go."""
    import threading

    from streamer.errors import redact
    from streamer.fleet import Fleet
    from streamer.outputs import metrics

    fleet = Fleet(pipe, path, loaded=cfg)
    if server is not None:
        server.attach(fleet)  # the API and the page: cameras, alerts, changes

    def reload(*_: object) -> None:  # on a thread: it waits for the pipeline's
        threading.Thread(target=fleet.reload, name="streamer:reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload)
    if hup:
        threading.Timer(0.5, reload).start()
    metrics.READY.set()  # /readyz can answer 200: the pipeline is built (engine loaded)
    print(f"[streamer] alerts: Redis {redact(pipe.redis_url)} stream {cfg.redis.stream}, channels {cfg.redis.channel_prefix}:<camera>; "
          f"engine {pipe.backend} on {pipe.engine.device} model {pipe.spec.name} v{pipe.spec.version}", file=sys.stderr)


def _close(pipe, server) -> None:
    from streamer.outputs import metrics

    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if server is not None:
        server.begin_close()  # event streams end now, the server itself after the pipeline
    pipe.close()
    if server is not None:
        server.close()
    metrics.cleanup()


def cmd_run(args: argparse.Namespace) -> int:
    from streamer import startup
    from streamer.config import load_config
    from streamer.errors import ConfigError
    from streamer.inference.process import EngineStartError

    try:
        cfg = load_config(args.file)
        startup.check(cfg, args.file)  # the same rules as `streamer check`, before anything starts
        return _run(cfg, args.duration, print_alerts=args.print_alerts, summary_every=args.summary_every, path=args.file)
    except (ConfigError, EngineStartError) as e:
        print(e, file=sys.stderr)
        return 1


# The demo camera's own threshold for its fight: the model's (0.866) is set for 1 false alert per hour
# on the hardest no-fight clips; the demo clip's fight peaks at 0.81, its quiet part at 0.76 at most
# (docs/model.md): the midpoint, a setting for this clip, not a measurement.
DEMO_THRESHOLDS = {"fight": 0.78}


def cmd_demo(args: argparse.Namespace) -> int:
    from streamer.config import parse_config
    from streamer.errors import ConfigError
    from streamer.inference.process import EngineStartError

    try:
        given = {k: float(v) for k, v in (t.split("=", 1) for t in args.threshold or [])}
    except ValueError:
        print(f"--threshold: expected CLASS=VALUE, got {args.threshold}", file=sys.stderr)
        return 2
    own = {k: v for k, v in DEMO_THRESHOLDS.items() if k not in given}
    data: dict = {
        "cameras": [{"id": "demo", "url": str(args.clip), "realtime": True, "loop": True, "thresholds": own}],
        "http": {"host": "127.0.0.1", "port": args.metrics_port},
    }
    if own:
        print(f"[streamer] demo camera thresholds {own} (the model's own are for 1 false alert per camera-hour on "
              "hard normal footage; --threshold CLASS=V overrides)", file=sys.stderr, flush=True)
    if args.redis:
        data["redis"] = {"url": args.redis}
    if given:
        data["detect"] = {"thresholds": given}
    try:
        cfg = parse_config(data, "demo")
        return _run(cfg, args.duration, print_alerts=True, summary_every=5.0)
    except (ConfigError, EngineStartError) as e:
        print(e, file=sys.stderr)
        return 1


def cmd_probe(args: argparse.Namespace) -> int:
    from streamer.errors import ConfigError, SourceError
    from streamer.ingest.opening import SourceOptions
    from streamer.ingest.probe import probe

    try:
        info = probe(args.url, args.seconds, SourceOptions(open_timeout=args.timeout, stall_timeout=args.timeout))
    except (SourceError, ConfigError) as e:
        print(e, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['url']}  format {info['format']}" + (f"  duration {info['duration_s']} s" if "duration_s" in info else ""))
    for s in info["streams"]:
        extra = "  ".join(f"{k} {v}" for k, v in s.items() if k not in ("index", "type", "codec"))
        print(f"  #{s['index']} {s['type']:5} {s['codec']:10} {extra}")
    d = info["decode"]
    print(f"  decoded {d['video_frames']} video frames in {d['seconds']} s: {d['video_fps']} fps")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return train(args.rest)


def train(argv: list[str]) -> int:
    """`streamer train ...`: its own parser (streamer/train/cli.py) takes every argument."""
    try:
        import torch  # noqa: F401
        import tqdm  # noqa: F401

        from streamer.train.cli import main as train_main
    except ImportError as e:
        print(f"training needs the train extra: pip install 'streamer[train]' ({e})", file=sys.stderr)
        return 1
    return int(train_main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    from streamer.alerts_cli import add_parsers as add_alerts_parsers
    from streamer.eval_cli import add_parsers as add_eval_parsers
    from streamer.inference.cli import add_parser as add_engine_parser
    from streamer.shard_cli import add_parser as add_shard_parser

    p = argparse.ArgumentParser(prog="streamer", description="Real-time audio-visual event detection for camera fleets.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_pipeline_parsers(sub)  # check, run, demo
    add_alerts_parsers(sub)  # alerts, stats
    _add_probe_parser(sub)
    add_engine_parser(sub)  # engine build|calibrate|info
    add_eval_parsers(sub)  # eval classify|anomaly, learn-normal
    add_shard_parser(sub)  # shard plan
    s = sub.add_parser("train", help="train the fusion model's heads: the default recipe or your own classes "
                       "(needs the train extra; streamer train --help)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_train)
    return p


def _add_pipeline_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("check", help="validate a config file (exit 0 ok, 1 invalid)")
    s.add_argument("file")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("run", help="run the pipeline from a config file")
    s.add_argument("file")
    s.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    s.add_argument("--print-alerts", action="store_true", help="also print alerts as JSON lines on stdout")
    s.add_argument("--summary-every", type=float, default=10.0, help="seconds between summary lines on stderr (0 = off)")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("demo", help="a bundled clip played as a live camera, embedded Redis, status page and metrics on 127.0.0.1")
    s.add_argument("--duration", type=float, default=None, help="stop after N seconds (exit 0)")
    s.add_argument("--clip", default=str(DEMO_CLIP), help="clip to play in a loop")
    s.add_argument("--threshold", action="append", default=None, metavar="CLASS=V",
                   help="a detection threshold instead of the model's (repeatable), e.g. fight=0.9")
    s.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    s.add_argument("--port", "--metrics-port", dest="metrics_port", type=int, default=9108,
                   help="port of the status page, API and /metrics (0 = none)")
    s.set_defaults(fn=cmd_demo)


def _add_probe_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("probe", help="show a source's streams and measure its decode rate")
    s.add_argument("url")
    s.add_argument("--seconds", type=float, default=5.0, help="how long to decode (less for a short file)")
    s.add_argument("--timeout", type=float, default=10.0, help="open/read timeout in seconds")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_probe)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # argparse's REMAINDER would not pass options such as --data on
        return train(argv[1:])
    args = build_parser().parse_args(argv)
    if args.cmd in ("run", "demo"):
        # Before prometheus_client is imported: metrics are shared by the whole process tree.
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            import tempfile

            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="streamer-metrics-")
    _setup_logging(args.verbose)
    return _guarded(args)


def _guarded(args: argparse.Namespace) -> int:
    """Every failure is one line on stderr and exit 1 (a config's error list keeps a line per error);
    the traceback only with -v."""
    import traceback

    from streamer.errors import Stopped, StreamerError, redact_text

    try:
        return int(args.fn(args) or 0)
    except Stopped:
        return 0
    except KeyboardInterrupt:
        return 130
    except StreamerError as e:
        if args.verbose:
            traceback.print_exc()
        print(redact_text(str(e)), file=sys.stderr)
        return 1
    except Exception as e:
        if args.verbose:
            traceback.print_exc()
        text = " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"streamer {args.cmd}: {type(e).__name__}: {redact_text(text)} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
