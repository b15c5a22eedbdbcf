"""Choose and open a runtime: TensorRT, then ONNX Runtime CUDA, then ONNX Runtime CPU."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

from engines.build import DEFAULT_PRECISION
from engines.cuda import TENSORRT_MISSING
from engines.errors import BackendUnavailable, ModelLoadError
from engines.runtime.base import Runtime
from engines.spec import DEFAULT_MODEL

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cpu", "torch")
__all__ = ["BACKENDS", "TENSORRT_MISSING", "open_runtime", "tensorrt_importable"]


def tensorrt_importable() -> bool:
    """True when both tensorrt and pycuda can be found (checked without importing them). tensorrt-stubs
    alone does not count: it installs a `tensorrt` folder of .pyi files only."""
    spec = importlib.util.find_spec("tensorrt")
    if spec is None or spec.origin in (None, "namespace"):  # a folder of .pyi stubs imports as a namespace package
        return False
    return importlib.util.find_spec("pycuda") is not None


def _open_tensorrt(model_path: Path, max_batch: int, precision: str, engine_cache: str | Path | None) -> Runtime:
    if not tensorrt_importable():
        raise BackendUnavailable(TENSORRT_MISSING)
    from engines.runtime.tensorrt import TensorRTRuntime  # imports tensorrt/pycuda lazily, inside

    return TensorRTRuntime(model_path, max_batch=max_batch, precision=precision, cache_dir=engine_cache)


def open_runtime(model_path: str | Path = DEFAULT_MODEL, backend: str = "auto", threads: int = 0, *,
                 max_batch: int = 8, precision: str = DEFAULT_PRECISION,
                 engine_cache: str | Path | None = None) -> Runtime:
    """Open `model_path` (an ONNX file with its `.json` sidecar) on `backend`.

    `auto` tries TensorRT (when importable and an engine was built for this GPU), then ONNX Runtime
    with CUDA (when that provider exists), then ONNX Runtime on the CPU, and logs what it chose and
    why. `onnxruntime` is ONNX Runtime with CUDA when it has the provider; `onnxruntime-cpu` the CPU only. `threads` sets the CPU intra-op threads (0: the backend's default). `max_batch`, `precision`
    and `engine_cache` choose the TensorRT engine from the cache `streamer engine build` fills.
    """
    model_path = Path(model_path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "tensorrt":
        return _open_tensorrt(model_path, max_batch, precision, engine_cache)
    if backend == "torch":
        # by name: the reference backend pulls in torch and the training code, which neither the serving
        # path nor the type check of the TensorRT modules should depend on
        torch_runtime: Callable[..., Runtime] = importlib.import_module("engines.runtime.torch").TorchRuntime
        return torch_runtime(model_path, threads=threads)
    from engines.runtime.onnxruntime import OnnxRuntime, cuda_available

    if backend == "onnxruntime":
        return OnnxRuntime(model_path, device="cuda" if cuda_available() else "cpu", intra_op_threads=threads)
    if backend == "onnxruntime-cpu":
        return OnnxRuntime(model_path, device="cpu", intra_op_threads=threads)

    # auto
    if tensorrt_importable():
        try:
            rt = _open_tensorrt(model_path, max_batch, precision, engine_cache)
            log.info("engine backend: tensorrt for %s (%s, max batch %s)", model_path.name, precision, rt.max_batch)
            return rt
        except (BackendUnavailable, ModelLoadError) as e:  # e.g. no engine built for this GPU yet
            log.warning("TensorRT is installed but not usable here, falling back to ONNX Runtime: %s", e)
    else:
        log.debug("TensorRT/pycuda not importable; skipping the tensorrt backend")
    if cuda_available():
        try:
            rt = OnnxRuntime(model_path, device="cuda", intra_op_threads=threads)
            log.info("engine backend: onnxruntime CUDA for %s", model_path.name)
            return rt
        except (BackendUnavailable, ModelLoadError) as e:
            log.warning("ONNX Runtime CUDA unusable, falling back to CPU: %s", e)
    rt = OnnxRuntime(model_path, device="cpu", intra_op_threads=threads)
    log.info("engine backend: onnxruntime CPU for %s (threads=%s)", model_path.name, threads or "auto")
    return rt
