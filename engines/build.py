"""TensorRT engine build (`streamer engine build`), the engine cache, and the CUDA helpers they share.

Building is a separate step, never a surprise at start-up. An engine is cached under a file name made
from everything that invalidates it: the model's sha256 (its ONNX file and the backbone files it reads,
engines.shared.model_sha256), the TensorRT version, the GPU name and
compute capability, the precision and the batch profile (min/opt/max). TensorRT builds the one graph
(engines.pose.one_graph: the pose model in front). The full key, and the sha256
of the plan itself, are stored in a sidecar beside the engine and checked before an engine is
loaded, so a stale, foreign or overwritten engine is never used.

Written to NVIDIA's documented TensorRT 10 Python API (ONNX parser, IBuilderConfig, optimisation
profile, FP16/INT8 flags, timing cache, IProgressMonitor) and pycuda. NOT EXECUTED on the development
machines (no GPU, no TensorRT wheels): type-checked against tensorrt-stubs; the key rules, the cache
and the error paths are tested on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.calibrate import entropy_calibrator
from engines.cuda import CudaContext, dims, import_tensorrt, trt_check
from engines.errors import EngineError, ModelLoadError
from engines.pose import one_graph_file

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp16"
KEY_VERSION = 1  # bump when the key's meaning changes: every older engine is then rebuilt


def default_cache() -> Path:
    """`$STREAMER_ENGINE_CACHE`, else ~/.cache/streamer/engines."""
    env = os.environ.get("STREAMER_ENGINE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "streamer" / "engines"



def default_profile(max_batch: int) -> tuple[int, int, int]:
    """min 1, opt half the max (a batch fills only when many cameras are busy), max `max_batch`."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return 1, max(1, max_batch // 2), max_batch


# ---- the cache key (pure: no file, no GPU, no TensorRT) ---------------------------------------------


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two builds with equal keys are interchangeable."""

    onnx_sha256: str
    tensorrt: str  # full version, e.g. "10.13.0.35"
    gpu: str  # device name, e.g. "NVIDIA L4"
    compute_capability: str  # "8.9"
    precision: str  # fp32 | fp16 | int8
    batch_min: int
    batch_opt: int
    batch_max: int
    key_version: int = KEY_VERSION

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise ValueError(f"compute capability must look like '8.9', got {self.compute_capability!r}")
        if not self.tensorrt or not self.gpu:
            raise ValueError("the TensorRT version and the GPU name are part of the key and cannot be empty")
        if not 1 <= self.batch_min <= self.batch_opt <= self.batch_max:
            raise ValueError(
                f"batch profile needs 1 <= min <= opt <= max, got {self.batch_min}/{self.batch_opt}/{self.batch_max}"
            )

    @property
    def profile(self) -> tuple[int, int, int]:
        return self.batch_min, self.batch_opt, self.batch_max

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field: the part of the file name that cannot collide."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def filename(self, model: str) -> str:
        """Readable and unique: model, ONNX hash prefix, TensorRT, GPU, sm, precision, profile, key digest."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu).strip("-").lower() or "gpu"
        safe_model = re.sub(r"[^A-Za-z0-9_.-]+", "-", model) or "model"
        cc = self.compute_capability.replace(".", "")
        return (f"{safe_model}-{self.onnx_sha256[:12]}-trt{self.tensorrt}-{gpu}-sm{cc}-{self.precision}"
                f"-b{self.batch_min}_{self.batch_opt}_{self.batch_max}-{self.digest()[:12]}.engine")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        names = {f.name for f in fields(cls)}
        if set(d) - names:
            raise ValueError(f"unknown engine key fields {sorted(set(d) - names)}")
        return cls(**d)

    def same_build_target(self, other: EngineKey) -> bool:
        """Equal in everything but the batch profile."""
        return replace(self, batch_min=1, batch_opt=1, batch_max=1) == replace(other, batch_min=1, batch_opt=1, batch_max=1)


def engine_key(onnx_sha256: str, *, tensorrt_version: str, gpu: str, compute_capability: str,
               precision: str = DEFAULT_PRECISION, batch: tuple[int, int, int] = (1, 4, 8)) -> EngineKey:
    """The cache key from its parts. Pure: same inputs, same key; any input changed, another key."""
    return EngineKey(onnx_sha256.lower(), str(tensorrt_version), str(gpu), str(compute_capability), precision, *batch)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_key(onnx_path: str | Path, *, tensorrt_version: str, gpu: str, compute_capability: str,
             precision: str = DEFAULT_PRECISION, batch: tuple[int, int, int] = (1, 4, 8)) -> EngineKey:
    """The key of an ONNX model (hashes the file and its external weight files, then calls `engine_key`)."""
    from engines.export import model_sha256

    return engine_key(model_sha256(onnx_path), tensorrt_version=tensorrt_version, gpu=gpu,
                      compute_capability=compute_capability, precision=precision, batch=batch)


