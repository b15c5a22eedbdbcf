"""Engine benchmark: the default model on ONNX Runtime CPU vs torch eager (and TensorRT where present).

    python -m benchmarks.engine [--json FILE] [--threads N] [--seconds S]

Same weights, same thread count, real windows (the bundled demo clip through the live ingest code).
Per backend and batch size: windows/s and per-batch latency (median and p99).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.runtime.select import open_runtime, tensorrt_importable
from streamer.ingest.clip import clip_windows

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 4, 8, 16)


def real_feeds(model: Path, batch: int) -> list[dict[str, np.ndarray]]:
    windows = clip_windows(ROOT / "streamer" / "assets" / "demo.mp4", espec.load_spec(model))
    feeds = []
    for i in range(0, len(windows), batch):
        ws = [windows[(i + j) % len(windows)] for j in range(batch)]
        feeds.append({
            espec.INPUT_VIDEO: np.stack([w.video for w in ws]),
            espec.INPUT_AUDIO: np.stack([w.audio for w in ws]),
            espec.INPUT_VIDEO_MASK: np.array([w.video_mask for w in ws], np.float32),
            espec.INPUT_AUDIO_MASK: np.array([w.audio_mask for w in ws], np.float32),
        })
    return feeds


def measure(runtime, feeds, batch: int, seconds: float) -> dict:
    for f in feeds[:3]:
        runtime.infer(f)
    lat = []
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        runtime.infer(feeds[i % len(feeds)])
        lat.append(time.perf_counter() - t)
        i += 1
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {"windows_per_s": round(len(lat) * batch / wall, 1), "batch_ms_p50": round(float(np.median(ms)), 2),
            "batch_ms_p99": round(float(np.percentile(ms, 99)), 2), "batches": len(lat)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--seconds", type=float, default=5.0, help="per backend and batch")
    p.add_argument("--model", default=str(espec.DEFAULT_MODEL))
    args = p.parse_args(argv)
    model = Path(args.model)
    backends = ["onnxruntime", "torch"] + (["tensorrt"] if tensorrt_importable() else [])
    out: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
                 "model": model.name, "threads": args.threads, "rows": []}
    print(f"{'backend':12} {'batch':>5} {'windows/s':>10} {'batch ms p50':>13} {'batch ms p99':>13}")
    for backend in backends:
        with open_runtime(model, backend=backend, threads=args.threads) as rt:
            for b in BATCHES:
                r = measure(rt, real_feeds(model, b), b, args.seconds)
                out["rows"].append({"backend": backend, "batch": b, **r})
                print(f"{backend:12} {b:5d} {r['windows_per_s']:10.1f} {r['batch_ms_p50']:13.2f} {r['batch_ms_p99']:13.2f}")
    by = {(r["backend"], r["batch"]): r["windows_per_s"] for r in out["rows"]}
    out["ort_windows_per_s_b8"] = by[("onnxruntime", 8)]
    out["torch_windows_per_s_b8"] = by[("torch", 8)]
    out["ort_vs_torch_b8"] = round(by[("onnxruntime", 8)] / by[("torch", 8)], 2)
    print(f"ort_vs_torch_b8 = {out['ort_vs_torch_b8']} (target >= 1.5); ort_windows_per_s_b8 = {out['ort_windows_per_s_b8']} (target >= 40)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
