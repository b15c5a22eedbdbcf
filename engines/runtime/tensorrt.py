"""TensorRT runtime with pycuda: pinned host buffers, device buffers, one CUDA stream.

The engine comes from the cache that `streamer engine build` fills (engines/build.py); its stored key
is checked against this model, GPU, TensorRT and precision before it is deserialized, so a stale or
foreign engine is never loaded. Buffers are sized from the optimisation profile's maximum shape; each
call copies the feed into pinned memory, sets the input shapes, copies in asynchronously, runs
`execute_async_v3` (TensorRT 10 API) and copies the outputs back on the same stream. Every CUDA or
TensorRT failure becomes an EngineError (InferenceError while running) that names the call. The CUDA
context is pushed around each use, so any one thread may call `infer`. Resources are released by
`close()` (or the context manager), never in `__del__`.

NOT EXECUTED on the development machines (no GPU, no TensorRT): written to NVIDIA's documented
TensorRT 10 and pycuda APIs and type-checked with tensorrt-stubs. Importing this module needs neither
package; opening a runtime without them raises BackendUnavailable with one clear line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from engines.build import DEFAULT_PRECISION, EngineKey, check_engine, default_cache, engine_for, make_key, read_sidecar
from engines.cuda import CudaContext, cuda_call, dims, import_cuda, import_tensorrt, trt_check
from engines.errors import EngineError, InferenceError, ModelLoadError
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.spec import INPUT_NAMES, OUTPUT_NAMES

if TYPE_CHECKING:
    import tensorrt as trt

    from engines.pycuda_types import CudaStream, DeviceAllocation, Driver


class TensorRTRuntime(Runtime):
    """`max_batch`: the most windows the caller will send at once (an engine whose profile reaches it is
    chosen from the cache); `engine_path`: a specific engine file (its key file is still checked); `gpu`: the
    CUDA device index (engine.device cuda:N)."""

    backend = "tensorrt"

    def __init__(self, model_path: str | Path, *, max_batch: int = 8, precision: str = DEFAULT_PRECISION,
                 cache_dir: str | Path | None = None, engine_path: str | Path | None = None, gpu: int = 0) -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        import_tensorrt()
        import_cuda()
        self.precision = precision
        self.device = f"cuda:{gpu}"
        self._gpu: CudaContext | None = None
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, DeviceAllocation] = {}
        self._stream: CudaStream | None = None
        self._context: trt.IExecutionContext | None = None
        self._engine: trt.ICudaEngine | None = None
        self._trt_runtime: trt.Runtime | None = None
        self._gpu = CudaContext(gpu)  # this process owns the accelerator: one context, used by push/pop
        try:
            with self._gpu.active() as cuda:
                self._open(cuda, max_batch, cache_dir, engine_path)
        except BaseException:
            self._close_impl()
            raise

    def _open(self, cuda: Driver, max_batch: int, cache_dir: str | Path | None,
              engine_path: str | Path | None) -> None:
        import tensorrt as trt

        assert self._gpu is not None
        gpu = self._gpu
        facts = dict(tensorrt_version=trt.__version__, gpu=gpu.device_name, compute_capability=gpu.compute_capability)
        if engine_path is None:
            path = engine_for(self.model_path, cache_dir if cache_dir is not None else default_cache(),
                              self.precision, max_batch, **facts)
        else:
            path = Path(engine_path)
        stored: EngineKey = read_sidecar(path)[0]
        want = make_key(self.model_path, precision=self.precision, batch=stored.profile, **facts)
        plan = check_engine(path, want, any_profile_up_to=1)  # never a stale or foreign engine; max batch read below
        self.engine_path = path
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = runtime = trt.Runtime(self._logger)
        trt_check(runtime, "trt.Runtime(logger)")
        self._engine = engine = runtime.deserialize_cuda_engine(plan)
        trt_check(engine, f"IRuntime.deserialize_cuda_engine({path.name})")
        self._context = context = engine.create_execution_context()
        trt_check(context, "ICudaEngine.create_execution_context (out of device memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted((*INPUT_NAMES, *OUTPUT_NAMES)):
            raise ModelLoadError(f"engine {path} has tensors {names}, expected {[*INPUT_NAMES, *OUTPUT_NAMES]}")
        profile_max = dims(engine.get_tensor_profile_shape(INPUT_NAMES[0], 0)[2])
        self.max_batch = int(profile_max[0])
        self._stream = cuda_call(cuda, "cuda.Stream()", cuda.Stream)
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input:
                want_shape, want_dtype = self._inputs[name]
                if dtype != want_dtype:
                    raise ModelLoadError(f"engine {path} takes {name} as {dtype}, the model spec says {want_dtype}")
                shape = dims(engine.get_tensor_profile_shape(name, 0)[2])  # the profile's max
                if shape[1:] != list(want_shape[1:]):
                    raise ModelLoadError(f"engine {path} takes {name} of shape {['B', *shape[1:]]}, the model spec "
                                         f"says {['B', *want_shape[1:]]}")
            else:
                shape = [self.max_batch, *dims(engine.get_tensor_shape(name))[1:]]
            if any(d < 0 for d in shape):
                raise ModelLoadError(f"engine {path}: {name} has an unbounded shape {shape}")
            count = int(np.prod(shape))
            self._host[name] = cuda_call(cuda, f"pagelocked_empty({name}, {shape})", cuda.pagelocked_empty, count, dtype)
            self._device[name] = cuda_call(cuda, f"mem_alloc({name}, {self._host[name].nbytes} B)", cuda.mem_alloc,
                                           self._host[name].nbytes)
            trt_check(context.set_tensor_address(name, int(self._device[name])),
                      f"IExecutionContext.set_tensor_address({name})")
        logging.getLogger(__name__).info("TensorRT engine %s loaded (max batch %d, %s)", path.name, self.max_batch,
                                         self.precision)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._gpu is not None
        try:
            with self._gpu.active() as cuda:
                return self._run(cuda, feed)
        except EngineError as e:
            if isinstance(e, InferenceError):
                raise
            raise InferenceError(str(e)) from e

    def _run(self, cuda: Driver, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stream, context = self._stream, self._context
        assert stream is not None and context is not None, "opened in __init__"
        for name in INPUT_NAMES:
            arr = feed[name]
            host = self._host[name][: arr.size]
            host[...] = arr.reshape(-1)
            trt_check(context.set_input_shape(name, tuple(arr.shape)),
                      f"IExecutionContext.set_input_shape({name}, {tuple(arr.shape)})")
            cuda_call(cuda, f"memcpy_htod_async({name})", cuda.memcpy_htod_async, self._device[name], host, stream)
        trt_check(context.execute_async_v3(stream.handle), "IExecutionContext.execute_async_v3")
        out: dict[str, np.ndarray] = {}
        for name in OUTPUT_NAMES:
            shape = dims(context.get_tensor_shape(name))
            host = self._host[name][: int(np.prod(shape))]
            cuda_call(cuda, f"memcpy_dtoh_async({name})", cuda.memcpy_dtoh_async, host, self._device[name], stream)
            out[name] = host.reshape(shape)
        cuda_call(cuda, "Stream.synchronize()", stream.synchronize)
        return {k: v.copy() for k, v in out.items()}  # the pinned buffers are reused by the next call

    def _close_impl(self) -> None:
        gpu, self._gpu = self._gpu, None
        if gpu is None:
            return
        try:
            with gpu.active() as cuda:
                self._context = self._engine = self._trt_runtime = None  # TensorRT objects before their memory
                for name, mem in list(self._device.items()):
                    cuda_call(cuda, f"DeviceAllocation.free({name})", mem.free)
                for name, host in list(self._host.items()):
                    alloc = cast("DeviceAllocation", host.base)  # pycuda's HostAllocation: it has free() too
                    cuda_call(cuda, f"HostAllocation.free({name})", alloc.free)
                self._device, self._host, self._stream = {}, {}, None
        finally:
            gpu.close()
