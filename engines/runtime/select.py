"""Choose and open a runtime from `engine.backend` and `engine.device`, and say why it was chosen.

`backend: auto` on `device: auto` (or `cuda`, `cuda:N`) tries, in order:
1. TensorRT, when tensorrt and pycuda are importable and `streamer engine build` made an engine for this GPU;
2. torch on CUDA, when torch sees a CUDA GPU (torch is imported only when it is installed and an NVIDIA
   driver is present, so a CPU host never loads it);
3. ONNX Runtime with its CUDA provider (the onnxruntime-gpu build);
and else ONNX Runtime on the CPU (an error instead when `device` asked for CUDA). `device: cpu` never
touches a GPU. The runtime opened carries `device` and `chosen_because`, which is also logged.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.build import DEFAULT_PRECISION
from engines.cuda import TENSORRT_MISSING
from engines.errors import BackendUnavailable, ModelLoadError
from engines.runtime.base import Runtime
from engines.spec import DEFAULT_MODEL

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cpu", "torch")
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
__all__ = ["BACKENDS", "DEVICE_PATTERN", "TENSORRT_MISSING", "open_runtime", "tensorrt_importable", "torch_cuda_missing"]


def tensorrt_importable() -> bool:
    """True when both tensorrt and pycuda can be found (checked without importing them). tensorrt-stubs
    alone does not count: it installs a `tensorrt` folder of .pyi files only."""
    spec = importlib.util.find_spec("tensorrt")
    if spec is None or spec.origin in (None, "namespace"):  # a folder of .pyi stubs imports as a namespace package
        return False
    return importlib.util.find_spec("pycuda") is not None


def nvidia_driver() -> bool:
    """An NVIDIA driver on this host (its device node or nvidia-smi), checked without loading CUDA."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def torch_cuda_missing() -> str | None:
    """Why torch cannot run on a CUDA GPU here (None: it can). torch is imported only after cheaper checks pass."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    if not nvidia_driver():
        return "no NVIDIA GPU or driver on this host (no /dev/nvidiactl, no nvidia-smi)"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (a CPU-only build, or the driver does not match)"
    return None


def check_device(device: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ValueError(f"engine.device {device!r}: expected auto, cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class _Options:
    model: Path
    threads: int
    max_batch: int
    precision: str
    engine_cache: str | Path | None
    cuda_graphs: bool


def _tensorrt(o: _Options, device: str) -> Runtime:
    if not tensorrt_importable():
        raise BackendUnavailable(TENSORRT_MISSING)
    from engines.runtime.tensorrt import TensorRTRuntime  # imports tensorrt/pycuda lazily, inside

    gpu = int(device.partition(":")[2] or 0)
    return TensorRTRuntime(o.model, max_batch=o.max_batch, precision=o.precision, cache_dir=o.engine_cache, gpu=gpu)


def _torch(o: _Options, device: str) -> Runtime:
    # by name: the torch backend pulls in torch and the training code, which neither the CPU serving path
    # nor the type check of the TensorRT modules should depend on
    torch_runtime: Callable[..., Runtime] = importlib.import_module("engines.runtime.torch").TorchRuntime
    return torch_runtime(o.model, device=device, threads=o.threads, precision=o.precision, graphs=o.cuda_graphs)


def _onnxruntime(o: _Options, device: str) -> Runtime:
    from engines.runtime.onnxruntime import OnnxRuntime

    return OnnxRuntime(o.model, device=device, intra_op_threads=o.threads)


def _ort_cuda() -> bool:
    from engines.runtime.onnxruntime import cuda_available

    return cuda_available()


def _no_gpu_for(backend: str, device: str) -> None:
    if device == "cpu":
        raise BackendUnavailable(f"engine.backend {backend} runs on a GPU only, and engine.device is cpu")


def _named(backend: str, device: str, o: _Options) -> tuple[Runtime, str]:
    """The backend the config names, on the device it names (auto: CUDA when that backend can use it)."""
    why = f"engine.backend is {backend}"
    if backend == "tensorrt":
        _no_gpu_for(backend, device)
        return _tensorrt(o, device), why
    if backend == "onnxruntime-cpu":
        if device.startswith("cuda"):
            raise BackendUnavailable(f"engine.backend onnxruntime-cpu never uses a GPU, and engine.device is {device}")
        return _onnxruntime(o, "cpu"), why
    if device == "auto":
        missing = torch_cuda_missing() if backend == "torch" else (None if _ort_cuda() else "no CUDA provider in ONNX Runtime")
        device = "cpu" if missing else "cuda"
        why += f", engine.device auto -> {device}: {missing or 'a CUDA GPU is usable'}"
    opener = _torch if backend == "torch" else _onnxruntime
    return opener(o, device), why


def _auto(device: str, o: _Options) -> tuple[Runtime, str]:
    """engine.backend auto: the first GPU backend that opens, else ONNX Runtime on the CPU."""
    if device == "cpu":
        return _onnxruntime(o, "cpu"), "engine.device is cpu: ONNX Runtime on the CPU"
    cuda = "cuda" if device == "auto" else device
    skipped: list[str] = []
    # (name, why it cannot run here or None, how to open it): each checked only when those before it failed
    candidates: list[tuple[str, Callable[[], str | None], Callable[[], Runtime]]] = [
        ("TensorRT", lambda: None if tensorrt_importable() else "tensorrt/pycuda not installed", lambda: _tensorrt(o, cuda)),
        ("torch on CUDA", torch_cuda_missing, lambda: _torch(o, cuda)),
        ("ONNX Runtime CUDA", lambda: None if _ort_cuda() else "no CUDA provider in ONNX Runtime", lambda: _onnxruntime(o, cuda)),
    ]
    for name, why_not, opener in candidates:
        missing = why_not()
        if missing is None:
            try:
                return opener(), "; ".join([*skipped, f"{name} is usable"])
            except (BackendUnavailable, ModelLoadError) as e:  # e.g. no TensorRT engine built for this GPU yet
                missing = str(e)
                log.warning("engine: %s is not usable here, trying the next backend: %s", name, e)
        skipped.append(f"{name}: {missing}")
    if device != "auto":
        raise BackendUnavailable(f"engine.device is {device} but no backend can use a CUDA GPU here: {'; '.join(skipped)}")
    return _onnxruntime(o, "cpu"), "; ".join([*skipped, "ONNX Runtime on the CPU"])


def open_runtime(model_path: str | Path = DEFAULT_MODEL, backend: str = "auto", threads: int = 0, *,
                 device: str = "auto", max_batch: int = 8, precision: str = DEFAULT_PRECISION,
                 engine_cache: str | Path | None = None, cuda_graphs: bool = True) -> Runtime:
    """Open `model_path` (an ONNX file with its `.json` sidecar) on `backend` and `device` (see the module
    docstring). `threads` sets the CPU intra-op threads (0: the backend's default). `max_batch`,
    `precision` and `engine_cache` choose the TensorRT engine from the cache `streamer engine build` fills;
    `precision` fp16 also runs torch on CUDA in float16, and `cuda_graphs` captures torch's CUDA graphs.
    The runtime's `device` and `chosen_because` say where it runs and why."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    check_device(device)
    o = _Options(Path(model_path), threads, max_batch, precision, engine_cache, cuda_graphs)
    rt, why = _auto(device, o) if backend == "auto" else _named(backend, device, o)
    rt.chosen_because = why
    log.info("engine backend: %s on %s for %s (%s)", rt.backend, rt.device, o.model.name, why)
    return rt
