"""CPU per window of the shipped model against another one, side by side: what a camera's inference costs.

    python -m benchmarks.engine_cpu --baseline V4_DIR/fusion.onnx [--threads 1 2] [--rounds 6] [--json FILE]

Both models run in one process on ONNX Runtime CPU over the same real windows (the demo clip through the
live ingest code, each model at its own geometry) as 8 live cameras send them (benchmarks/feeds.py), at batch 8, in alternating rounds so that other load
falls on both alike. Reported per model and thread count: process CPU ms and wall ms per window, and the
share of this machine's CPUs one camera's inference takes at the default hop (2 windows a second).
For v4: `git show 58cbc04:engines/weights/<f>` for fusion.onnx, fusion.json, fusion.yamnet.bin and
fusion.mobilenet.bin into one folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

from benchmarks.feeds import CameraFeeds
from engines import spec as espec
from engines.runtime.onnxruntime import OnnxRuntime
from streamer.ingest.clip import clip_windows

CLIP = Path(__file__).resolve().parents[1] / "streamer" / "assets" / "demo.mp4"
BATCH, WINDOWS_PER_S = 8, 2.0
ROUND_BATCHES = 2  # batches per model and round


def measure(models: dict[str, Path], threads: int, rounds: int) -> dict[str, dict]:
    runtimes = {k: OnnxRuntime(p, intra_op_threads=threads) for k, p in models.items()}
    feeds = {}
    for k, rt in runtimes.items():
        feeds[k] = CameraFeeds(clip_windows(CLIP, rt.spec), BATCH)
        rt.infer(feeds[k].next())  # warm-up
    cpu = {k: 0.0 for k in models}
    wall = {k: 0.0 for k in models}
    n = {k: 0 for k in models}
    for _ in range(rounds):
        for k, rt in runtimes.items():
            batches = [feeds[k].next() for _ in range(ROUND_BATCHES)]
            c0, w0 = time.process_time(), time.perf_counter()
            for f in batches:
                rt.infer(f)
            cpu[k] += time.process_time() - c0
            wall[k] += time.perf_counter() - w0
            n[k] += BATCH * ROUND_BATCHES
    for rt in runtimes.values():
        rt.close()
    cpus = os.cpu_count() or 1
    return {k: {"version": runtimes[k].spec.version, "cpu_ms_per_window": round(cpu[k] / n[k] * 1000, 1),
                "wall_ms_per_window": round(wall[k] / n[k] * 1000, 1),
                "camera_pct_of_machine": round(cpu[k] / n[k] * WINDOWS_PER_S / cpus * 100, 2)} for k in models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="the other model's ONNX file")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    models = {"shipped": espec.DEFAULT_MODEL, "baseline": args.baseline}
    doc = {"date": date.today().isoformat(), "machine": f"{os.cpu_count()} CPUs {platform.machine()}",
           "loadavg_before": round(os.getloadavg()[0], 2), "batch": BATCH,
           "by_threads": {str(t): measure(models, t, args.rounds) for t in args.threads}}
    print(json.dumps(doc["by_threads"]))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
