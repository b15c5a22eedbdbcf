"""TensorRT engine build (`streamer engine build`) and the engine cache.

Building is a separate step, never a surprise at start-up. An engine is cached under a name made from
everything that invalidates it: the ONNX file's sha256, the TensorRT version, the GPU name and compute
capability, the precision and the batch profile. The full key is stored beside the engine and checked
before loading, so a stale or foreign engine is never used.

Written to NVIDIA's TensorRT 10 Python API. NOT EXECUTED on the development machines (no GPU, no
TensorRT wheels); the key rules and the error paths are tested on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.errors import BackendUnavailable, EngineError

log = logging.getLogger(__name__)

TENSORRT_MISSING = (
    "backend 'tensorrt' needs TensorRT and pycuda: pip install 'streamer[gpu]' on a machine with an NVIDIA driver"
)
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_CACHE = Path.home() / ".cache" / "streamer" / "engines"


def ensure_real(module: Any) -> None:
    """tensorrt-stubs installs a `tensorrt` folder of .pyi files that imports as an empty namespace
    package: treat that as TensorRT missing."""
    if getattr(module, "__file__", None) is None:
        raise BackendUnavailable(f"{TENSORRT_MISSING} (only type stubs of {module.__name__} are installed)")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two builds with equal keys are interchangeable."""

    onnx_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str  # "8.6"
    precision: str  # fp32 | fp16 | int8
    batch_min: int
    batch_opt: int
    batch_max: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 1 <= self.batch_min <= self.batch_opt <= self.batch_max:
            raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {self.batch_min}/{self.batch_opt}/{self.batch_max}")

    def filename(self, model: str) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu).strip("-").lower() or "gpu"
        cc = self.compute_capability.replace(".", "")
        return (f"{model}-{self.onnx_sha256[:16]}-trt{self.tensorrt}-{gpu}-sm{cc}-{self.precision}"
                f"-b{self.batch_min}_{self.batch_opt}_{self.batch_max}.engine")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_key(onnx_path: str | Path, *, tensorrt_version: str, gpu: str, compute_capability: str,
             precision: str = "fp16", batch: tuple[int, int, int] = (1, 8, 16)) -> EngineKey:
    return EngineKey(sha256_file(onnx_path), tensorrt_version, gpu, compute_capability, precision, *batch)


def cached_engine(cache_dir: str | Path, model: str, key: EngineKey) -> Path | None:
    """The cached engine for `key`, or None. An engine whose stored key differs is never returned."""
    path = Path(cache_dir) / key.filename(model)
    meta = path.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        return None
    if json.loads(meta.read_text()) != json.loads(key.to_json()):
        log.warning("ignoring %s: it was built for another model, GPU, TensorRT or profile", path)
        return None
    return path


def store_engine(cache_dir: str | Path, model: str, key: EngineKey, plan: bytes) -> Path:
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / key.filename(model)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(plan)
    tmp.replace(path)
    path.with_suffix(".json").write_text(key.to_json() + "\n")
    return path


def current_gpu() -> tuple[str, str]:
    """(name, compute capability) of CUDA device 0, through pycuda."""
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found]
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    try:
        cuda.init()
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"
    except cuda.Error as e:
        raise EngineError(f"CUDA device query failed (cuda.init / Device(0)): {e}") from e


def _progress_monitor(trt: Any) -> Any:
    """A TensorRT IProgressMonitor that shows the build phases with tqdm."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=parent_phase is None)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


def build_engine(
    onnx_path: str | Path,
    *,
    precision: str = "fp16",
    batch: tuple[int, int, int] = (1, 8, 16),
    cache_dir: str | Path = DEFAULT_CACHE,
    workspace_mb: int = 1024,
    calibrator: Any = None,
    force: bool = False,
) -> Path:
    """Build (or find in the cache) a serialized TensorRT engine for an ONNX model; returns its path."""
    try:
        import tensorrt as trt  # typed by tensorrt-stubs for mypy
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    ensure_real(trt)
    onnx_path = Path(onnx_path)
    gpu, cc = current_gpu()
    key = make_key(onnx_path, tensorrt_version=trt.__version__, gpu=gpu, compute_capability=cc, precision=precision, batch=batch)
    model = onnx_path.stem
    if not force and (hit := cached_engine(cache_dir, model, key)) is not None:
        log.info("engine cache hit: %s", hit)
        return hit
    if precision == "int8" and calibrator is None:
        raise EngineError("precision int8 needs calibration windows: run `streamer engine calibrate` first")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = [int(tensor.shape[d]) for d in range(1, len(tensor.shape))]
        profile.set_shape(tensor.name, trt.Dims([batch[0], *rest]), trt.Dims([batch[1], *rest]), trt.Dims([batch[2], *rest]))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    timing_path = Path(cache_dir) / f"timing-trt{trt.__version__}-sm{cc.replace('.', '')}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(trt)
    log.info("building %s engine for %s on %s (sm %s), batch %s", precision, onnx_path.name, gpu, cc, batch)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"builder.build_serialized_network failed for {onnx_path} (see TensorRT's log above)")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    path = store_engine(cache_dir, model, key, bytes(plan))
    log.info("engine written: %s", path)
    return path


def engine_for(onnx_path: str | Path, cache_dir: str | Path = DEFAULT_CACHE, precision: str = "fp16",
               batch: tuple[int, int, int] = (1, 8, 16)) -> Path:
    """The cached engine for this model on this GPU, or a clear error saying to build it (no surprise builds)."""
    try:
        import tensorrt as trt  # typed by tensorrt-stubs for mypy
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    ensure_real(trt)
    gpu, cc = current_gpu()
    key = make_key(onnx_path, tensorrt_version=trt.__version__, gpu=gpu, compute_capability=cc, precision=precision, batch=batch)
    hit = cached_engine(cache_dir, Path(onnx_path).stem, key)
    if hit is None:
        raise EngineError(f"no TensorRT engine for {Path(onnx_path).name} on {gpu} ({precision}, batch {batch}) "
                          f"in {cache_dir}: run `streamer engine build` first")
    return hit

