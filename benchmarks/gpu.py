"""GPU check: the torch backend on CUDA and PyAV's NVDEC decoding, on a host with an NVIDIA GPU.

    python -m benchmarks.gpu --json FILE [--seconds 10]

One command, a few minutes. Needs numpy, torch (a CUDA build), onnx and onnxruntime, nothing else of
streamer's (no pydantic, PyAV or Redis: PyAV only for the decode part, which is skipped, with the reason
recorded, where it is missing). Measures:
- the default model on the torch backend (engines/runtime/torch.py's TorchRuntime on `--device`, cuda by
  default) at batch 1, 8 and 64, FP32 and FP16 (autocast), CUDA graphs off and on: windows per second
  and batch latency p50/p99 over `--seconds` per setting, each call through `Runtime.infer` (host arrays
  in, host arrays out: the copies are counted, as in the engine process). Every call of a setting sends
  the same windows, so after the first one their poses come from the pose cache (the pose graph runs on
  the CPU, on ONNX Runtime): `pose_cached_ms` is that step alone, and `pose_ms_per_frame` what one new
  frame costs on this host's CPU. `max_logit_diff` compares each setting's logits with FP32 eager at batch 8;
- PyAV decoding benchmarks/ingest.py's 60 s 1080p30 file with NVDEC (`hwaccel cuda`, no software
  fallback; frames copied back to system memory, as the ingest does) and, beside it, on the CPU.
It writes JSON. Without CUDA (no NVIDIA driver, or a CPU-only torch) and `--device cuda`, it prints one
line on stderr, exits with code 2 and writes a JSON file saying it was skipped and why. `--device cpu`
runs the same code on the CPU (a check of the script, not a GPU figure; the JSON says which device).
TensorRT is not measured here (`streamer engine build` and benchmarks.engine on a GPU host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 64)
SETTINGS = (("fp32", False), ("fp32", True), ("fp16", False), ("fp16", True))  # (precision, CUDA graphs)
PARITY_BATCH = 8
SKIPPED = 2  # exit code when there is no GPU to measure


def cuda_missing() -> str | None:
    """Why torch cannot use CUDA here (None: it can)."""
    from engines.runtime.select import torch_cuda_missing

    return torch_cuda_missing()


def feed(spec: Any, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_VIDEO, INPUT_VIDEO_MASK

    rng = np.random.default_rng(seed)
    return {INPUT_VIDEO: rng.integers(0, 256, (n, spec.frames, spec.height, spec.width, 3), dtype=np.uint8),
            INPUT_AUDIO: (rng.standard_normal((n, spec.samples)) * 0.1).astype(np.float32),
            INPUT_VIDEO_MASK: np.ones(n, np.float32), INPUT_AUDIO_MASK: np.ones(n, np.float32)}


def timed(call: Any, seconds: float, least: int = 10) -> np.ndarray:
    """Milliseconds of each call over `seconds` (at least `least` calls), after 5 warm-up calls."""
    for _ in range(5):
        call()
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < least:
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    return np.asarray(lat) * 1000


def pose_ms_per_frame(spec: Any, frames: int = 8) -> float:
    """One new frame through the pose graph on this host's CPU (no cache)."""
    from engines.pose import PoseRunner

    runner = PoseRunner(cache_frames=0)
    video = feed(spec, 1, seed=1)["video"][0]
    runner.run(video[:1])  # session made, first run
    t = time.perf_counter()
    runner.run(np.concatenate([video] * (frames // len(video) + 1))[:frames])
    return round((time.perf_counter() - t) * 1000 / frames, 2)


def run_setting(rt: Any, seconds: float, batches: tuple[int, ...]) -> tuple[dict, np.ndarray | None]:
    """{batch: figures} of one runtime, and its logits at PARITY_BATCH (when measured)."""
    from engines.spec import OUTPUT_LOGITS

    runs, logits = {}, None
    for b in batches:
        x = feed(rt.spec, b)
        arr = timed(lambda: rt.infer(x), seconds)  # infer returns host arrays: each call has synchronised
        pose = timed(lambda: rt.poses(x["video"], x["video_mask"]), min(seconds, 1.0))
        runs[str(b)] = {"batch": b, "calls": len(arr), "windows_per_s": round(b * len(arr) / float(np.sum(arr) / 1000), 1),
                        "p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2),
                        "pose_cached_ms": round(float(np.percentile(pose, 50)), 2)}
        if b == PARITY_BATCH:
            logits = rt.infer(x)[OUTPUT_LOGITS]
        r = runs[str(b)]
        print(f"torch {rt.device} {rt.precision} graphs {'on ' if rt.graphs else 'off'} batch {b:3d}: "
              f"{r['windows_per_s']:9.1f} windows/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
              f"(poses from the cache {r['pose_cached_ms']:.2f} ms)", flush=True)
    return runs, logits


def torch_runs(device: str, seconds: float, batches: tuple[int, ...]) -> dict:
    import torch

    from engines.runtime.torch import TorchRuntime
    from engines.spec import DEFAULT_MODEL, load_spec

    spec = load_spec(DEFAULT_MODEL)
    cuda = device.startswith("cuda")
    out: dict = {"device": device, "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor(),
                 "torch": torch.__version__, "cuda": torch.version.cuda, "model": f"{spec.name} {spec.version}",
                 "pose_ms_per_frame": pose_ms_per_frame(spec), "settings": []}
    reference = None
    for precision, graphs in SETTINGS:
        with TorchRuntime(DEFAULT_MODEL, device=device, precision=precision, graphs=graphs) as rt:
            runs, logits = run_setting(rt, seconds, batches)
            setting = {"precision": rt.precision, "graphs": rt.graphs, "runs": runs}
        if logits is not None:
            reference = logits if reference is None else reference
            setting["max_logit_diff"] = round(float(np.abs(logits - reference).max()), 6)
        out["settings"].append(setting)
    return out


def nvdec(seconds: float) -> dict:
    try:
        import av
        from av.codec.hwaccel import HWAccel

        from benchmarks.ingest import make_media
    except ImportError as e:
        return {"skipped": True, "reason": f"{e.__class__.__name__}: {e}"}
    path = make_media("1080p30", 60)
    out: dict = {"file": path.name, "av": av.__version__}
    for name, hw in (("nvdec", HWAccel(device_type="cuda", allow_software_fallback=False)), ("cpu", None)):
        try:
            with av.open(str(path), hwaccel=hw) if hw else av.open(str(path)) as c:
                vs = c.streams.video[0]
                vs.thread_type = "AUTO"
                n, t0 = 0, time.perf_counter()
                for frame in c.decode(vs):
                    frame.to_ndarray()  # to system memory (NVDEC: a copy back from the GPU), as the ingest's conversion needs
                    n += 1
                    if time.perf_counter() - t0 > seconds:
                        break
                wall = time.perf_counter() - t0
            out[name] = {"frames": n, "fps": round(n / wall, 1), "realtime_streams_1080p30": round(n / wall / 30, 2)}
        except Exception as e:  # NVDEC missing from this FFmpeg build, or no device: said, not hidden
            out[name] = {"error": f"{e.__class__.__name__}: {e}"}
        print(f"decode 1080p30 {name}: {out[name]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="gpu.json", help="write the results here (default gpu.json)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per batch size and setting, and for each decode")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a check of this script, not a GPU figure)")
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help=f"batch sizes (default {BATCHES})")
    args = p.parse_args(argv)
    out: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "host": platform.node(),
                 "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version()}}
    why = cuda_missing() if args.device != "cpu" else None
    if why:
        out |= {"skipped": True, "reason": why}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"benchmarks.gpu: skipped: {why}; wrote {args.json}", file=sys.stderr)
        return SKIPPED
    out["skipped"] = False
    out["torch"] = torch_runs(args.device, args.seconds, tuple(args.batches))
    out["decode"] = nvdec(args.seconds) if args.device != "cpu" else {"skipped": True, "reason": "--device cpu"}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
