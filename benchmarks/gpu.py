"""GPU check: the torch backend on CUDA and PyAV's NVDEC decoding, on a host with an NVIDIA GPU.

    python -m benchmarks.gpu --json FILE [--seconds 20]

One command, a few minutes. Measures:
- the default model on the torch backend (engines/runtime/torch.py's TorchRuntime, device cuda) at batch
  1, 8 and 64, FP32 and FP16 (torch.autocast to float16 around the same runtime): windows per second and
  batch latency p50/p99 over `--seconds` per setting, each call through `Runtime.infer` (host arrays in,
  host arrays out: the copies are counted, as in the engine process);
- PyAV decoding benchmarks/ingest.py's 60 s 1080p30 file with NVDEC (`hwaccel cuda`, no software
  fallback; frames copied back to system memory, as the ingest does) and, beside it, on the CPU.
It writes JSON. A host without CUDA (no NVIDIA driver, or a CPU-only torch) gets a one-line message on
stderr, exit code 2, and a JSON file saying it was skipped and why. TensorRT is not measured here
(`streamer engine build` and benchmarks.engine on a GPU host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 64)
SKIPPED = 2  # exit code when there is no GPU to measure


def cuda_missing() -> str | None:
    """Why CUDA cannot be measured here (None: it can)."""
    if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
        return "no NVIDIA GPU or driver on this host (no /dev/nvidiactl, no nvidia-smi)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install 'streamer[train]' with a CUDA build of torch)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (a CPU-only build, or the driver does not match)"
    return None


def feed(spec, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_VIDEO, INPUT_VIDEO_MASK

    rng = np.random.default_rng(seed)
    return {INPUT_VIDEO: rng.integers(0, 256, (n, spec.frames, spec.height, spec.width, 3), dtype=np.uint8),
            INPUT_AUDIO: (rng.standard_normal((n, spec.samples)) * 0.1).astype(np.float32),
            INPUT_VIDEO_MASK: np.ones(n, np.float32), INPUT_AUDIO_MASK: np.ones(n, np.float32)}


def torch_cuda(seconds: float) -> dict:
    import torch

    from engines.runtime.torch import TorchRuntime
    from engines.spec import DEFAULT_MODEL

    rt = TorchRuntime(DEFAULT_MODEL, device="cuda")
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "model": f"{rt.spec.name} {rt.spec.version}", "runs": {}}
    try:
        for precision in ("fp32", "fp16"):
            for b in BATCHES:
                x = feed(rt.spec, b)

                def call() -> None:
                    with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"):
                        rt.infer(x)

                for _ in range(5):  # warm-up: kernels chosen, memory pooled
                    call()
                torch.cuda.synchronize()
                lat = []
                t_end = time.perf_counter() + seconds
                while time.perf_counter() < t_end or len(lat) < 10:
                    t = time.perf_counter()
                    call()  # infer returns host arrays: the call has synchronised
                    lat.append(time.perf_counter() - t)
                arr = np.asarray(lat) * 1000
                out["runs"][f"{precision}_b{b}"] = {
                    "batch": b, "precision": precision, "calls": len(lat),
                    "windows_per_s": round(b * len(lat) / float(np.sum(arr) / 1000), 1),
                    "p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2)}
                r = out["runs"][f"{precision}_b{b}"]
                print(f"torch cuda {precision} batch {b:3d}: {r['windows_per_s']:9.1f} windows/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms",
                      flush=True)
    finally:
        rt.close()
    return out


def nvdec(seconds: float) -> dict:
    import av
    from av.codec.hwaccel import HWAccel

    from benchmarks.ingest import make_media

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
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per batch size and precision, and for each decode")
    args = p.parse_args(argv)
    out: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "host": platform.node(),
                 "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version()}}
    why = cuda_missing()
    if why:
        out |= {"skipped": True, "reason": why}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"benchmarks.gpu: skipped: {why}; wrote {args.json}", file=sys.stderr)
        return SKIPPED
    out["skipped"] = False
    out["torch_cuda"] = torch_cuda(args.seconds)
    out["decode"] = nvdec(args.seconds)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
