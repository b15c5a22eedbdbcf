"""Engine benchmark: the default model on ONNX Runtime CPU vs torch eager (and TensorRT where present).

    python -m benchmarks.engine [--json FILE] [--threads N] [--seconds S] [--model M]

Baseline: torch eager (the PyTorch reference runtime, the same weights). Both run in one process with
the same intra-op thread count, on real windows (the bundled demo clip through the live ingest code)
as `batch` live cameras send them (benchmarks/feeds.py: consecutive windows per camera, never repeated
content), at batch 1, 4, 8 and 16. Per backend and batch: windows/s and per-batch latency (median and p99).

The backends are measured in alternating slices (ORT, torch, torch, ORT, ...) rather than one after the
other, so that load from other processes on a shared machine falls on both alike and the ratio stays
meaningful; the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.feeds import CameraFeeds
from engines import spec as espec
from engines.runtime.select import open_runtime, tensorrt_importable
from streamer.ingest.clip import clip_windows

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "streamer" / "assets" / "demo.mp4"
BATCHES = (1, 4, 8, 16)
SLICES = 6  # alternating slices per backend and batch size


class Meter:
    def __init__(self, windows: list, batch: int) -> None:
        self.feeds = CameraFeeds(windows, batch)
        self.lat: list[float] = []
        self.windows = 0

    def run(self, runtime: Any, seconds: float) -> None:
        spent = 0.0
        while spent < seconds:
            feed = self.feeds.next()  # made outside the timed call
            t = time.perf_counter()
            runtime.infer(feed)
            self.lat.append(time.perf_counter() - t)
            spent += self.lat[-1]
            self.windows += self.feeds.batch

    def row(self) -> dict:
        ms = np.array(self.lat) * 1000
        return {"windows_per_s": round(self.windows / float(np.sum(self.lat)), 1), "batch_ms_p50": round(float(np.median(ms)), 2),
                "batch_ms_p99": round(float(np.percentile(ms, 99)), 2), "batches": len(self.lat)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="intra-op threads, the same for every backend")
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per backend and batch size")
    p.add_argument("--model", default=str(espec.DEFAULT_MODEL))
    args = p.parse_args(argv)
    model = Path(args.model)
    spec = espec.load_spec(model)
    windows = clip_windows(CLIP, spec)
    backends = ["onnxruntime", "torch"] + (["tensorrt"] if tensorrt_importable() else [])
    load_before = os.getloadavg()
    out: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                             "loadavg_before": [round(x, 2) for x in load_before]},
                 "model": model.name, "model_version": spec.version, "date": date.today().isoformat(),
                 "clip": CLIP.name, "windows": len(windows),
                 "threads": args.threads, "baseline": "torch eager (same weights, same threads)", "rows": []}
    runtimes = {b: open_runtime(model, backend=b, threads=args.threads, max_batch=max(BATCHES)) for b in backends}
    try:
        print(f"{'backend':12} {'batch':>5} {'windows/s':>10} {'batch ms p50':>13} {'batch ms p99':>13}")
        for b in BATCHES:
            meters = {name: Meter(windows, b) for name in backends}
            for name, rt in runtimes.items():  # warm-up: first calls allocate
                rt.infer(CameraFeeds(windows, b).next())
            for s in range(SLICES):
                for name in (backends if s % 2 == 0 else backends[::-1]):
                    meters[name].run(runtimes[name], args.seconds / SLICES)
            for name in backends:
                r = meters[name].row()
                out["rows"].append({"backend": name, "batch": b, **r})
                print(f"{name:12} {b:5d} {r['windows_per_s']:10.1f} {r['batch_ms_p50']:13.2f} {r['batch_ms_p99']:13.2f}")
    finally:
        for rt in runtimes.values():
            rt.close()
    out["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    by = {(r["backend"], r["batch"]): r["windows_per_s"] for r in out["rows"]}
    out["ort_windows_per_s_b8"] = by[("onnxruntime", 8)]
    out["torch_windows_per_s_b8"] = by[("torch", 8)]
    out["ort_vs_torch_b8"] = round(by[("onnxruntime", 8)] / by[("torch", 8)], 2)
    if "tensorrt" in backends:
        out["tensorrt_windows_per_s_b8"] = by[("tensorrt", 8)]
    print(f"ort_vs_torch_b8 = {out['ort_vs_torch_b8']} (target >= 1.5); "
          f"ort_windows_per_s_b8 = {out['ort_windows_per_s_b8']} (target >= 40); "
          f"load average {load_before[0]:.2f} -> {out['machine']['loadavg_after'][0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
