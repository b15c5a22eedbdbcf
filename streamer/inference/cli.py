"""`streamer engine build | calibrate | info`: the TensorRT build step, INT8 calibration recording, model and runtime facts.

Wired into the main CLI by `add_parser(subparsers)`. Building is separate from running: `streamer run`
never builds an engine, it loads one that `streamer engine build` put in the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any


def _engine_settings(args: argparse.Namespace) -> tuple[str, int]:
    """(model path, max batch) from the flags, else from `--config`'s engine section, else defaults."""
    from engines import spec as espec

    model, max_batch = None, 8
    if args.config:
        from streamer.config import load_config

        cfg = load_config(args.config)
        model, max_batch = cfg.engine.model, cfg.engine.max_batch
    return args.model or model or str(espec.DEFAULT_MODEL), args.max_batch or max_batch


def _runtime_choice(args: argparse.Namespace, model: str, max_batch: int) -> dict[str, Any]:
    """Open the runtime as `streamer run` would (engine.backend, engine.device, ... of `--config`, or the
    flags) and say what it chose and why; an error is reported, not raised."""
    from engines.errors import EngineError
    from engines.runtime.select import open_runtime

    e = None
    if args.config:
        from streamer.config import load_config

        e = load_config(args.config).engine
    backend = args.backend or (e.backend if e else "auto")
    device = args.device or (e.device if e else "auto")
    try:
        with open_runtime(model, backend=backend, device=device, threads=e.threads if e else 0, max_batch=max_batch,
                          precision=e.precision if e else "fp16", engine_cache=args.cache or (e.cache_dir if e else None),
                          cuda_graphs=e.cuda_graphs if e else True) as rt:
            return {"backend": rt.backend, "device": rt.device, "precision": getattr(rt, "precision", "fp32"),
                    "chosen_because": rt.chosen_because}
    except (EngineError, ValueError) as err:
        return {"backend": backend, "device": device, "error": str(err)}


def cmd_info(args: argparse.Namespace) -> int:
    from engines import build, trt_support
    from engines import spec as espec
    from engines.export import model_sha256
    from engines.runtime.select import tensorrt_importable

    model, max_batch = _engine_settings(args)
    spec = espec.load_spec(model)
    info: dict[str, Any] = {
        "model": model, "name": spec.name, "version": spec.version, "classes": list(spec.classes),
        "frames": spec.frames, "size": [spec.height, spec.width], "window_seconds": spec.window_seconds,
        "onnx_sha256": model_sha256(model), "tensorrt_importable": tensorrt_importable(),
    }
    try:
        report = trt_support.tensorrt_op_report(model)
        info.update(ops=report["ops"], opset=report["opset"], tensorrt_ops=report["list"],
                    tensorrt_unsupported_ops=report["unsupported"])
    except ImportError as e:
        info["ops"] = f"unknown: {e} (pip install onnx)"
    cache = Path(args.cache) if args.cache else build.default_cache()
    sha = info["onnx_sha256"]
    info["engine_cache"] = str(cache)
    info["cached_engines"] = [
        {"file": path.name, **{k: v for k, v in asdict(key).items() if k != "onnx_sha256"}}
        for path, key in build.cache_entries(cache) if key.onnx_sha256 == sha
    ]
    info["default_profile"] = list(build.default_profile(max_batch))
    info["runtime"] = _runtime_choice(args, model, max_batch)
    print(json.dumps(info, indent=2))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Decode each source with the live ingest code and record its windows for INT8 calibration."""
    from engines import spec as espec
    from engines.calibrate import record
    from streamer.ingest.opening import SourceOptions
    from streamer.ingest.source import SourceReader, probe_geometry

    model, _ = _engine_settings(args)
    spec = espec.load_spec(model)
    if not args.sources:
        print("calibrate: give at least one file or stream URL to record windows from", file=sys.stderr)
        return 2
    total = 0
    for i, url in enumerate(args.sources):
        reader = SourceReader(url, f"calibrate{i}", probe_geometry(spec, args.hop), SourceOptions(realtime=False))
        n = record(reader.windows(), args.out, limit=args.windows)
        print(f"{url}: {n} windows", file=sys.stderr)
        total += n
    print(f"recorded {total} windows into {args.out}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from engines.build import build_engine, default_profile

    model, max_batch = _engine_settings(args)
    batch = tuple(args.batch) if args.batch else default_profile(max_batch)
    path = build_engine(model, precision=args.precision, batch=batch, cache_dir=args.cache,  # type: ignore[arg-type]
                        workspace_mb=args.workspace_mb, calibration_dir=args.calib if args.precision == "int8" else None,
                        force=args.force)
    print(path)
    return 0


def _run(args: argparse.Namespace) -> int:
    from engines.errors import EngineError
    from streamer.errors import ConfigError

    try:
        return int(args.engine_fn(args))
    except (EngineError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"streamer engine {args.action}: {e}", file=sys.stderr)
        return 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `engine` with its actions to the main CLI's subparsers; returns the `engine` parser."""
    p = subparsers.add_parser("engine", help="build a TensorRT engine, record INT8 calibration windows, show the model",
                              description=__doc__.splitlines()[0])
    acts = p.add_subparsers(dest="action", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--model", default=None, help="ONNX model, its .json beside it (default: engine.model, else the bundled one)")
        s.add_argument("--config", default=None, help="read engine.model and engine.max_batch from this config file")
        s.add_argument("--max-batch", type=int, default=None, help="the most windows per call (default: engine.max_batch, 8)")
        s.add_argument("--cache", default=None, help="engine cache directory (default: $STREAMER_ENGINE_CACHE or ~/.cache/streamer/engines)")
        s.set_defaults(fn=_run)

    s = acts.add_parser("build", help="build (or find in the cache) the TensorRT engine for this GPU")
    common(s)
    s.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    s.add_argument("--batch", type=int, nargs=3, default=None, metavar=("MIN", "OPT", "MAX"),
                   help="optimisation profile (default: 1, max-batch/2, max-batch)")
    s.add_argument("--calib", default="calibration", help="int8: directory of windows recorded by `engine calibrate`")
    s.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit")
    s.add_argument("--force", action="store_true", help="build even when a cached engine matches")
    s.set_defaults(engine_fn=cmd_build)

    s = acts.add_parser("calibrate", help="record windows from real sources for INT8 calibration")
    common(s)
    s.add_argument("sources", nargs="*", help="files or stream URLs to record windows from")
    s.add_argument("--out", default="calibration", help="where to write the windows")
    s.add_argument("--windows", type=int, default=512, help="windows per source")
    s.add_argument("--hop", type=float, default=0.5, help="seconds between window starts")
    s.set_defaults(engine_fn=cmd_calibrate)

    s = acts.add_parser("info", help="the model's spec, ops and TensorRT support, its cached engines, and the runtime "
                        "`streamer run` would choose here (backend, device, why)")
    common(s)
    s.add_argument("--backend", default=None, help="engine.backend to choose the runtime with (default: the config's, else auto)")
    s.add_argument("--device", default=None, help="engine.device: auto, cpu, cuda, cuda:N (default: the config's, else auto)")
    s.set_defaults(engine_fn=cmd_info)
    return p
