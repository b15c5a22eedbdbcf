"""CUDA (pycuda) and TensorRT helpers shared by the engine build, the calibrator and the runtime.

pycuda is typed by engines.pycuda_types; TensorRT by tensorrt-stubs, through `import tensorrt as trt`
in the callers after `import_tensorrt()` has checked that the real library is there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

from engines.errors import BackendUnavailable, EngineError

if TYPE_CHECKING:
    import tensorrt as trt

    from engines.pycuda_types import DeviceContext, Driver

TENSORRT_MISSING = (
    "backend 'tensorrt' needs TensorRT and pycuda: pip install 'streamer[gpu]' on a machine with an NVIDIA driver"
)

T = TypeVar("T")
P = ParamSpec("P")


def import_tensorrt() -> None:
    """BackendUnavailable with the one-line install hint unless the real tensorrt imports. Callers then
    `import tensorrt as trt` themselves, which the type checker reads from tensorrt-stubs."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    ensure_real(trt)


def ensure_real(module: ModuleType) -> None:
    """tensorrt-stubs installs a `tensorrt` folder of .pyi files that imports as an empty namespace
    package: treat that as TensorRT missing."""
    if getattr(module, "__file__", None) is None or not hasattr(module, "Builder"):
        raise BackendUnavailable(f"{TENSORRT_MISSING} (only type stubs of {module.__name__} are installed)")


def import_cuda() -> Driver:
    """pycuda.driver (typed by engines.pycuda_types), or BackendUnavailable with the one-line install hint."""
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found, unused-ignore]  # no stubs for pycuda
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    return cast("Driver", cuda)


def cuda_call(cuda: Driver, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one pycuda call; a CUDA error becomes an EngineError that names the call."""
    try:
        return fn(*args, **kwargs)
    except cuda.Error as e:
        raise EngineError(f"CUDA call {what} failed: {e}") from e


def dims(d: trt.Dims) -> list[int]:
    """A TensorRT Dims as a list (-1 for a dynamic axis)."""
    return [int(d[i]) for i in range(len(d))]


def trt_check(ok: object, what: str) -> None:
    """TensorRT calls report failure with False/None (the details go to its logger)."""
    if ok is None or ok is False:
        raise EngineError(f"TensorRT call {what} failed (see TensorRT's log above)")


class CudaContext:
    """A CUDA context on device 0 that is current only inside `with ctx.active():`, on any thread.

    pycuda's make_context() leaves the new context current on the creating thread; it is popped at
    once so that every use pushes and pops it, which keeps the context stack balanced whatever thread
    runs the engine. `close()` detaches it (resources freed in close, never in __del__)."""

    def __init__(self, device: int = 0) -> None:
        self.cuda = cuda = import_cuda()
        cuda_call(cuda, "cuda.init()", cuda.init)
        dev = cuda_call(cuda, f"cuda.Device({device})", cuda.Device, device)
        self.device_name = str(cuda_call(cuda, "Device.name()", dev.name))
        major, minor = cuda_call(cuda, "Device.compute_capability()", dev.compute_capability)
        self.compute_capability = f"{major}.{minor}"
        self._ctx: DeviceContext | None = cuda_call(cuda, "Device.make_context()", dev.make_context)
        cuda_call(cuda, "Context.pop()", cuda.Context.pop)

    @contextlib.contextmanager
    def active(self) -> Iterator[Driver]:
        ctx = self._ctx
        if ctx is None:
            raise EngineError("the CUDA context is closed")
        cuda = self.cuda
        cuda_call(cuda, "Context.push()", ctx.push)
        try:
            yield cuda
        finally:
            cuda_call(cuda, "Context.pop()", cuda.Context.pop)

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            cuda_call(self.cuda, "Context.detach()", ctx.detach)
