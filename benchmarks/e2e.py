"""End-to-end alert latency, measured by a separate Redis subscriber.

    python -m benchmarks.e2e --cameras 1 8 16 --seconds 120 --json FILE

Each camera plays the bundled demo clip (a quiet scene, then a fight) in a loop at real-time pace,
so events open every loop; camera i's copy is 2 * i levels brighter (`camera_clip`), so no two cameras
show the same pixels. streamer runs as its own process with a real redis-server; this process
subscribes to `streamer:alerts:*` and, for every `start` alert, takes the time from the arrival of
the window's last input (`end_utc`, the wall-clock time of the window end) to the alert arriving on
the channel. The window length itself is not included. Drops come from the `streamer:stats` stream.
The latency is of alerts, so the benchmark needs some: by default the demo camera's own thresholds
(`streamer.cli.DEMO_THRESHOLDS`, which the demo clip's fight crosses every loop; the model's own are set
for 1 false alert per hour and the clip's fight stays under them); `--threshold CLASS=V` sets others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import redis

from engines import spec as espec
from streamer.cli import DEMO_THRESHOLDS
from streamer.net import free_port

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "streamer" / "assets" / "demo.mp4"
CACHE = ROOT / ".cache" / "bench"


def camera_clip(i: int) -> Path:
    """Camera i's copy of the demo clip, every pixel 2 * i levels brighter (re-encoded once, cached): real
    cameras never show the same pixels, and identical ones would let the engine reuse one camera's poses
    for another (its pose cache is keyed by the pixels). Camera 0 plays the clip itself."""
    if i == 0:
        return CLIP
    import av

    out_path = CACHE / f"demo_cam{i}.mp4"
    if out_path.exists():
        return out_path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.mp4")
    with av.open(str(CLIP)) as src, av.open(str(tmp), "w") as dst:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vout = dst.add_stream("libx264", rate=vin.average_rate, options={"preset": "veryfast", "crf": "18"})
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        aout = dst.add_stream("aac", rate=ain.codec_context.sample_rate)
        for frame in src.decode(vin, ain):
            if isinstance(frame, av.VideoFrame):
                rgb = np.clip(frame.to_ndarray(format="rgb24").astype(np.int16) + 2 * i, 0, 255).astype(np.uint8)
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                f.pts, f.time_base = frame.pts, frame.time_base
                dst.mux(vout.encode(f))
            else:
                frame.pts = None
                dst.mux(aout.encode(frame))
        dst.mux(vout.encode(None))
        dst.mux(aout.encode(None))
    tmp.rename(out_path)
    return out_path


def run(cameras: int, seconds: float, workdir: Path, thresholds: dict[str, float] | None = None) -> dict:
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    cfg = workdir / f"e2e_{cameras}.yaml"
    cfg.write_text(json.dumps({
        "cameras": [{"id": f"cam{i:02d}", "url": str(camera_clip(i)), "loop": True} for i in range(cameras)],
        "redis": {"url": url, "spool_dir": str(workdir / f"spool{cameras}"), "stats_interval": 5},
        "http": {"port": 0},
        "detect": {"thresholds": thresholds or {}},
    }))
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.psubscribe("streamer:alerts:*")
    proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(cfg), "--duration", str(seconds),
                             "--summary-every", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latencies, alerts = [], 0
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None and time.monotonic() < deadline:
        msg = sub.get_message(timeout=0.5)
        if not msg or msg["type"] != "pmessage":
            continue
        now = time.time()
        alert = json.loads(msg["data"])
        alerts += 1
        if alert["state"] == "start":
            end = datetime.fromisoformat(alert["end_utc"].replace("Z", "+00:00")).timestamp()
            latencies.append((now - end) * 1000)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, None):
        raise SystemExit(f"streamer failed: {err[-2000:]}")
    stats = {}
    for _id, fields in client.xrevrange("streamer:stats", count=10_000):
        rec = json.loads(fields[b"json"])
        stats.setdefault(rec["camera"], rec)
    server.terminate()
    server.wait()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "cameras": cameras,
        "seconds": seconds,
        "alerts": alerts,
        "start_alerts": len(latencies),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(np.max(lat)), 1),
        "dropped_windows": int(sum(r.get("dropped_windows", 0) for r in stats.values())),
        "windows": int(sum(r.get("windows", 0) for r in stats.values())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--json", default=None)
    p.add_argument("--threshold", action="append", default=None, metavar="CLASS=V",
                   help="a detection threshold for the run (default: the demo's, streamer.cli.DEMO_THRESHOLDS; repeatable)")
    args = p.parse_args(argv)
    thresholds = ({k: float(v) for k, v in (t.split("=", 1) for t in args.threshold)} if args.threshold
                  else dict(DEMO_THRESHOLDS))
    out: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
                 "thresholds": thresholds, "date": datetime.now().strftime("%Y-%m-%d"),
                 "model_version": espec.load_spec(espec.DEFAULT_MODEL).version,  # the config names no model
                 "loadavg_before": round(os.getloadavg()[0], 2), "runs": {}}
    print(f"{'cameras':>8} {'alerts':>7} {'starts':>7} {'p50_ms':>8} {'p99_ms':>8} {'max_ms':>8} {'windows':>8} {'dropped':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.cameras:
            r = run(n, args.seconds, Path(tmp), thresholds)
            out["runs"][str(n)] = r
            print(f"{n:8d} {r['alerts']:7d} {r['start_alerts']:7d} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} "
                  f"{r['windows']:8d} {r['dropped_windows']:8d}")
    if len(args.cameras) == 1:  # the flat keys for a single run
        out |= {k: out["runs"][str(args.cameras[0])][k] for k in ("p50_ms", "p99_ms", "alerts", "dropped_windows")}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
