"""Choose and open a runtime: TensorRT, then ONNX Runtime CUDA, then ONNX Runtime CPU."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

from engines.errors import BackendUnavailable
from engines.runtime.base import Runtime
from engines.spec import DEFAULT_MODEL

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
TENSORRT_MISSING = (
    "backend 'tensorrt' needs TensorRT and pycuda: pip install 'streamer[gpu]' on a machine with an "
    "NVIDIA driver"
)


def tensorrt_importable() -> bool:
    """True when both tensorrt and pycuda can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "pycuda"))


def _open_tensorrt(model_path: Path, threads: int) -> Runtime:
    if not tensorrt_importable():
        raise BackendUnavailable(TENSORRT_MISSING)
    try:
        mod = importlib.import_module("engines.runtime.tensorrt")
    except ModuleNotFoundError as e:
        if e.name == "engines.runtime.tensorrt":
            raise BackendUnavailable("the TensorRT runtime is not part of this build of engines yet") from e
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    except ImportError as e:  # e.g. libnvinfer or the CUDA driver missing at import time
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    runtime: Runtime = mod.TensorRTRuntime(model_path)
    return runtime


def open_runtime(model_path: str | Path = DEFAULT_MODEL, backend: str = "auto", threads: int = 0) -> Runtime:
    """Open `model_path` (an ONNX file with its `.json` sidecar) on `backend`.

    `auto` tries TensorRT (when importable), then ONNX Runtime with CUDA (when that provider exists),
    then ONNX Runtime on the CPU, and logs what it chose and why. `threads` sets the CPU intra-op
    threads (0: the backend's default).
    """
    model_path = Path(model_path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "tensorrt":
        return _open_tensorrt(model_path, threads)
    if backend == "torch":
        from engines.runtime.torch import TorchRuntime

        return TorchRuntime(model_path, threads=threads)
    from engines.runtime.onnxruntime import OnnxRuntime, cuda_available

    if backend == "onnxruntime":
        return OnnxRuntime(model_path, device="cuda" if cuda_available() else "cpu", intra_op_threads=threads)

    # auto
    if tensorrt_importable():
        try:
            rt = _open_tensorrt(model_path, threads)
            log.info("engine backend: tensorrt for %s", model_path.name)
            return rt
        except BackendUnavailable as e:
            log.warning("TensorRT is installed but unusable, falling back to ONNX Runtime: %s", e)
    else:
        log.debug("TensorRT/pycuda not importable; skipping the tensorrt backend")
    if cuda_available():
        try:
            rt = OnnxRuntime(model_path, device="cuda", intra_op_threads=threads)
            log.info("engine backend: onnxruntime CUDA for %s", model_path.name)
            return rt
        except BackendUnavailable as e:
            log.warning("ONNX Runtime CUDA unusable, falling back to CPU: %s", e)
    rt = OnnxRuntime(model_path, device="cpu", intra_op_threads=threads)
    log.info("engine backend: onnxruntime CPU for %s (threads=%s)", model_path.name, threads or "auto")
    return rt
