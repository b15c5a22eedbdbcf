"""TensorRT runtime with pycuda: pinned host buffers, device buffers, one CUDA stream.

Buffers are sized from the optimisation profile's maximum shape; each call sets the input shapes
and tensor addresses and runs `execute_async_v3` (TensorRT 10 API), with async copies on one stream.
Every CUDA or TensorRT failure becomes an InferenceError/EngineError naming the call. Resources are
released by close() (or the context manager), never in __del__.

NOT EXECUTED on the development machines (no GPU, no TensorRT): written to NVIDIA's documented
TensorRT 10 and pycuda APIs and type-checked with tensorrt-stubs. Importing this module needs
neither package; opening a runtime without them raises one clear line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.build import DEFAULT_CACHE, TENSORRT_MISSING, engine_for, ensure_real
from engines.errors import BackendUnavailable, EngineError, InferenceError
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.spec import INPUT_NAMES, OUTPUT_NAMES

log = logging.getLogger(__name__)


def _import_cuda() -> Any:
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found]
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    return cuda


def _dims(d: Any) -> list[int]:
    return [int(d[i]) for i in range(len(d))]


def trt_dims(shape: list[int]) -> Any:
    import tensorrt as trt

    return trt.Dims(shape)


class TensorRTRuntime(Runtime):
    backend = "tensorrt"

    def __init__(self, model_path: str | Path, engine_path: str | Path | None = None, cache_dir: str | Path = DEFAULT_CACHE,
                 precision: str = "fp16") -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        try:
            import tensorrt as trt  # typed by tensorrt-stubs for mypy
        except ImportError as e:
            raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
        ensure_real(trt)
        cuda = self._cuda = _import_cuda()
        self.precision = precision
        self._ctx = None
        try:
            cuda.init()
            self._ctx = cuda.Device(0).make_context()  # this process owns the accelerator
        except cuda.Error as e:
            raise EngineError(f"CUDA context creation failed (cuda.Device(0).make_context): {e}") from e
        try:
            path = Path(engine_path) if engine_path else engine_for(model_path, cache_dir, precision)
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._trt_runtime = trt.Runtime(self._logger)
            self._engine = self._trt_runtime.deserialize_cuda_engine(path.read_bytes())
            if self._engine is None:
                raise EngineError(f"IRuntime.deserialize_cuda_engine failed for {path} (built by another TensorRT?)")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise EngineError("ICudaEngine.create_execution_context failed (out of device memory?)")
            self._stream = cuda.Stream()
            self._host: dict[str, np.ndarray] = {}
            self._device: dict[str, Any] = {}
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            if sorted(names) != sorted((*INPUT_NAMES, *OUTPUT_NAMES)):
                raise EngineError(f"engine {path} has tensors {names}, expected {INPUT_NAMES + OUTPUT_NAMES}")
            self.max_batch = int(self._engine.get_tensor_profile_shape(INPUT_NAMES[0], 0)[2][0])
            for name in names:
                dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
                if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    shape = _dims(self._engine.get_tensor_profile_shape(name, 0)[2])  # the profile's max
                else:
                    shape = [self.max_batch, *_dims(self._engine.get_tensor_shape(name))[1:]]
                self._host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
                self._device[name] = cuda.mem_alloc(self._host[name].nbytes)
                self._context.set_tensor_address(name, int(self._device[name]))
        except cuda.Error as e:
            self._close_impl()
            raise EngineError(f"CUDA allocation failed (pagelocked_empty / mem_alloc): {e}") from e
        except Exception:
            self._close_impl()
            raise
        log.info("TensorRT engine %s loaded (max batch %d, %s)", path.name, self.max_batch, precision)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        try:
            for name in INPUT_NAMES:
                arr = feed[name]
                flat = self._host[name][: arr.size]
                flat[...] = arr.reshape(-1)
                if not self._context.set_input_shape(name, trt_dims(list(arr.shape))):
                    raise InferenceError(f"IExecutionContext.set_input_shape({name}, {arr.shape}) was refused")
                cuda.memcpy_htod_async(self._device[name], flat, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise InferenceError("IExecutionContext.execute_async_v3 failed")
            out = {}
            for name in OUTPUT_NAMES:
                shape = _dims(self._context.get_tensor_shape(name))
                host = self._host[name][: int(np.prod(shape))]
                cuda.memcpy_dtoh_async(host, self._device[name], self._stream)
                out[name] = host.reshape(shape)
            self._stream.synchronize()
        except cuda.Error as e:
            raise InferenceError(f"CUDA error during inference (memcpy / execute_async_v3 / synchronize): {e}") from e
        return {k: v.copy() for k, v in out.items()}

    def _close_impl(self) -> None:
        for mem in getattr(self, "_device", {}).values():
            mem.free()
        self._device = {}
        for attr in ("_context", "_engine", "_trt_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
