"""Types of the part of pycuda.driver that engines/ uses (pycuda ships no stubs).

Only for the type checker: `import_cuda()` returns the real module typed as `Driver`, so a wrong
call (a host array where device memory goes, a missing stream) fails scripts/typecheck_tensorrt.py.
Signatures follow pycuda's documentation of the driver API.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import DTypeLike


class DeviceAllocation(Protocol):
    """Device memory from mem_alloc; int() is its address."""

    def free(self) -> None: ...

    def __int__(self) -> int: ...


class CudaStream(Protocol):
    @property
    def handle(self) -> int: ...

    def synchronize(self) -> None: ...


class DeviceContext(Protocol):
    def push(self) -> None: ...

    def detach(self) -> None: ...


class ContextStack(Protocol):
    """The Context class itself: pop() is static and pops the current context."""

    @staticmethod
    def pop() -> None: ...


class CudaDevice(Protocol):
    def name(self) -> str: ...

    def compute_capability(self) -> tuple[int, int]: ...

    def make_context(self) -> DeviceContext: ...


class Driver(Protocol):
    """The pycuda.driver module."""

    @property
    def Error(self) -> type[Exception]: ...

    @property
    def Context(self) -> ContextStack: ...

    def init(self) -> None: ...

    def Device(self, ordinal: int) -> CudaDevice: ...

    def Stream(self) -> CudaStream: ...

    def mem_alloc(self, nbytes: int) -> DeviceAllocation: ...

    def pagelocked_empty(self, shape: int, dtype: DTypeLike) -> np.ndarray: ...

    def memcpy_htod(self, dest: DeviceAllocation, src: np.ndarray) -> None: ...

    def memcpy_htod_async(self, dest: DeviceAllocation, src: np.ndarray, stream: CudaStream) -> None: ...

    def memcpy_dtoh_async(self, dest: np.ndarray, src: DeviceAllocation, stream: CudaStream) -> None: ...