# ---- the cache ----------------------------------------------------------------------------------------


def sidecar(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def store_engine(cache_dir: str | Path, model: str, key: EngineKey, plan: bytes) -> Path:
    """Write the plan and its sidecar (key + plan sha256), each atomically; the sidecar last."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / key.filename(model)
    tmp = path.with_suffix(".engine.tmp")
    tmp.write_bytes(plan)
    tmp.replace(path)
    meta = {"key": asdict(key), "plan_sha256": sha256_bytes(plan), "model": model}
    tmp_meta = path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    tmp_meta.replace(sidecar(path))
    return path


def read_sidecar(engine_path: str | Path) -> tuple[EngineKey, str]:
    """(stored key, stored plan sha256) of an engine; ModelLoadError when missing or unreadable."""
    meta = sidecar(engine_path)
    try:
        d = json.loads(meta.read_text())
        return EngineKey.from_dict(d["key"]), str(d["plan_sha256"])
    except FileNotFoundError:
        raise ModelLoadError(f"{engine_path} has no key file {meta.name}: it was not built by "
                             "`streamer engine build`, so it is not loaded") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"unreadable engine key file {meta}: {e}") from e


def check_engine(engine_path: str | Path, want: EngineKey, *, any_profile_up_to: int | None = None) -> bytes:
    """The plan bytes of `engine_path` after checking them against `want`; ModelLoadError otherwise.

    The stored key must equal `want` (or, with `any_profile_up_to=n`, equal it in everything but the
    profile and have a max batch >= n), and the plan's sha256 must be the one stored at build time."""
    stored, plan_sha = read_sidecar(engine_path)
    if any_profile_up_to is None:
        ok = stored == want
    else:
        ok = stored.same_build_target(want) and stored.batch_max >= any_profile_up_to
    if not ok:
        diff = {k: (v, getattr(want, k)) for k, v in asdict(stored).items() if v != getattr(want, k)}
        raise ModelLoadError(f"{engine_path} was built for something else (stored vs wanted: {diff}); "
                             "rebuild it with `streamer engine build`")
    plan = Path(engine_path).read_bytes()
    if sha256_bytes(plan) != plan_sha:
        raise ModelLoadError(f"{engine_path} does not match the plan recorded at build time (overwritten or "
                             "truncated); rebuild it with `streamer engine build`")
    return plan


def cached_engine(cache_dir: str | Path, model: str, key: EngineKey) -> Path | None:
    """The cached engine for exactly `key`, or None. An engine whose stored key differs is never returned."""
    path = Path(cache_dir) / key.filename(model)
    if not path.is_file():
        return None
    try:
        check_engine(path, key)
    except ModelLoadError as e:
        log.warning("ignoring cached engine: %s", e)
        return None
    return path


def cache_entries(cache_dir: str | Path) -> list[tuple[Path, EngineKey]]:
    """(engine file, stored key) of every engine in the cache with a readable key file, by file name."""
    out: list[tuple[Path, EngineKey]] = []
    for meta in sorted(Path(cache_dir).glob("*.json")):
        path = meta.with_suffix(".engine")
        if not path.is_file():
            continue
        try:
            out.append((path, read_sidecar(path)[0]))
        except ModelLoadError:
            continue
    return out


def find_engine(cache_dir: str | Path, want: EngineKey, max_batch: int) -> Path | None:
    """A cached engine for `want`'s model, TensorRT, GPU and precision whose profile reaches `max_batch`
    (the smallest such max batch first), or None. Engines for anything else are never returned."""
    found = [(stored.batch_max, -stored.batch_opt, path) for path, stored in cache_entries(cache_dir)
             if stored.same_build_target(want) and stored.batch_max >= max_batch]
    return min(found)[2] if found else None


# ---- the build (TensorRT, on the GPU) -------------------------------------------------------------------

def _progress_monitor() -> trt.IProgressMonitor:
    """A TensorRT IProgressMonitor that shows the build phases (tqdm bars when tqdm is there, else log lines)."""
    import tensorrt as trt

    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        tqdm = None

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if tqdm is not None:
                self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=parent_phase is None)
            else:
                log.info("build phase %s (%d steps)", phase_name, num_steps)

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


def calibration_cache_path(cache_dir: str | Path, key: EngineKey) -> Path:
    """INT8 scales depend on the model and TensorRT: a calibration cache is never shared between them."""
    return Path(cache_dir) / f"calibration-{key.onnx_sha256[:16]}-trt{key.tensorrt}.cache"


def build_engine(
    onnx_path: str | Path,
    *,
    precision: str = DEFAULT_PRECISION,
    batch: tuple[int, int, int] = (1, 4, 8),
    cache_dir: str | Path | None = None,
    workspace_mb: int = 1024,
    calibration_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Build (or find in the cache) a serialized TensorRT engine for an ONNX model; returns its path.

    `calibration_dir` (int8 only): windows recorded by `streamer engine calibrate`, fed to an
    IInt8EntropyCalibrator2 (engines/calibrate.py)."""
    import_tensorrt()
    import tensorrt as trt

    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelLoadError(f"model file not found: {onnx_path}")
    if precision == "int8" and calibration_dir is None:
        raise EngineError("precision int8 needs calibration windows: run `streamer engine calibrate` first")
    cache.mkdir(parents=True, exist_ok=True)
    gpu = CudaContext()  # the builder and the calibrator's device buffers use this context
    try:
        key = make_key(onnx_path, tensorrt_version=trt.__version__, gpu=gpu.device_name,
                       compute_capability=gpu.compute_capability, precision=precision, batch=batch)
        model = onnx_path.stem
        if not force and (hit := cached_engine(cache, model, key)) is not None:
            log.info("engine cache hit: %s", hit)
            return hit
        # TensorRT builds the one graph: the pose model in front of a model that takes `poses`
        # (engines.pose.one_graph), written with its weights inline for the build, then deleted
        with gpu.active(), one_graph_file(onnx_path, cache) as graph:
            plan = _build_plan(graph, key, cache, workspace_mb, calibration_dir)
    finally:
        gpu.close()
    path = store_engine(cache, model, key, plan)
    log.info("engine written: %s", path)
    return path


def _build_plan(onnx_path: Path, key: EngineKey, cache: Path, workspace_mb: int,
                calibration_dir: str | Path | None) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    trt_check(builder, "trt.Builder(logger)")
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    trt_check(network, "Builder.create_network(0)")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"OnnxParser.parse_from_file({onnx_path.name}) failed: {errors}")
    config = builder.create_builder_config()
    trt_check(config, "Builder.create_builder_config()")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = dims(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise EngineError(f"input {tensor.name} has a dynamic non-batch dimension {dims(tensor.shape)}")
        shapes = [trt.Dims([b, *rest]) for b in key.profile]
        profile.set_shape(tensor.name, shapes[0], shapes[1], shapes[2])
    trt_check(config.add_optimization_profile(profile) >= 0, "IBuilderConfig.add_optimization_profile")
    if key.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            log.warning("%s has no fast FP16; building FP16 anyway", key.gpu)
        config.set_flag(trt.BuilderFlag.FP16)
    free_calibrator = None
    if key.precision == "int8":
        assert calibration_dir is not None
        # calibration runs at one fixed shape: a profile with min = opt = max = the opt batch
        calib_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            fixed = trt.Dims([key.batch_opt, *dims(tensor.shape)[1:]])
            calib_profile.set_shape(tensor.name, fixed, fixed, fixed)
        calibrator, free_calibrator = entropy_calibrator(calibration_dir, calibration_cache_path(cache, key),
                                                         key.batch_opt)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator  # deprecated from TensorRT 10.1 (explicit quantization), still supported
        trt_check(config.set_calibration_profile(calib_profile), "IBuilderConfig.set_calibration_profile")
    cache.mkdir(parents=True, exist_ok=True)
    timing_path = cache / f"timing-trt{key.tensorrt}-sm{key.compute_capability.replace('.', '')}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    trt_check(timing, "IBuilderConfig.create_timing_cache")
    trt_check(config.set_timing_cache(timing, False), "IBuilderConfig.set_timing_cache")
    config.progress_monitor = _progress_monitor()
    log.info("building %s engine for %s on %s (sm %s), batch profile %s", key.precision, onnx_path.name, key.gpu,
             key.compute_capability, key.profile)
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if free_calibrator is not None:
            free_calibrator()
    trt_check(plan, f"Builder.build_serialized_network({onnx_path.name})")
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def engine_for(onnx_path: str | Path, cache_dir: str | Path | None = None, precision: str = DEFAULT_PRECISION,
               max_batch: int = 1, *, tensorrt_version: str, gpu: str, compute_capability: str) -> Path:
    """The cached engine for this model on this GPU and TensorRT, whose profile reaches `max_batch`;
    a clear error saying how to build it otherwise (no surprise builds at start-up)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    want = make_key(onnx_path, tensorrt_version=tensorrt_version, gpu=gpu, compute_capability=compute_capability,
                    precision=precision, batch=default_profile(max_batch))
    hit = find_engine(cache, want, max_batch)
    if hit is None:
        lo, opt, hi = default_profile(max_batch)
        raise ModelLoadError(
            f"no TensorRT engine for {Path(onnx_path).name} on {gpu} (sm {compute_capability}, TensorRT "
            f"{tensorrt_version}, {precision}, max batch >= {max_batch}) in {cache}: run "
            f"`streamer engine build --model {onnx_path} --precision {precision} --batch {lo} {opt} {hi}` first"
        )
    return hit
